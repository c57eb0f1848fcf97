// Telling the user things: error banners (role="alert"), toasts for new updates, a polite
// screen-reader announcer, and the confirmation dialog.

import { focusRegion } from "./dom.js";
import { glyph } from "./icons.js";

const TOAST_MS = 5000;

let noticesMade = 0;

/**
 * A box with an icon, a title, a text, an optional action button and a close button: the shape
 * of banners and toasts.
 */
function notice({ className, testid, icon, title, text, action = null, closeLabel, closeTestid, onClose }) {
  const box = document.createElement("div");
  box.className = className;
  box.dataset.testid = testid;
  const body = document.createElement("div");
  body.className = `${className}-body`;
  const heading = document.createElement("p");
  heading.className = `${className}-title`;
  heading.textContent = title;
  const detail = document.createElement("p");
  detail.className = `${className}-text`;
  detail.textContent = text;
  body.append(heading, detail);
  // Its buttons say what they act on: reached by a key (a toast's "Show"), a bare "Show" or
  // "Dismiss" told a screen reader's user nothing of which update.
  noticesMade += 1;
  heading.id = `notice-${noticesMade}-title`;
  detail.id = `notice-${noticesMade}-text`;
  const about = `${heading.id} ${detail.id}`;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "btn btn-ghost btn-icon";
  close.setAttribute("aria-label", closeLabel);
  close.setAttribute("aria-describedby", about);
  close.dataset.testid = closeTestid;
  close.append(glyph("x"));
  close.addEventListener("click", onClose);
  box.append(glyph(icon), body);
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-outline btn-sm";
    button.textContent = action.label;
    button.setAttribute("aria-describedby", about);
    button.dataset.testid = `${testid}-action`;
    button.addEventListener("click", () => {
      onClose();
      action.run();
    });
    box.append(button);
  }
  box.append(close);
  return box;
}

/**
 * Removes the notice `el`. When the focus was in it, it goes to `back` (where it came from), else
 * to a neighbouring notice's close button, else to the list of updates: never to <body>, where
 * a screen reader loses its place and a keyboard user starts again from the top.
 */
function removeNotice(el, back = null) {
  const hadFocus = el.contains(document.activeElement);
  const neighbour = el.nextElementSibling ?? el.previousElementSibling;
  el.remove();
  if (!hadFocus) return;
  const target = [back, neighbour?.lastElementChild].find((t) => t?.isConnected);
  if (target) target.focus({ preventScroll: true });
  else focusRegion(document.getElementById("updates"));
}

function keepAtMost(host, count) {
  while (host.children.length > count) removeNotice(host.firstElementChild);
}

/** Keys of banners the user closed: not shown again until their trouble clears (`clearError`). */
const dismissedKeys = new Set();

/**
 * Show an error banner. A `key` names one trouble (the poller uses one), shown in one banner for as
 * long as it lasts: repeating it updates that banner's text in place rather than adding a banner or
 * announcing it to screen readers again, and once the user closes it, it stays closed until the
 * trouble clears.
 */
export function showError(message, { key = null, title = "Something went wrong" } = {}) {
  const host = document.getElementById("errors");
  if (key) {
    if (dismissedKeys.has(key)) return;
    const shown = [...host.querySelectorAll(".alert")].find((el) => el.dataset.key === key);
    if (shown) {
      for (const [selector, text] of [[".alert-title", title], [".alert-text", message]]) {
        const el = shown.querySelector(selector);
        if (el.textContent !== text) el.textContent = text;
      }
      return;
    }
  }
  const box = notice({
    className: "alert",
    testid: "error-banner",
    icon: "alert",
    title,
    text: message,
    closeLabel: "Dismiss error",
    closeTestid: "error-dismiss",
    onClose: () => {
      removeNotice(box);
      if (key) dismissedKeys.add(key);
    },
  });
  box.setAttribute("role", "alert");
  if (key) box.dataset.key = key;
  host.append(box);
  keepAtMost(host, 3);
  host.scrollTop = host.scrollHeight;
}

export function clearError(key) {
  dismissedKeys.delete(key);
  for (const el of document.querySelectorAll("#errors .alert")) if (el.dataset.key === key) removeNotice(el);
}

/** The key that takes keyboard focus to the newest toast (see `focusNewestToast`). */
export const TOAST_KEY = "n";

/**
 * How long a toast's buttons let the pointer through after it came up or moved. A toast comes
 * up over the page's bottom edge (full width on a phone) and pushes the older ones up, and one
 * that grows (a burst's names) pushes those above it: a tap or click already on its way to the
 * page there goes to the page, as it was aimed, not to a "Show" or close button that came under
 * it (see `data-settling` in app.css). A toast that did not move takes it at once; the keyboard
 * is never held up.
 */
const TOASTS_STEADY_MS = 500;
const movedAt = new WeakMap();
let settleTimer = 0;

/** Runs `change` on the toasts in `host`, and holds the pointer off those it brought or moved. */
function moving(host, change) {
  const before = new Map([...host.children].map((el) => [el, el.getBoundingClientRect().top]));
  change();
  const now = performance.now();
  for (const el of host.children) {
    if (before.get(el) === el.getBoundingClientRect().top) continue;
    movedAt.set(el, now);
    el.dataset.settling = "";
  }
  settle(host);
}

// Asks the clock, not the timer alone, so that a test can hold the moment.
function settle(host) {
  clearTimeout(settleTimer);
  let next = Infinity;
  for (const el of host.querySelectorAll("[data-settling]")) {
    const left = movedAt.get(el) + TOASTS_STEADY_MS - performance.now();
    if (left > 0) next = Math.min(next, left);
    else delete el.dataset.settling;
  }
  settleTimer = next < Infinity ? setTimeout(() => settle(host), next) : 0;
}

/** Where focus was before `focusNewestToast` took it to each toast, to go back there. */
const cameFrom = new WeakMap();

/**
 * A toast that closes itself after 5 s, held open while one of its buttons has focus or the
 * pointer. Toasts come last in the page, after every card, so the keyboard reaches the newest
 * one with TOAST_KEY (`focusNewestToast`); Escape closes it, and focus goes back to where it was.
 * action: { label, run } for a button that does something about it, or null.
 */
/** Shows a toast; the handle returned can tell whether it is still shown and change its words. */
export function toast(title, text, action = null) {
  const host = document.getElementById("toasts");
  let timer = 0;
  const close = () => {
    clearTimeout(timer);
    if (el.isConnected) moving(host, () => removeNotice(el, cameFrom.get(el)));
  };
  // Under a modal dialog a toast can be neither read nor reached: it waits for the dialog to
  // close, then has its time on screen.
  const expire = () => {
    const dialog = document.querySelector("dialog[open]");
    if (!dialog) close();
    else dialog.addEventListener("close", () => el.isConnected && arm(), { once: true });
  };
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(expire, TOAST_MS);
  };
  const el = notice({
    className: "toast",
    testid: "toast",
    icon: "bell",
    title,
    text,
    action,
    closeLabel: "Close notification",
    closeTestid: "toast-close",
    onClose: close,
  });
  el.addEventListener("focusin", () => clearTimeout(timer));
  el.addEventListener("focusout", arm);
  // Only the toast's buttons take the pointer (the rest lets clicks through to the page).
  el.addEventListener("pointerover", () => clearTimeout(timer));
  el.addEventListener("pointerout", (e) => {
    if (!el.contains(e.relatedTarget) && !el.contains(document.activeElement)) arm();
  });
  el.addEventListener("keydown", (e) => {
    if (e.key === "Escape") close();
  });
  moving(host, () => {
    host.append(el);
    keepAtMost(host, 3);
  });
  arm();
  return {
    /** Still on screen: not closed, nor pushed out by newer toasts. */
    get open() {
      return el.isConnected;
    },
    /** New words for this toast, its time on screen started over; not announced again. */
    update(newTitle, newText) {
      moving(host, () => {
        el.querySelector(".toast-title").textContent = newTitle;
        el.querySelector(".toast-text").textContent = newText;
      });
      if (!el.contains(document.activeElement) && !el.matches(":hover")) arm();
    },
  };
}

/** Focuses the newest toast's first button; false when there is no toast. */
export function focusNewestToast() {
  const toast = document.querySelector("#toasts .toast:last-child");
  if (!toast) return false;
  if (document.activeElement && document.activeElement !== document.body) {
    cameFrom.set(toast, document.activeElement);
  }
  toast.querySelector("button").focus();
  return true;
}

export function announce(message) {
  const el = document.getElementById("announcer");
  el.textContent = "";
  // A fresh text node after a tick is announced even when the message repeats.
  setTimeout(() => {
    el.textContent = message;
  }, 50);
}

/**
 * Ask in the modal dialog; resolves "ok" when confirmed, "other" for the second choice (shown
 * when `otherLabel` is given), and "" when cancelled.
 */
export function confirmDialog({ title, text, confirmLabel, otherLabel = null }) {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector("#confirm-title").textContent = title;
  dialog.querySelector("#confirm-text").textContent = text;
  dialog.querySelector('[data-testid="confirm-ok"]').textContent = confirmLabel;
  const other = dialog.querySelector('[data-testid="confirm-other"]');
  other.hidden = !otherLabel;
  other.textContent = otherLabel ?? "";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        // The browser gives focus back to the button that opened the dialog; one disabled
        // meanwhile ("Dismiss all" with nothing left pending) cannot take it, and a keyboard
        // user would start again from the top of the page.
        const now = document.activeElement;
        const lost = !now || now === document.body || now.disabled || dialog.contains(now);
        if (lost) focusRegion(document.getElementById("updates"));
        resolve(["ok", "other"].includes(dialog.returnValue) ? dialog.returnValue : "");
      },
      { once: true },
    );
    dialog.showModal();
  });
}
