// Telling the user things: error banners (role="alert"), toasts for new updates, a polite
// screen-reader announcer, and the confirmation dialog.

import { glyph } from "./icons.js";

const TOAST_MS = 5000;

function closeButton(label, testid, onClick) {
  const btn = document.createElement("button");
  btn.type = "button";
  btn.className = "btn btn-ghost btn-icon";
  btn.setAttribute("aria-label", label);
  btn.dataset.testid = testid;
  btn.append(glyph("x"));
  btn.addEventListener("click", onClick);
  return btn;
}

/**
 * Show an error banner. A `key` replaces an earlier banner with the same key (the poller uses one
 * so a long outage shows one message, not one per attempt). Returns nothing; see clearError.
 */
export function showError(message, { key = null, title = "Something went wrong" } = {}) {
  const host = document.getElementById("errors");
  if (key) clearError(key);
  const box = document.createElement("div");
  box.className = "alert";
  box.setAttribute("role", "alert");
  box.dataset.testid = "error-banner";
  if (key) box.dataset.key = key;
  const body = document.createElement("div");
  body.className = "alert-body";
  const heading = document.createElement("p");
  heading.className = "alert-title";
  heading.textContent = title;
  const text = document.createElement("p");
  text.className = "alert-text";
  text.textContent = message;
  body.append(heading, text);
  box.append(glyph("alert"), body, closeButton("Dismiss error", "error-dismiss", () => box.remove()));
  host.append(box);
  while (host.children.length > 3) host.firstElementChild.remove();
}

export function clearError(key) {
  for (const el of document.querySelectorAll("#errors .alert")) if (el.dataset.key === key) el.remove();
}

export function toast(title, text) {
  const host = document.getElementById("toasts");
  const el = document.createElement("div");
  el.className = "toast";
  el.dataset.testid = "toast";
  const body = document.createElement("div");
  body.className = "toast-body";
  const heading = document.createElement("p");
  heading.className = "toast-title";
  heading.textContent = title;
  const detail = document.createElement("p");
  detail.className = "toast-text";
  detail.textContent = text;
  body.append(heading, detail);
  let timer = 0;
  const close = () => {
    clearTimeout(timer);
    el.remove();
  };
  el.append(glyph("bell"), body, closeButton("Close notification", "toast-close", close));
  // Focusing the close button holds the toast open, so it can be read.
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(close, TOAST_MS);
  };
  el.addEventListener("focusin", () => clearTimeout(timer));
  el.addEventListener("focusout", arm);
  host.append(el);
  while (host.children.length > 3) host.firstElementChild.remove();
  arm();
}

export function announce(message) {
  const el = document.getElementById("announcer");
  el.textContent = "";
  // A fresh text node after a tick is announced even when the message repeats.
  setTimeout(() => {
    el.textContent = message;
  }, 50);
}

/** Ask in the modal dialog; resolves true when confirmed. */
export function confirmDialog({ title, text, confirmLabel }) {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector("#confirm-title").textContent = title;
  dialog.querySelector("#confirm-text").textContent = text;
  dialog.querySelector('[data-testid="confirm-ok"]').textContent = confirmLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}
