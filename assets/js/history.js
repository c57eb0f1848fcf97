// The history dialog of one image: every webhook event the server kept, newest first, in runs of
// the same digest (so one sees when each digest appeared and on which hosts), a page at a time.
// A modal <dialog>: focus stays inside (Tab wraps), Esc or the close button closes it, focus then
// returns to the card's History button. Errors show inside the dialog with a retry button. Its foot
// removes the image from the dashboard (a container that is gone), after an inline confirmation
// (Esc there takes the question back); the page then puts the focus on a card nearby.

import { api } from "./api.js";
import { h, closeOnBackdrop } from "./dom.js";
import { glyph } from "./icons.js";
import { parseImage, referenceLabel, placeSummary, shortDigest } from "./image.js";
import { timeElement } from "./time.js";
import { plural, isolated } from "./words.js";

const PAGE = 50;
const REFRESH_MS = 150;

const $ = (id) => document.getElementById(id);
const dialog = $("history-dialog");
const titleEl = $("history-title");
const imageEl = $("history-image");
const summaryEl = $("history-summary");
const errorsEl = $("history-errors");
const list = $("history-list");
const foot = $("history-foot");
const more = $("history-more");
const removeRow = $("history-remove");

let open = null; // { image, label, receivedAt, currentDigest, acknowledgedAt, events: [], nextBefore, loaded, busy, restoreFocus, remove, confirming }
let withdrawnAt = -Infinity; // when Escape last took the removal's question back
let generation = 0;
let refreshTimer = 0;


// ---- Rendering -------------------------------------------------------------------------------

/** Consecutive events with the same digest (events are newest first). */
function runs(events) {
  const out = [];
  for (const event of events) {
    const last = out[out.length - 1];
    if (last && last.digest === event.digest) last.events.push(event);
    else out.push({ digest: event.digest, events: [event] });
  }
  return out;
}

function digestCode(digest, testid) {
  return h("code", { class: "digest", "data-testid": testid, title: digest || "no digest", text: digest ? shortDigest(digest) : "—" });
}

function eventItem(event) {
  const place = placeSummary(event.metadata);
  const status = String(event.status || "update");
  return h(
    "li",
    {
      class: "history-event",
      "data-testid": "history-event",
      "data-id": event.id,
      "data-digest": event.digest,
      "data-hostname": event.hostname,
      "data-status": status,
      "data-acknowledged": event.acknowledged_at ? "true" : "false",
      tabindex: "-1",
    },
    h("span", { class: "history-when", "data-testid": "history-time" }, timeElement(event.received_at)),
    h(
      "span",
      { class: "history-where" },
      glyph("server"),
      h("span", { class: "history-host", "data-testid": "history-host", text: event.hostname || "unknown host" }),
      place && h("span", { class: "history-place", text: place }),
    ),
    h("span", { class: "pill pill-status", "data-testid": "history-status", title: `Status reported by DIUN: ${status}`, text: status }),
    h(
      "span",
      { class: "history-digest" },
      h("span", { class: "sr-only", text: "digest " }),
      digestCode(event.digest, "history-digest"),
    ),
    event.acknowledged_at
      ? h(
          "span",
          { class: "history-ack", "data-testid": "history-acknowledged" },
          glyph("check"),
          "Acknowledged ",
          timeElement(event.acknowledged_at),
        )
      : h("span", { class: "history-ack is-pending", text: "Pending" }),
  );
}

function runSection(run, current, index) {
  const oldest = run.events[run.events.length - 1];
  const hosts = [...new Set(run.events.map((e) => e.hostname).filter(Boolean))].sort((a, b) => a.localeCompare(b));
  const headId = `history-run-${index}`;
  return h(
    "section",
    {
      class: `digest-run${run.digest === current ? " is-current" : ""}`,
      "data-testid": "history-digest-group",
      "data-digest": run.digest,
      "data-current": run.digest === current ? "true" : "false",
      "aria-labelledby": headId,
    },
    h(
      "h3",
      { class: "digest-head", id: headId },
      h("span", { class: "sr-only", text: "Digest " }),
      digestCode(run.digest, "history-group-digest"),
      run.digest === current && h("span", { class: "pill pill-current", text: "Current" }),
    ),
    h(
      "p",
      { class: "digest-meta" },
      "First reported ",
      timeElement(oldest.received_at),
      hosts.length ? ` on ${hosts.map(isolated).join(", ")}` : "",
      ` · ${plural(run.events.length, "report")}`,
      oldest.created ? h("span", { class: "digest-created" }, " · image built ", timeElement(oldest.created)) : "",
    ),
    h("ol", { class: "history-events" }, run.events.map(eventItem)),
  );
}

function render() {
  if (!open) return;
  const { events, nextBefore, loaded, busy } = open;
  list.setAttribute("aria-busy", busy ? "true" : "false");
  if (!loaded) {
    const loading = h("p", { class: "history-loading", "data-testid": "history-loading", text: "Loading history…" });
    list.replaceChildren(...(busy ? [loading] : []));
  } else if (!events.length) {
    const text = "No reports are kept for this image: history older than the retention period (HISTORY_DAYS) is pruned.";
    list.replaceChildren(h("p", { class: "history-empty", "data-testid": "history-empty", text }));
  } else {
    // Rebuilt whole (it is small); an event that had focus keeps it.
    const focusedId = list.contains(document.activeElement) ? document.activeElement.dataset.id : undefined;
    list.replaceChildren(...runs(events).map((run, i) => runSection(run, open.currentDigest, i)));
    if (focusedId !== undefined) {
      const again = [...list.querySelectorAll('[data-testid="history-event"]')].find((el) => el.dataset.id === focusedId);
      (again || list).focus({ preventScroll: true });
    }
  }
  // An event that names no host (or no digest) adds none to the counts.
  const digests = new Set(events.map((e) => e.digest).filter(Boolean)).size;
  const hosts = new Set(events.map((e) => e.hostname).filter(Boolean)).size;
  summaryEl.textContent = !loaded
    ? ""
    : `${plural(events.length, "event")}${nextBefore !== null ? " loaded" : ""} · ${plural(digests, "digest")} · ${plural(hosts, "host")}`;
  const footGoes = !loaded || nextBefore === null;
  // Hidden under the focus (no older page after a refresh, the image removed elsewhere, a 404),
  // "Load older" would drop it to <body>, out of the dialog.
  if (footGoes && foot.contains(document.activeElement)) {
    (loaded && events.length ? list : $("history-close")).focus({ preventScroll: true });
  }
  foot.hidden = footGoes;
  // aria-disabled, not disabled: a disabled button would drop keyboard focus to <body>.
  more.setAttribute("aria-disabled", busy ? "true" : "false");
  more.textContent = busy && loaded ? "Loading…" : "Load older";
}

/** The foot's "Remove from dashboard…", or its confirmation (focus then on Cancel, as in a
 * group's: the question is read with each button). */
function renderRemove() {
  if (!open) return;
  const hadFocus = removeRow.contains(document.activeElement);
  drawRemove();
  // Its buttons were redrawn (or are gone: nothing to remove): the focus stays in the row if
  // it can, else in the dialog.
  if (hadFocus && !removeRow.contains(document.activeElement)) {
    (removeRow.querySelector("button") ?? $("history-close")).focus();
  }
}

function drawRemove() {
  if (!open.receivedAt) {
    // Not tracked (any more): nothing to remove.
    removeRow.replaceChildren();
    return;
  }
  if (!open.confirming) {
    removeRow.replaceChildren(
      h(
        "button",
        { type: "button", class: "btn btn-ghost btn-ghost-danger btn-sm", "data-testid": "history-remove" },
        glyph("trash"),
        h("span", { text: "Remove from dashboard…" }),
      ),
    );
    return;
  }
  const questionId = "history-remove-question";
  removeRow.replaceChildren(
    h(
      "div",
      { class: "confirm-inline is-danger", role: "group", "aria-label": `Remove ${open.label}`, "data-testid": "history-remove-row" },
      h("span", {
        id: questionId,
        text: `Remove ${open.label} from the dashboard, with its group and history? DIUN's next report of it brings it back.`,
      }),
      h(
        "button",
        { type: "button", class: "btn btn-sm btn-danger", "data-testid": "history-remove-confirm", "aria-describedby": questionId },
        "Remove",
      ),
      h(
        "button",
        { type: "button", class: "btn btn-sm btn-ghost", "data-testid": "history-remove-cancel", "aria-describedby": questionId },
        "Cancel",
      ),
    ),
  );
}

function confirmRemoval(confirming) {
  open.confirming = confirming;
  renderRemove();
  removeRow.querySelector(`[data-testid="${confirming ? "history-remove-cancel" : "history-remove"}"]`)?.focus();
}

removeRow.addEventListener("click", (e) => {
  const button = e.target.closest("button");
  if (!button || !open) return;
  const action = button.dataset.testid;
  if (action === "history-remove") confirmRemoval(true);
  else if (action === "history-remove-cancel") confirmRemoval(false);
  else if (action === "history-remove-confirm") {
    // The card and its History button go: the page puts the focus near where the card was.
    const { remove, receivedAt } = open;
    open.restoreFocus = null;
    dialog.close();
    remove(receivedAt);
  }
});

// Escape in the confirmation takes it back, as in a group's; the dialog stays open. (A browser
// may still ask the dialog to close: the `cancel` below.)
removeRow.addEventListener("keydown", (e) => {
  if (e.key !== "Escape" || !open?.confirming) return;
  e.preventDefault();
  e.stopPropagation();
  withdrawnAt = performance.now();
  confirmRemoval(false);
});

dialog.addEventListener("cancel", (e) => {
  const justWithdrawn = performance.now() - withdrawnAt < 500;
  if (!justWithdrawn && !(open?.confirming && removeRow.contains(document.activeElement))) return;
  e.preventDefault();
  if (open?.confirming) confirmRemoval(false);
});

function showError(message, retry) {
  // Focus on the list (a Retry moved it there) would fall to <body> as the list, still without
  // a page loaded, empties and hides: it goes to the new Retry instead. A failed reload of a
  // list already shown keeps the list, and the user's place in it.
  const focusInList = !open?.loaded && list.contains(document.activeElement);
  errorsEl.replaceChildren(
    h(
      "div",
      { class: "alert", role: "alert", "data-testid": "history-error" },
      glyph("alert"),
      h(
        "div",
        { class: "alert-body" },
        h("p", { class: "alert-title", text: "Could not load the history" }),
        h("p", { class: "alert-text", text: message }),
      ),
      h("button", { type: "button", class: "btn btn-outline btn-sm btn-retry", "data-testid": "history-retry" }, "Retry"),
    ),
  );
  const again = errorsEl.querySelector("button");
  again.addEventListener("click", () => {
    // A load on its way (a refresh's) answers for this one: two at once would each end the
    // other's "busy".
    if (open?.busy) return;
    // The button goes away with the message: focus moves to the list it reloads, not to <body>.
    errorsEl.replaceChildren();
    retry();
    list.focus();
  });
  if (focusInList) again.focus();
}

// ---- Loading ---------------------------------------------------------------------------------

/** The image is not tracked (removed): its events, gone from the server, leave the list, so that
 * a later report of it starts a history of its own here too. */
function forgetLoaded() {
  open.events = [];
  open.nextBefore = null;
  open.loaded = false;
}

/** Put fetched events into the list: a newer copy of an event replaces the older one. */
function merge(events) {
  const byId = new Map(open.events.map((e) => [e.id, e]));
  for (const event of events) if (event && Number.isFinite(event.id)) byId.set(event.id, event);
  open.events = [...byId.values()].sort((a, b) => b.id - a.id);
  markAcknowledged();
}

/**
 * The image's acknowledgement covers every report received before it that was still pending, so
 * those are marked on every loaded page, whatever a fetch brings back: the reload after an
 * acknowledgement fetches only the newest page, and an older page asked for meanwhile may have been
 * read before the acknowledgement was made.
 */
function markAcknowledged() {
  const at = open.acknowledgedAt;
  if (!at) return;
  const time = Date.parse(at);
  for (const event of open.events) {
    if (!event.acknowledged_at && Date.parse(event.received_at) <= time) event.acknowledged_at = at;
  }
}

/** Fetch a page; `before` null = the newest. Returns false when it failed (the error is shown). */
async function load(before) {
  const mine = generation;
  const state = open;
  state.busy = true;
  render();
  try {
    const page = await api.history(state.image, { before, limit: PAGE });
    if (mine !== generation) return false;
    const events = Array.isArray(page?.events) ? page.events : [];
    const nextBefore = Number.isFinite(page?.next_before) ? page.next_before : null;
    const known = new Set(state.events.map((e) => e.id));
    if (before === null && state.loaded && nextBefore !== null && !events.some((e) => known.has(e.id))) {
      // More new events than a page since the last look: start over rather than leave a gap.
      state.events = [];
      state.nextBefore = nextBefore;
    } else if (before !== null || !state.loaded) {
      // A later look at the newest page says nothing about the older pages already loaded.
      state.nextBefore = nextBefore;
    }
    if (before === null && nextBefore === null) {
      // The newest page is the whole history: what is loaded and not in it is gone (the image
      // removed and reported again between two looks).
      state.events = [];
      state.nextBefore = null;
    }
    merge(events);
    state.loaded = true;
    // An error that a later load cleared by itself (a poll's): its Retry may hold the focus.
    if (errorsEl.contains(document.activeElement)) list.focus();
    errorsEl.replaceChildren();
    return true;
  } catch (err) {
    if (mine !== generation) return false;
    if (err.status === 404) forgetLoaded();
    const message = err.status === 404 ? "The dashboard does not track this image (any more)." : err.message;
    showError(message, () => load(before));
    return false;
  } finally {
    if (mine === generation) {
      state.busy = false;
      render();
    }
  }
}

more.addEventListener("click", async () => {
  if (!open || open.busy || open.nextBefore === null) return;
  const known = new Set(open.events.map((e) => e.id));
  const ok = await load(open.nextBefore);
  if (!ok || !open) return;
  // Keyboard users continue where the new events start once the button is gone.
  if (foot.hidden) {
    const first = [...list.querySelectorAll('[data-testid="history-event"]')].find((el) => !known.has(Number(el.dataset.id)));
    (first || list).focus();
  }
});

// ---- Opening and closing ---------------------------------------------------------------------

/**
 * Open the dialog for `image`. entry: its /api/updates entry (for the current digest);
 * restoreFocus(): puts focus back where it belongs after closing; remove(): removes the image
 * once confirmed (the dialog closed).
 */
export function openHistory(image, entry, restoreFocus, remove) {
  generation++;
  clearTimeout(refreshTimer);
  const label = isolated(referenceLabel(parseImage(image)));
  open = {
    image,
    label,
    receivedAt: entry?.received_at || null,
    currentDigest: entry?.event?.digest || null,
    entrySig: entrySig(entry),
    acknowledgedAt: entry?.acknowledged_at || null,
    events: [],
    nextBefore: null,
    loaded: false,
    busy: false,
    restoreFocus,
    remove,
    confirming: false,
  };
  titleEl.textContent = `History of ${label}`;
  imageEl.textContent = image;
  errorsEl.replaceChildren();
  list.scrollTop = 0;
  render();
  renderRemove();
  if (!dialog.open) dialog.showModal();
  $("history-close").focus();
  load(null);
}

const entrySig = (entry) => JSON.stringify([entry?.received_at, entry?.acknowledged_at, entry?.event?.digest]);

/**
 * The image's entry in a new snapshot (however it arrived: stream or poll). When it changed (a new
 * report, an acknowledgement), reload the newest page and mark the current digest.
 */
export function historyEntry(entry) {
  if (!open) return;
  const sig = entrySig(entry);
  if (sig === open.entrySig) return;
  open.entrySig = sig;
  const receivedAt = entry?.received_at || null;
  if (receivedAt !== open.receivedAt) {
    const couldRemove = Boolean(open.receivedAt);
    open.receivedAt = receivedAt;
    // A new report (or none: removed elsewhere) takes back a removal asked about the one before.
    if (open.confirming || couldRemove !== Boolean(receivedAt)) {
      open.confirming = false;
      renderRemove();
    }
  }
  // Removed elsewhere, the list empties: an event that had the focus goes with it.
  const focusInList = !entry && list.contains(document.activeElement);
  if (!entry) {
    // A page asked for before the removal, answered after it, would bring the removed reports
    // back: whatever is on its way is let go, and nothing is loading any more.
    generation++;
    open.busy = false;
    forgetLoaded();
  }
  open.currentDigest = entry?.event?.digest || null;
  open.acknowledgedAt = entry?.acknowledged_at || null;
  markAcknowledged();
  render();
  if (focusInList) $("history-close").focus();
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(function again() {
    if (!open) return;
    if (open.busy) refreshTimer = setTimeout(again, REFRESH_MS);
    else load(null);
  }, REFRESH_MS);
}

export function historyImage() {
  return open ? open.image : null;
}

function focusables() {
  return [...dialog.querySelectorAll("button, [href], input, select, [tabindex]:not([tabindex='-1'])")].filter(
    (el) => !el.disabled && !el.closest("[hidden]") && el.getClientRects().length > 0,
  );
}

dialog.addEventListener("keydown", (e) => {
  if (e.key !== "Tab") return;
  const items = focusables();
  if (!items.length) return;
  // An event focused by script (the first of a page of older ones) is in no tab order of its
  // own, but in its list's place: Tab goes on from there as the browser would.
  const active = document.activeElement;
  const at = items.findIndex((el) => el === active || el.contains(active));
  if (e.shiftKey && (at === -1 || (at === 0 && items[0] === active))) {
    e.preventDefault();
    items[items.length - 1].focus();
  } else if (!e.shiftKey && (at === -1 || at === items.length - 1)) {
    e.preventDefault();
    items[0].focus();
  }
});

$("history-close").addEventListener("click", () => dialog.close());

closeOnBackdrop(dialog);

dialog.addEventListener("close", () => {
  const restore = open?.restoreFocus;
  generation++;
  clearTimeout(refreshTimer);
  open = null;
  list.replaceChildren();
  errorsEl.replaceChildren();
  removeRow.replaceChildren();
  summaryEl.textContent = "";
  restore?.();
});
