// Diun Dashboard — entry point: wires the page together and keeps it live: the server's change
// stream (api/stream, live.js) triggers a refetch after every change; while the stream is not open
// the page polls every 3 s; a hidden tab does neither. It also asks /api/summary for the last
// webhook refused: every 5 s while the empty page is shown, once a minute beside cards.
//
// Test hooks (data-testid), stable for browser tests:
//   Header      pending-badge (text = pending count, also data-count), refresh, dismiss-all,
//               theme-toggle (data-mode = system|light|dark; <html data-theme> is set for light/dark),
//               live-status (data-state = connecting|live|offline|paused; data-transport = stream
//               while the change stream is open, else poll; paused = hidden tab, nothing fetched)
//   Dialog      confirm-dialog (the <dialog> for "dismiss all"), confirm-ok, confirm-cancel
//   Stats       stat-total, stat-pending, stat-acknowledged, stat-groups (text = the number)
//   Filters     search, filter-status (all|pending|acknowledged), filter-group (all|<tag id>|untagged),
//               filter-host (all|host:<host name>: cards with that host among their hosts), sort
//               (newest|name|registry), no-results, clear-filters
//   New group   new-group-name, new-group-submit
//   Sections    group (data-tag-id = tag id or "untagged", data-tag-name, data-count = updates in it),
//               group-name, group-count (text = its updates, "shown/total" while filtered),
//               group-toggle (the heading's button; aria-expanded false = folded away),
//               group-cards, group-empty,
//               group-dismiss → group-dismiss-confirm | group-dismiss-cancel (inline confirm),
//               group-delete → group-delete-confirm | group-delete-cancel (not on Untagged)
//   Cards       card (data-image = full image, data-state = pending|acknowledged,
//               data-tag-id = its section, data-new = true|false, data-received-at),
//               card-name, card-tag, card-registry, card-status, card-host (text = a host name),
//               card-container, card-containers, card-pod, card-job, card-task, card-platform,
//               card-received and card-acknowledged (each holds a <time>, exact time in its title),
//               new-badge ("Just in", while data-new is true), ack (pending cards only), acked
//               (acknowledged cards), hub-link (the registry link, only for http(s) hub_link),
//               move-menu ("Move to…") → move-options (role=menu) → move-option (data-tag-id = tag
//               id or "untagged"), history-open (opens the history dialog)
//   Hosts       One host: the rows card-host, card-container(s), card-pod… as above. Several hosts
//               (an image reported by more than one since it last became pending, acknowledged
//               or not): card-hosts (list, data-count) of
//               card-host-item (data-hostname), each with card-host (host name) and, when known,
//               card-host-place (its containers / pod / job, one line); no card-container rows then
//   History     history-dialog (modal <dialog>), history-close, history-summary, history-list,
//               history-loading, history-empty, history-digest-group (data-digest: consecutive
//               events with one digest, newest first; data-current = true for the image's digest),
//               history-group-digest, history-event (data-id, data-digest, data-hostname,
//               data-status, data-acknowledged = true|false) with history-time, history-host,
//               history-status, history-digest (short text, full digest in its title) and
//               history-acknowledged (when set), history-more ("Load older", only while older
//               events exist), history-error (role=alert) with history-retry, history-remove
//               ("Remove from dashboard…"), then history-remove-row (the confirmation) with
//               history-remove-confirm and history-remove-cancel
//   Empty page  empty-state with diun-snippet, copy-snippet, loopback-hint (opened on a loopback
//               address), refused-webhook (the last webhook refused, when any) with
//               refused-webhook-error
//   Feedback    toast, toast-close, error-banner (role=alert), error-dismiss, empty-state,
//               diun-snippet, copy-snippet, loading
// Drag and drop: press on a card (not on a button or link), move onto another section, release.

import { api } from "./api.js";
import { state, subscribe, setSnapshot, snapshotToken, view, isNew, markSeen, baselineSeen, pendingEntries, sectionKeyOf } from "./state.js";
import { renderSummary, renderGroups, redrawEveryCard, summarize, diunSnippet, showPendingInTitle, showRefusal, refusalBanner, emptyShown, hiddenByFilters, pendingShown } from "./render.js";
import { createActions } from "./actions.js";
import { initDragAndDrop } from "./dnd.js";
import { createAimGuard } from "./aim.js";
import { openMoveMenu, closeMenu, isMenuOpen } from "./menu.js";
import { initDensity } from "./density.js";
import { initTheme } from "./theme.js";
import { showError, clearError, toast, announce, confirmDialog, focusNewestToast, TOAST_KEY } from "./feedback.js";
import { parseImage, referenceLabel } from "./image.js";
import { exactTimesOnTap, tick } from "./time.js";
import { connectStream } from "./live.js";
import { Coverage, commonMark, parseMark } from "./sync.js";
import { openHistory, historyEntry, historyImage } from "./history.js";
import { plural, isolated } from "./words.js";
import { closeOnBackdrop, focusRegion } from "./dom.js";
import { load, onChange, save } from "./storage.js";
import { boxesChanged, filtersFromQuery, queryOfFilters } from "./address.js";

const POLL_MS = 3000;
const SAFETY_POLL_MS = 60000;
const REFETCH_MS = 150;
const HIDDEN_GRACE_MS = 10000;
const HIDDEN_POLL_MS = 30000;
const SEEN_AFTER_MS = 6000;
// The server's limit, in characters; the input's maxlength would count UTF-16 units instead and
// cut a name of emoji at half the length.
const MAX_GROUP_NAME = 100;

const $ = (id) => document.getElementById(id);
const root = $("updates");
// The skip link's target takes the focus only while it has it (see focusRegion).
document.querySelector(".skip-link").addEventListener("click", () => focusRegion(root));
const aimGuard = createAimGuard();

// The sticky error banners' height, for the page's scroll padding (app.css): a control that
// takes focus is not scrolled in underneath them.
if (window.ResizeObserver) {
  new ResizeObserver(([entry]) => {
    const height = Math.ceil(entry.target.getBoundingClientRect().height);
    document.documentElement.style.setProperty("--errors-height", `${height}px`);
    // The banners are in the flow above the cards: they move every card.
    aimGuard.redrawn();
  }).observe($("errors"));
  // Likewise the toasts' stack at the bottom: a card J or K moves to is not left under it. The
  // room kept for it at the page's end only grows: were it to shrink as a toast closed, the
  // browser would pull the page up under a resting mouse (at the end of the page).
  let toastsRoom = 0;
  new ResizeObserver(([entry]) => {
    const height = Math.ceil(entry.target.getBoundingClientRect().height);
    document.documentElement.style.setProperty("--toasts-height", `${height}px`);
    if (height > toastsRoom) {
      toastsRoom = height;
      document.documentElement.style.setProperty("--toasts-room", `${height}px`);
    }
  }).observe($("toasts"));
}
const endpoint = new URL("webhook", location.href).href;

// ---- The filters' fold (narrow windows) ----------------------------------------------------

// On a phone the summary and the toolbar took the whole first screen: the boxes behind the search
// fold away (app.css: below 640px, or a phone on its side), and the toggle counts those not at
// their defaults, so a filtered page does not pass for a complete one. Folded from the start
// (index.html): a phone does not see the boxes and then lose them.
const toolbar = document.querySelector(".toolbar");
const filtersToggle = $("filters-toggle");
const filtersCount = $("filters-count");
const filterFields = $("filter-fields");

function foldFilters(folded) {
  toolbar.toggleAttribute("data-folded", folded);
  filtersToggle.setAttribute("aria-expanded", String(!folded));
}
filtersToggle.addEventListener("click", () => foldFilters(!toolbar.hasAttribute("data-folded")));
// A box that takes the focus (in a wide window, where nothing folds) unfolds them: a window
// narrowed meanwhile keeps the box, rather than the focus falling to the page's start.
filterFields.addEventListener("focusin", () => foldFilters(false));

/** Counts the boxes behind the fold not at their defaults. */
function showFiltersCount() {
  const applied = boxesChanged(state.filters);
  filtersCount.hidden = applied === 0;
  filtersCount.textContent = String(applied);
  filtersToggle.setAttribute("aria-label", applied ? `Filters, ${applied} applied` : "Filters");
}

// ---- Rendering -------------------------------------------------------------------------------

// The sections folded away, by key (a group's id, or "untagged"): remembered, and the same in
// every tab; a deleted group's key is forgotten once a page has the groups (pruneFolded).
const COLLAPSED_KEY = "collapsed-groups";
const collapsed = new Set(keysOf(load(COLLAPSED_KEY, [])));
function keysOf(value) {
  return Array.isArray(value) ? value.filter((key) => typeof key === "string") : [];
}
function setCollapsed(key, fold) {
  if (fold === collapsed.has(key)) return;
  if (fold) collapsed.add(key);
  else collapsed.delete(key);
  save(COLLAPSED_KEY, [...collapsed]);
  requestRender();
}
/**
 * Forgets folded groups that are gone, which a new group with a reused id (a database started
 * afresh) would start folded as. Once per page: a group folded in another tab just now may not
 * be in this snapshot yet.
 */
let foldedPruned = false;
function pruneFolded(tags) {
  if (foldedPruned) return;
  foldedPruned = true;
  const known = new Set(tags.map((t) => String(t.id)));
  for (const key of [...collapsed]) if (key !== "untagged" && !known.has(key)) setCollapsed(key, false);
}
onChange(COLLAPSED_KEY, [], (theirs) => {
  collapsed.clear();
  for (const key of keysOf(theirs)) collapsed.add(key);
  requestRender();
});

let renderQueued = false;
let renderHeld = false;
let dragging = false;
// The last webhook refused (/api/summary's last_refused_webhook) and the last refused POST
// (last_refused_post), each while newer than every report the page has shown: see below.
const refused = { any: null, post: null };
let newestReport = ""; // the newest received_at the page has shown: older refusals are stale

function requestRender() {
  if (renderQueued) return;
  renderQueued = true;
  const run = () => {
    renderQueued = false;
    renderNow();
  };
  if (document.hidden) setTimeout(run, 0);
  else requestAnimationFrame(run);
}

function findByFocusKey(key) {
  if (!key) return null;
  for (const el of document.querySelectorAll("[data-focus-key]")) if (el.dataset.focusKey === key) return el;
  return null;
}

/**
 * Where focus goes when the focused control is gone and so is its stand-in (a card acknowledged
 * under the Pending filter, a group with nothing left to dismiss): the next card's controls, then
 * the previous ones', then the group's own, so that a keyboard user carries on from where they
 * were instead of from the top of the list.
 */
function nearbyFocusKeys(active) {
  const card = active?.closest?.('[data-testid="card"]');
  const section = active?.closest?.('[data-testid="group"]');
  // Read from the focused card's siblings, a few each way: this runs before every render, and
  // thousands of cards must not be gathered for it.
  const siblings = (from, step) => {
    const found = [];
    for (let el = from && step(from); el && found.length < 4; el = step(el)) found.push(el);
    return found;
  };
  const next = (el) => el.nextElementSibling;
  const first = card ? null : section?.querySelector('[data-testid="card"]');
  const order = card
    ? [...siblings(card, next), ...siblings(card, (el) => el.previousElementSibling)]
    : first
      ? [first, ...siblings(first, next)]
      : [];
  const keys = order.flatMap((other) => [`ack:${other.dataset.image}`, `move:${other.dataset.image}`]);
  const groupKey = section?.dataset.tagId;
  if (groupKey) keys.push(`group-dismiss:${groupKey}`, `group-delete:${groupKey}`, `group-toggle:${groupKey}`);
  return keys;
}

function inView(el) {
  const r = el.getBoundingClientRect();
  return r.bottom > 0 && r.top < window.innerHeight;
}

/** The user changed the filters since the last render: it says how many updates they show. */
let filtersChanged = false;

function renderNow() {
  // A drag or an open menu holds the DOM still; the latest state is drawn when it ends.
  if (dragging || isMenuOpen()) {
    renderHeld = true;
    return;
  }
  renderHeld = false;
  const active = document.activeElement;
  const focusKey = active?.dataset?.focusKey;
  const fallbackKey = active?.dataset?.focusFallback;
  const nearby = active && active !== document.body ? nearbyFocusKeys(active) : [];
  // A keyboard user's place is the focus: where it goes, the page follows, unless they had
  // scrolled away from it (a redraw of a change they did not make must not pull them back).
  const followFocus = Boolean(active?.matches?.(":focus-visible")) && inView(active);

  const v = view();
  const summary = summarize(v);
  renderSummary({ view: v, summary, loaded: state.loaded, filters: state.filters });
  // Once loaded: before, a group or host the address names is not known yet.
  if (state.loaded) keepFiltersInAddress();
  showFiltersCount();
  const shown = renderGroups(root, { view: v, summary, filters: state.filters, confirm: state.confirm, loaded: state.loaded, isNew, endpoint, collapsed });
  showRefusal(refused.any); // the empty page drawn anew: said already when it came
  bannerRefusal(emptyShown() ? null : refused.post); // beside cards only: the empty page says it
  aimGuard.redrawn();
  // After the user's own change of filters only: a screen reader hears what it left on screen.
  if (filtersChanged && shown !== null) {
    filtersChanged = false;
    announce(shown ? `${plural(shown, "update")} shown` : "No updates match these filters");
  }

  // The focused control was redrawn, or it is now disabled (say, "dismiss" with nothing left to
  // dismiss): its new self if usable, else its fallback, else the nearest control, else the
  // updates region, never <body>, where a keyboard user would have to start again from the top.
  const now = document.activeElement;
  const hadFocus = active && active !== document.body;
  if (hadFocus && (!active.isConnected || !now || now === document.body || now.disabled)) {
    const usable = (keys) => keys.map(findByFocusKey).find((el) => el && !el.disabled);
    const own = usable([focusKey, fallbackKey]);
    const near = own ? null : usable(nearby);
    // A nearby control may be elsewhere on the page (a deleted group's cards, now in Untagged),
    // so it is scrolled to. The control's own stand-in is mostly where it was, but not always:
    // a card moved to another group, or sorted first by a new report, is far away. A keyboard
    // user is taken there; a pointer user's page does not jump.
    if (near) near.focus();
    else if (own) own.focus({ preventScroll: !followFocus });
    else focusRegion(root);
    aimGuard.handedFocus(active, near ?? own);
  }
  watchNewCards();
}

subscribe(requestRender);

// ---- New cards stay highlighted until they have been on screen for a few seconds --------------

// Half of a card on screen counts as seen, or half of the window for a card taller than two
// windows (a long list of hosts on a phone): a sliver at the window's edge (or under a banner)
// does not. `isIntersecting` is true for any sliver; the thresholds only decide when the
// observer calls, so there are several, for the tall cards.
const SEEN_SHARE = 0.5;
const seenTimers = new Map();
const seenObserver =
  "IntersectionObserver" in window
    ? new IntersectionObserver(
        (entries) => {
          for (const { target, intersectionRatio, intersectionRect, rootBounds } of entries) {
            const shown =
              intersectionRatio >= SEEN_SHARE ||
              (rootBounds !== null && intersectionRect.height >= rootBounds.height * SEEN_SHARE);
            if (!shown) {
              clearTimeout(seenTimers.get(target));
              seenTimers.delete(target);
            } else if (!seenTimers.has(target)) {
              seenTimers.set(target, setTimeout(() => seen(target), SEEN_AFTER_MS));
            }
          }
        },
        { threshold: [0, 0.1, 0.2, 0.3, 0.4, SEEN_SHARE] },
      )
    : null;

// The observer holds on to what it watches: a card replaced by a newer report, or filtered out,
// before it was seen would stay in memory for as long as the page is open (a wall display: weeks).
const watchedCards = new Set();

function unwatch(card) {
  seenObserver.unobserve(card);
  clearTimeout(seenTimers.get(card));
  seenTimers.delete(card);
  watchedCards.delete(card);
  delete card.dataset.watched; // watched again if it comes back into the page still new
}

function seen(card) {
  seenTimers.delete(card);
  if (!card.isConnected || card.dataset.new !== "true") {
    unwatch(card);
    return;
  }
  if (document.hidden) {
    seenTimers.set(card, setTimeout(() => seen(card), SEEN_AFTER_MS));
    return;
  }
  unwatch(card);
  markSeen(card.dataset.image, card.dataset.receivedAt);
  requestRender();
}

function watchNewCards() {
  if (!seenObserver) return;
  for (const card of watchedCards) if (!card.isConnected || card.dataset.new !== "true") unwatch(card);
  for (const card of root.querySelectorAll('[data-testid="card"]')) {
    if (card.dataset.new === "true" && !card.dataset.watched) {
      card.dataset.watched = "1";
      watchedCards.add(card);
      seenObserver.observe(card);
    }
  }
}

// ---- Keeping up with the server ---------------------------------------------------------------
// The change stream (live.js) says when something changed; each change refetches everything
// (coalesced over 150 ms), unless the last fetch already included it (sync.js). While the stream
// is not open — it broke, or a buffering proxy holds it back — the page polls every 3 s instead,
// and so it does after a failed fetch until one succeeds.
// A hidden tab stops both (the stream after a short grace, so flipping between tabs does not
// reconnect; browsers allow only a few connections per server, and every tab's stream holds one)
// and only fetches the pending count every 30 s, for its title in the tab strip. It catches up when
// it is shown again; toasts for what arrived meanwhile wait until then.

let pollTimer = 0;
let pollSlow = false;
let inflight = null;
let again = false;
let refetchTimer = 0;
let previous = null;
let lastFetchOk = null; // null until the first answer
let streamFailed = false;
let hiddenTimer = 0;

// Which notices are already in the page (sync.js): an action's refresh includes its own change,
// and the notice of it then costs no second fetch.
const coverage = new Coverage();

const stream = connectStream("api/stream", {
  onOpen(epoch) {
    streamFailed = false;
    showLive();
    coverage.streamOpened(epoch);
    refetchSoon(); // whatever changed while it was not open
  },
  onChange(change) {
    if (coverage.notice(change)) refetchSoon();
  },
  onDown(wasOpen) {
    streamFailed = true;
    showLive();
    if (wasOpen) poll();
    else if (!inflight && (pollSlow || !pollTimer)) schedule();
  },
});

/**
 * The live status is shown, not a live region: as one it said "Live" at every load and every
 * return to the tab, and "Offline" over the outage's own alert. Only the way back is said.
 */
let outageUnsaid = false;

function showLive() {
  const el = $("live-status");
  const streaming = stream.isOpen();
  let mode = "live";
  let text = "Live";
  let title = streaming ? "Changes are pushed by the server as they happen." : "Checking for changes every 3 seconds.";
  if (lastFetchOk === false) {
    [mode, text, title] = ["offline", "Offline", "The dashboard server does not answer. Retrying every few seconds."];
  } else if (document.hidden && !streaming) {
    [mode, text, title] = ["paused", "Paused", "Paused while the tab is hidden."];
  } else if (lastFetchOk === null) {
    [mode, text, title] = ["connecting", "Connecting…", "Loading updates."];
  }
  // How it stays live is shown, not announced: the status region spoke up at every switch
  // between push and polling, with nothing for the user to do.
  const polling = mode === "live" && !streaming && streamFailed;
  if (polling) title = "Live push is unavailable (a proxy may buffer it); checking for changes every 3 seconds.";
  el.dataset.state = mode;
  el.dataset.transport = streaming ? "stream" : "poll";
  el.title = title;
  const label = $("live-text");
  if (label.textContent !== text) label.textContent = text;
  $("live-how").hidden = !polling;
  // An outage's end is said once the page is live again, also after a spell hidden meanwhile.
  if (mode === "offline") outageUnsaid = true;
  else if (mode === "live" && outageUnsaid) {
    outageUnsaid = false;
    announce("Back online: the dashboard is live again.");
  }
}

function label(image) {
  return isolated(referenceLabel(parseImage(image)));
}

/**
 * The arrivals of the current burst and their toast. A DIUN scan reports image after image over a
 * few seconds, and each refetch found one or two more: a toast (and a screen-reader announcement)
 * each, three stacked. Arrivals within BURST_MS of the last join the burst's toast instead.
 */
let burst = null;
const BURST_MS = 4000;

function announceArrivals(updates) {
  if (!previous) return;
  const arrived = Object.entries(updates)
    // A report already acknowledged (elsewhere, while this tab was away) is no news.
    .filter(([, entry]) => !entry.acknowledged)
    .filter(([image, entry]) => !previous[image] || previous[image].received_at !== entry.received_at)
    .map(([image]) => image);
  if (!arrived.length) return;
  const now = Date.now();
  if (burst?.toast.open && now - burst.last < BURST_MS) {
    for (const image of arrived) if (!burst.images.includes(image)) burst.images.push(image);
  } else {
    burst = { images: [...arrived], toast: null };
  }
  burst.last = now;
  const { images } = burst;
  const names = images.slice(0, 3).map(label).join(", ");
  const more = images.length > 3 ? ` and ${images.length - 3} more` : "";
  const host = images.length === 1 ? updates[images[0]]?.event?.hostname : "";
  const title = images.length === 1 ? "New image update" : `${images.length} new image updates`;
  const text = `${names}${more}${host ? ` on ${isolated(host)}` : ""}`;
  if (burst.toast) {
    burst.toast.update(title, text);
    return;
  }
  // A new image goes to the top of its group, which may be far down a long page.
  burst.toast = toast(title, text, { label: "Show", run: () => showCard(images[0]) });
}

/**
 * The next poll: every 3 s without a stream or after a failed fetch, else a slow safety check;
 * while hidden, only the title's count.
 */
function schedule() {
  clearTimeout(pollTimer);
  pollTimer = 0;
  if (document.hidden) {
    pollTimer = setTimeout(pollTitle, HIDDEN_POLL_MS);
    return;
  }
  pollSlow = stream.isOpen() && lastFetchOk !== false;
  pollTimer = setTimeout(poll, pollSlow ? SAFETY_POLL_MS : POLL_MS);
}

/**
 * A hidden tab's check: the pending count for its title. A failure shows nothing here (nobody
 * sees this tab); the full fetch when it is shown again reports it.
 */
function pollTitle() {
  pollTimer = 0;
  api
    .summary()
    // Shown again meanwhile, the page's own fetch (newer) has set the title.
    .then(({ pending }) => document.hidden && showPendingInTitle(pending))
    .catch(() => {})
    .finally(() => {
      if (!pollTimer && !inflight) schedule();
    });
}

/** Fetch updates, tags and hosts now (or join the fetch already running); true once it got them. */
function poll() {
  if (inflight) return inflight;
  clearTimeout(pollTimer);
  pollTimer = 0;
  const token = snapshotToken();
  const noticed = coverage.fetchStarted();
  inflight = api
    .snapshot()
    .then(({ updates, tags, hosts, marks }) => {
      coverage.fetchDone(commonMark(marks.map(parseMark)));
      updates = updates || {};
      if (!previous) {
        baselineSeen(updates);
        previous = updates;
      } else if (!document.hidden) {
        // While hidden, arrivals pile up against the last visible snapshot: toasted on return.
        announceArrivals(updates);
        previous = updates;
      }
      setSnapshot(updates, tags, hosts, token);
      pruneFolded(Array.isArray(tags) ? tags : []);
      if (Object.keys(updates).length) noteNewestReport(updates);
      requestAnimationFrame(checkRefusals);
      // An image removed meanwhile (in another tab) reloads its open history, which says so.
      const open = historyImage();
      if (open) historyEntry(Object.hasOwn(updates, open) ? updates[open] : null);
      clearError("poll");
      lastFetchOk = true;
      return true;
    })
    .catch((err) => {
      coverage.fetchFailed(noticed);
      showError(`${err.message} Retrying every few seconds.`, { key: "poll", title: "Could not load updates" });
      lastFetchOk = false;
      return false;
    })
    .finally(() => {
      inflight = null;
      showLive();
      // Notices that came during this fetch may be in it already.
      const behind = again && coverage.behind;
      again = false;
      if (behind) poll();
      else schedule();
    });
  return inflight;
}

/** A change was announced: fetch soon, once for a burst of changes. */
function refetchSoon() {
  if (refetchTimer) return;
  refetchTimer = setTimeout(() => {
    refetchTimer = 0;
    if (inflight) again = true;
    else if (coverage.behind) poll();
  }, REFETCH_MS);
}

/** A snapshot that surely includes everything done so far (waits out a poll already running). */
async function refresh() {
  if (inflight) await inflight;
  return poll();
}

// ---- A webhook refused ------------------------------------------------------------------------
// The empty page says so: DIUN reached the dashboard, and what to fix. Beside cards, an error
// banner says so for a refused POST: a secret changed on one side loses every update DIUN sends
// until someone looks, as DIUN sends each only once (a GET is a scanner's once DIUN's reports
// are stored, and a 403 a web page's). A refusal changes nothing the change stream speaks of,
// so it is asked for: every few seconds while the empty page is shown (someone is setting DIUN
// up), after a page's first snapshot, and once a minute beside cards.
// Several replicas behind one address each know their own: a `null` from one does not take
// back what another said. One older than a report the page has shown is stale (DIUN got through
// since; the empty page back after the last image was removed must not bring up last month's
// refusal). The server stamps refusals on the clock it stamps reports with.
const REFUSAL_POLL_MS = 5000;
const REFUSAL_POLL_BESIDE_CARDS_MS = 60_000;
let refusalAsked = false; // a check on its way: the next waits for it
let refusalAskedAt = -Infinity;
let refusalBannerKey = ""; // the banner shown, if any

function noteNewestReport(updates) {
  for (const entry of Object.values(updates)) {
    if (typeof entry?.received_at === "string" && entry.received_at > newestReport) newestReport = entry.received_at;
  }
  for (const kind of ["any", "post"]) if (refused[kind] && refused[kind].at <= newestReport) refused[kind] = null;
}

/** A refusal as the summary gave it, if it is one the page has not seen and not stale. */
function newerRefusal(latest, known) {
  const valid = latest && typeof latest === "object" && typeof latest.at === "string";
  return valid && latest.at > (known?.at ?? newestReport) ? latest : known;
}

/** The banner beside cards for `shown` (a refused POST), or none; the one shown already stays. */
function bannerRefusal(shown) {
  const wanted = shown && Number(shown.status) !== 403 ? `refused ${shown.at}` : "";
  if (wanted === refusalBannerKey) return; // kept, and kept closed when the user closed it
  if (refusalBannerKey) clearError(refusalBannerKey);
  refusalBannerKey = wanted;
  if (!wanted) return;
  const { title, text } = refusalBanner(shown);
  showError(text, { key: wanted, title });
}

function checkRefusals() {
  if (document.hidden || refusalAsked) return;
  const empty = emptyShown();
  if (!empty && (!newestReport || performance.now() - refusalAskedAt < REFUSAL_POLL_BESIDE_CARDS_MS)) return;
  refusalAsked = true;
  refusalAskedAt = performance.now();
  api
    .summary()
    .then(
      (summary) => {
        const before = refused.any;
        refused.any = newerRefusal(summary?.last_refused_webhook, refused.any);
        refused.post = newerRefusal(summary?.last_refused_post, refused.post);
        if (emptyShown()) {
          const said = refused.any !== before && showRefusal(refused.any);
          if (said) announce(said);
        } else bannerRefusal(refused.post);
      },
      () => {},
    )
    .finally(() => {
      refusalAsked = false;
    });
}

setInterval(checkRefusals, REFUSAL_POLL_MS);

exactTimesOnTap();

function tickTimes() {
  // The whole document: an open history dialog's times too, not only the cards'.
  tick();
  // A longer relative time can wrap onto a second line and move the cards after it.
  aimGuard.redrawn();
}

function followVisibility() {
  clearTimeout(hiddenTimer);
  if (document.hidden) {
    schedule();
    hiddenTimer = setTimeout(() => {
      stream.pause();
      showLive();
    }, HIDDEN_GRACE_MS);
    showLive();
  } else {
    stream.resume();
    poll();
    // A hidden tab's timers are slowed down: its relative times may be minutes behind.
    tickTimes();
  }
}
document.addEventListener("visibilitychange", followVisibility);
// A tab opened in the background (a middle-click, a restored session) is hidden from the start,
// with no visibilitychange until it is first shown.
if (document.hidden) followVisibility();

const actions = createActions(refresh);

// ---- Header ----------------------------------------------------------------------------------

initTheme($("theme-toggle"));
// Every card changes: built anew (an old one off screen would keep its old size), and a click
// meant for one must not land on another.
initDensity($("density-toggle"), () => {
  redrawEveryCard();
  requestRender();
  aimGuard.redrawn();
});

$("refresh").addEventListener("click", async () => {
  const btn = $("refresh");
  btn.classList.add("refreshing");
  // Asked for by hand, a failure is shown again even if its banner was closed.
  clearError("poll");
  let ok = false;
  try {
    ok = await refresh();
  } finally {
    btn.classList.remove("refreshing");
  }
  announce(ok ? "Refreshed" : "Refresh failed");
});

/** The pending reports the page shows (of one group: a tag id as a string, or "untagged"). */
function pendingReports(group = null) {
  const pending = pendingEntries(group);
  return new Map(pending.map(([image, entry]) => [image, entry.received_at]));
}

/** Why a dismissal did nothing when its check for new reports failed. */
const DISMISSAL_UNCHECKED = "Nothing was dismissed: the dashboard could not check for updates that came in meanwhile.";

/** How many of the reports pending now were not among those `shown` (new images, or new reports). */
function arrivedSince(shown, now) {
  return [...now].filter(([image, at]) => shown.get(image) !== at).length;
}

/**
 * Runs `work` with `button` marked busy, and not again while it runs. Marked, not disabled: a
 * disabled button drops the focus, and a redraw meanwhile moved it into the updates (its
 * stand-in for a control that went away), where the keyboard user was lost.
 */
async function whileBusy(button, work) {
  if (button.getAttribute("aria-disabled") === "true") return;
  button.setAttribute("aria-disabled", "true");
  try {
    await work();
  } finally {
    button.removeAttribute("aria-disabled");
  }
}

// ---- Housekeeping: images whose containers are likely gone --------------------------------------
// DIUN stops reporting a container that is gone, and nothing tells the dashboard: its card stays
// for good. Acknowledged images neither reported nor acknowledged for STALE_DAYS may be such
// (or merely unchanged: DIUN reports changes only); they go together, after a question that
// says so and what is forgotten. Pending ones never: nobody has looked.
const STALE_DAYS = 90;
const DAY_MS = 86_400_000;
const removeStaleButton = $("remove-stale");
removeStaleButton.addEventListener("click", () => whileBusy(removeStaleButton, askAndRemoveStale));

async function askAndRemoveStale() {
  if (!state.loaded) return;
  const before = Date.now() - STALE_DAYS * DAY_MS;
  // Since the last report, or since the user acknowledged it: one looked at lately is not stale.
  // A time that does not parse is NaN, never before anything: such an image stays.
  const lastNamed = (entry) => Math.max(Date.parse(entry.received_at), Date.parse(entry.acknowledged_at ?? entry.received_at));
  const stale = () => Object.entries(view().updates).filter(([, entry]) => entry.acknowledged && lastNamed(entry) < before);
  const found = stale();
  if (!found.length) {
    toast("Nothing to remove", `No acknowledged image has gone ${STALE_DAYS} days without a report or an acknowledgement.`);
    return;
  }
  const ok = await confirmDialog({
    title: "Remove stale images?",
    text:
      `${plural(found.length, "acknowledged image")}, in any group and whatever the filters show, ` +
      `${found.length === 1 ? "has" : "have"} had neither a report nor an acknowledgement for ${STALE_DAYS} days or more. ` +
      "DIUN reports an image only when it changes, so their containers may be gone, or simply unchanged. " +
      "Removing forgets their cards, groups and history; DIUN's next report of one brings it back as new.",
    confirmLabel: `Remove ${found.length}`,
  });
  if (!ok) return;
  // Only what the question counted, as it is now: one reported anew behind the dialog stays.
  const asked = new Set(found.map(([image]) => image));
  actions.removeMany(stale().filter(([image]) => asked.has(image)));
}

// One at a time: clicked again while its check runs (a slow database), it asked a second time
// with the first question's count, and that answer found nothing left to dismiss.
const dismissAllButton = $("dismiss-all");
dismissAllButton.addEventListener("click", () => whileBusy(dismissAllButton, askAndDismissAll));

async function askAndDismissAll() {
  let shown = pendingReports();
  let arrived = 0;
  while (shown.size) {
    const count = shown.size;
    const news = arrived ? `${plural(arrived, "new update")} arrived while this was open. ` : "";
    // "All" covers the ones the filters hide too; counted from the listing the count is from.
    // With some hidden, the shown ones alone are offered too (one host's, after updating it).
    const v = view();
    const unhidden = pendingShown(v, summarize(v), state.filters);
    const someHidden = unhidden.length > 0 && unhidden.length < count;
    const choice = await confirmDialog({
      title: "Dismiss all updates?",
      text: `${news}This acknowledges all ${plural(count, "pending update")}${hiddenByFilters(count, unhidden.length)}. An image becomes pending again when DIUN reports it anew.`,
      confirmLabel: "Dismiss all",
      otherLabel: someHidden ? `Dismiss the ${unhidden.length} matching the filters` : null,
    });
    if (!choice) return;
    // Each up to the report its card showed: one reported anew behind the dialog stays pending.
    if (choice === "other") {
      actions.acknowledgeShown(unhidden);
      return;
    }
    // Reports that came in behind the dialog were never seen: ask again rather than dismiss them.
    // The page's own listing may not have them yet (a notice on its way, a poll 3 s apart).
    if (!(await refresh())) {
      showError(DISMISSAL_UNCHECKED, { title: "Could not dismiss all updates" });
      return;
    }
    const now = pendingReports();
    arrived = arrivedSince(shown, now);
    if (!arrived) {
      actions.acknowledgeAll();
      return;
    }
    shown = now;
  }
}

closeOnBackdrop($("confirm-dialog"), "cancel");

// ---- Filters ---------------------------------------------------------------------------------

const search = $("search");
const statusSelect = $("filter-status");
const groupSelect = $("filter-group");
const hostSelect = $("filter-host");
const sortSelect = $("sort");

// The address's filters, before the first snapshot is drawn (the group and host boxes get
// their choice once the groups and hosts they list are known), and again when Back or Forward
// brings another address (the skip link's #updates makes an entry of its own).
function filtersFromAddress() {
  Object.assign(state.filters, filtersFromQuery(location.search));
  search.value = state.filters.q;
  statusSelect.value = state.filters.status;
  sortSelect.value = state.filters.sort;
}
filtersFromAddress();
window.addEventListener("popstate", () => {
  filtersFromAddress();
  requestRender();
});

/**
 * Writes the filters into the address, for a reload, a bookmark or a link to keep them. Not the
 * skip link's #updates: a reload would jump past the header.
 */
function keepFiltersInAddress() {
  const query = queryOfFilters(state.filters);
  if (query === location.search && !location.hash) return;
  try {
    history.replaceState(history.state, "", `${location.pathname}${query}`);
  } catch {
    // Safari refuses more than 100 changes in 30 s (fast typing): the next change writes it.
  }
}

/** Reads the filter boxes; `byUser` false for a change the page makes itself (an event counts). */
function readFilters(byUser = true) {
  if (byUser !== false) filtersChanged = true;
  state.filters.q = search.value;
  state.filters.status = statusSelect.value;
  // Before the first snapshot these boxes list no groups or hosts yet: the address's stay.
  if (state.loaded) {
    state.filters.group = groupSelect.value;
    state.filters.host = hostSelect.value;
  }
  state.filters.sort = sortSelect.value;
  requestRender();
}

// Typing is read once it pauses: with thousands of cards, a redraw per keystroke lags the typing.
const SEARCH_SETTLE_MS = 120;
let searchSettling = 0;
search.addEventListener("input", () => {
  clearTimeout(searchSettling);
  searchSettling = setTimeout(readFilters, SEARCH_SETTLE_MS);
});
for (const select of [statusSelect, groupSelect, hostSelect]) select.addEventListener("change", readFilters);
// Another order shows as many as before: nothing to count aloud.
sortSelect.addEventListener("change", () => readFilters(false));
$("filters").addEventListener("submit", (e) => e.preventDefault());

/** `byUser`: as for `readFilters`. */
function resetFilters(byUser = true) {
  clearTimeout(searchSettling);
  search.value = "";
  statusSelect.value = "all";
  groupSelect.value = "all";
  hostSelect.value = "all";
  readFilters(byUser);
}

function clearFilters() {
  resetFilters();
  search.focus();
}

/** Scrolls an image's card into view and puts focus on it, clearing filters that hide it. */
function showCard(image) {
  const cardOf = () => [...document.querySelectorAll('[data-testid="card"]')].find((card) => card.dataset.image === image);
  const entry = view().updates[image];
  if (!cardOf() && entry) {
    // Its section folded away: unfolded, as the user asked to see the card.
    const tagKeys = new Set(view().tags.map((t) => String(t.id)));
    setCollapsed(sectionKeyOf(entry, tagKeys), false);
    renderNow();
  }
  if (!cardOf() && entry) {
    // Not counted aloud: the focus goes to the card, which is what is read out.
    resetFilters(false);
    renderNow();
  }
  const card = cardOf();
  if (!card) {
    // Gone meanwhile, or the page holds still for an open menu or a drag; the toast's button,
    // which had focus, is gone too.
    focusRegion(root);
    return;
  }
  const reveal = () => cardOf()?.scrollIntoView({ block: "center" });
  reveal();
  const button = [...card.querySelectorAll("[data-focus-key]")].find((el) =>
    [`ack:${image}`, `move:${image}`].includes(el.dataset.focusKey),
  );
  button?.focus({ preventScroll: true });
  // Cards never drawn are laid out at a guessed height (content-visibility); once those around
  // the card are drawn, it may have moved.
  requestAnimationFrame(() => requestAnimationFrame(reveal));
}

// Single-key shortcuts, as on GitHub: "/" searches, TOAST_KEY reaches the newest toast. Not
// while typing, with a modifier held, in a menu or an inline confirmation, under an open
// dialog, or once turned off in the footer (WCAG 2.1.4: speech input can set them off).
const shortcutsToggle = $("shortcuts-toggle");
let shortcutsOn = load("shortcuts", true) !== false;

function showShortcuts() {
  shortcutsToggle.setAttribute("aria-pressed", String(shortcutsOn));
  // Shown, not read: `aria-pressed` says it, and "shortcuts off, not pressed" said it twice.
  $("shortcuts-state").textContent = shortcutsOn ? "on" : "off";
  $("shortcuts-help").toggleAttribute("data-off", !shortcutsOn);
}

shortcutsToggle.addEventListener("click", () => {
  shortcutsOn = !shortcutsOn;
  save("shortcuts", shortcutsOn);
  showShortcuts();
});
showShortcuts();
onChange("shortcuts", true, (theirs) => {
  shortcutsOn = theirs !== false;
  showShortcuts();
});

document.addEventListener("keydown", (e) => {
  if (!shortcutsOn || e.ctrlKey || e.metaKey || e.altKey || document.querySelector("dialog[open]")) return;
  if (e.target.closest?.("input, select, textarea, [contenteditable], [role='menu'], .confirm-inline")) return;
  if (e.key === "/") {
    e.preventDefault();
    search.focus();
  } else if (e.key?.toLowerCase() === TOAST_KEY && focusNewestToast()) {
    e.preventDefault();
  } else if (["j", "k"].includes(e.key?.toLowerCase()) && moveAmongCards(e.key.toLowerCase() === "j" ? 1 : -1)) {
    e.preventDefault();
  }
});

/**
 * J and K, as in mail readers: the keyboard goes to the next or the previous card (its
 * Acknowledge button, else its "Move to…"), across sections; from outside the cards, to the
 * first or the last. Hundreds of cards were otherwise three or four Tabs each.
 */
// A click on a card's text leaves the focus nowhere (only its controls take it), but that card
// is where the user is: J and K step from it. By image, as a redraw builds cards anew.
let pointedImage = null;
root.addEventListener(
  "pointerdown",
  (e) => {
    pointedImage = e.target.closest?.('[data-testid="card"]')?.dataset.image ?? null;
  },
  { passive: true },
);

function moveAmongCards(step) {
  const cards = [...root.querySelectorAll('[data-testid="card"]')];
  if (!cards.length) return false;
  const focused = document.activeElement;
  // The list itself holds the focus only as a fallback (focusRegion), and a click on a card's
  // text inside it leaves it there.
  const nowhere = !focused || focused === document.body || focused === root;
  const current =
    focused?.closest?.('[data-testid="card"]') ??
    (nowhere ? cards.find((card) => card.dataset.image === pointedImage) : null);
  const from = current ? cards.indexOf(current) : -1;
  const index = from === -1 ? (step > 0 ? 0 : cards.length - 1) : Math.max(0, Math.min(cards.length - 1, from + step));
  const control = cards[index].querySelector('[data-action="ack"], [data-action="move"]');
  if (!control) return false;
  control.focus({ preventScroll: true });
  // The whole card, not its foot; and again once the cards around it are drawn (laid out at a
  // guessed height until then: content-visibility), as for a toast's "Show".
  const reveal = () => cards[index].isConnected && cards[index].scrollIntoView({ block: "nearest" });
  reveal();
  requestAnimationFrame(() => requestAnimationFrame(reveal));
  return true;
}

// ---- New group -------------------------------------------------------------------------------

const newGroup = $("new-group");
const newGroupName = $("new-group-name");
const newGroupHint = $("new-group-hint");

/** The field's hint. It is no live region: a refusal shown as a banner too (an alert) was read out twice. */
function groupHint(message) {
  newGroupHint.textContent = message;
  if (message) newGroupName.setAttribute("aria-invalid", "true");
  else newGroupName.removeAttribute("aria-invalid");
}

/**
 * A hint with no banner, said once: focus coming to the field from the button reads its
 * description (the hint); already there (Enter), nothing would, and the page says it.
 */
function refuseGroupName(message) {
  groupHint(message);
  if (document.activeElement === newGroupName) announce(message);
  else newGroupName.focus();
}

newGroupName.addEventListener("input", () => groupHint(""));
const newGroupSubmit = newGroup.querySelector('[type="submit"]');
newGroup.addEventListener("submit", (e) => {
  e.preventDefault();
  whileBusy(newGroupSubmit, createGroupAsked);
});

async function createGroupAsked() {
  const name = newGroupName.value.trim();
  if (!name) {
    refuseGroupName("Enter a name for the group.");
    return;
  }
  if ([...name].length > MAX_GROUP_NAME) {
    refuseGroupName(`A group name has at most ${MAX_GROUP_NAME} characters.`);
    return;
  }
  // Names are unique as written: "Prod" and "prod" are two groups, on the server as here.
  const existing = view().tags.find((t) => t.name === name);
  if (existing) {
    // Same answer the server would give (409), without a failing request.
    const message = `A group named “${existing.name}” already exists.`;
    groupHint(message);
    showError(message, { title: "Could not create the group" });
    newGroupName.focus();
    return;
  }
  try {
    await actions.createGroup(name);
    newGroupName.value = "";
    groupHint("");
  } catch (err) {
    groupHint(err.message);
  }
}

// ---- Sections and cards ----------------------------------------------------------------------

function focusKey(key) {
  findByFocusKey(key)?.focus();
}

/** Removes the image, confirmed in its history dialog while it showed the report `receivedAt`:
 * the focus goes to the cards around it, as after an acknowledgement that takes a card out of view. */
function removeImage(image, receivedAt) {
  const button = findByFocusKey(`history:${image}`);
  const nearby = button ? nearbyFocusKeys(button) : [];
  actions.remove(image, receivedAt);
  renderNow();
  const near = nearby.map(findByFocusKey).find((el) => el && !el.disabled);
  if (near) near.focus();
  else focusRegion(root);
}

function setConfirm(confirm, focusAfter) {
  state.confirm = confirm;
  renderNow();
  focusKey(focusAfter);
}

function openMenuFor(button, { focusLast = false } = {}) {
  const card = button.closest('[data-testid="card"]');
  const image = card.dataset.image;
  const v = view();
  const entry = v.updates[image];
  if (!entry) return;
  const groups = [...v.tags.map((t) => ({ id: t.id, name: t.name })), { id: null, name: "Untagged" }];
  openMoveMenu(button, {
    groups,
    focusLast,
    current: entry.tag && v.tags.some((t) => t.id === entry.tag.id) ? entry.tag.id : null,
    onSelect: (id) => actions.move(image, id === null ? "untagged" : String(id)),
    onClose: () => {
      if (renderHeld) requestRender();
    },
  });
}

// As "dismiss all": reports that came in while the question was open, or that the page does not
// show yet (a notice on its way, a poll 3 s apart), were never seen; the question is asked again.
async function dismissGroup(key) {
  const asked = state.confirm;
  if (asked?.key !== key || asked.kind !== "dismiss" || asked.checking) return;
  asked.checking = true;
  // A card moved out of the group just before is still in it on the server until its move is
  // answered, and would be dismissed with it; one moved in would be drawn dismissed, and not be.
  await actions.movesSettled();
  const refreshed = await refresh();
  if (state.confirm !== asked) return; // answered or asked anew meanwhile
  if (key !== "untagged" && !view().tags.some((t) => String(t.id) === key)) {
    setConfirm(null, null); // the group went away
    return;
  }
  if (!refreshed) {
    asked.checking = false;
    showError(DISMISSAL_UNCHECKED, { title: "Could not dismiss the group" });
    return;
  }
  const now = pendingReports(key);
  const arrived = arrivedSince(asked.shown, now);
  if (arrived) {
    setConfirm({ key, kind: "dismiss", shown: now, arrived }, `group-dismiss-cancel:${key}`);
    return;
  }
  setConfirm(null, `group-dismiss:${key}`);
  actions.acknowledgeGroup(key);
}

root.addEventListener("click", (e) => {
  const btn = e.target.closest("[data-action]");
  if (!btn || !root.contains(btn) || btn.disabled) return;
  if (aimGuard.unaimed(e, btn)) {
    aimGuard.flash(btn);
    if (e.detail === 0) {
      // The focus stays: pressing again acts on what is now said to be there.
      const shown = btn.closest('[data-testid="card"]')?.dataset.image;
      announce(`Nothing was done: the focus is now on ${shown ? label(shown) : "another card"}, redrawn. Press again to act on it.`);
      return;
    }
    announce("Nothing was done: the cards moved under the pointer. Click again to act on this card.");
    // The press focused the control it did not aim at: Enter next must not act on it either.
    if (document.activeElement === btn) focusRegion(root);
    return;
  }
  const card = btn.closest('[data-testid="card"]');
  const image = card?.dataset.image;
  const key = btn.closest('[data-testid="group"]')?.dataset.tagId;
  switch (btn.dataset.action) {
    case "ack":
      actions.acknowledge(image, card?.dataset.receivedAt);
      break;
    case "move":
      if (btn.getAttribute("aria-expanded") === "true") closeMenu();
      else openMenuFor(btn);
      break;
    case "group-toggle":
      setCollapsed(key, btn.getAttribute("aria-expanded") === "true");
      break;
    case "group-dismiss":
    case "group-delete": {
      const kind = btn.dataset.action.slice("group-".length);
      // Focus on Cancel, as in the "Dismiss all" dialog: a held or doubled Enter must not confirm.
      // What the question is asked about, to tell what arrives while it is open.
      const shown = kind === "dismiss" ? pendingReports(key) : null;
      setConfirm({ key, kind, shown }, `group-${kind}-cancel:${key}`);
      break;
    }
    case "group-dismiss-cancel":
    case "group-delete-cancel": {
      const kind = btn.dataset.action.split("-")[1];
      setConfirm(null, `group-${kind}:${key}`);
      break;
    }
    case "group-dismiss-confirm":
      dismissGroup(key);
      break;
    case "group-delete-confirm": {
      const filtered = state.filters.group === key;
      if (filtered) groupSelect.value = "all";
      setConfirm(null, null);
      // The deletion says what it did; a count of what is shown would talk over it.
      readFilters(false);
      actions.deleteGroup(key).then((deleted) => {
        // Not deleted: the group's filter comes back, unless another was chosen meanwhile.
        if (!deleted && filtered && state.filters.group === "all") {
          state.filters.group = key;
          requestRender();
        }
      });
      // Its cards went to Untagged (at once, until the server says otherwise): the keyboard
      // follows them rather than starting again from the top of the list.
      renderNow();
      const untagged = findByFocusKey("group-toggle:untagged");
      // A mouse's page does not jump to Untagged (a keyboard's click has no detail).
      if (untagged) untagged.focus({ preventScroll: e.detail !== 0 });
      else focusRegion(root);
      break;
    }
    case "history":
      openHistory(
        image,
        view().updates[image],
        () => {
          const button = findByFocusKey(`history:${image}`);
          if (button) button.focus();
          else focusRegion(root);
        },
        (receivedAt) => removeImage(image, receivedAt),
      );
      break;
    case "clear-filters":
      clearFilters();
      break;
    case "copy-snippet":
      navigator.clipboard.writeText(diunSnippet(endpoint)).then(
        () => {
          announce("Copied the DIUN configuration");
          btn.lastElementChild.textContent = "Copied";
          setTimeout(() => (btn.lastElementChild.textContent = "Copy"), 2000);
        },
        () => showError("The browser did not allow copying. Select the text and copy it by hand.", { title: "Could not copy" }),
      );
      break;
  }
});

root.addEventListener("keydown", (e) => {
  const target = e.target;
  if (e.key === "Escape" && state.confirm && target.closest?.(".confirm-inline")) {
    const { key, kind } = state.confirm;
    setConfirm(null, `group-${kind}:${key}`);
  } else if ((e.key === "ArrowDown" || e.key === "ArrowUp") && target.dataset?.action === "move") {
    e.preventDefault();
    // As the WAI-ARIA menu button: ArrowUp opens on the last item.
    if (target.getAttribute("aria-expanded") !== "true") openMenuFor(target, { focusLast: e.key === "ArrowUp" });
  }
});

initDragAndDrop(root, {
  onDrop: (image, key) => actions.move(image, key),
  onDragChange: (active) => {
    dragging = active;
    if (active) closeMenu();
    else if (renderHeld) requestRender();
  },
});

// Relative times stay current.
setInterval(tickTimes, 30000);

poll();
