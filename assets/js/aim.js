// Clicks the pointer did not aim. A live update can put another card under a mouse that rests on
// a button: the click the user was about to make would then acknowledge an image they never
// looked at. So can their own click, doubled: the acknowledged card leaves the Pending view and
// the next one slides under the pointer. A click on a control that came under the pointer through
// a redraw, not through moving the pointer, is dropped for a moment after that redraw; the page
// then says why nothing happened.
//
// The keyboard has the same two cases: a redraw hands the focus to a control's stand-in, which
// may act on a newer report of the image (a webhook arrived while Acknowledge had the focus), or
// to a neighbour's (the acknowledged card left the Pending view): Enter next, pressed for what
// was there, or a doubled or held Enter, would act on what the user never saw. Such a handed
// control drops one press: for a moment after the hand-off, and at any time while it acts on
// another report than the one focused before.

/** How long after a redraw a control that moved under the pointer does not take its click. */
const STEADY_MS = 1000;
/** A hand on a mouse that clicks twice moves it a little: that is not aiming anew. */
const WOBBLE_PX = 3;
/** Scrolling by wheel or key moves the page under the pointer on purpose, for this long. */
const USER_SCROLL_MS = 600;
const SCROLL_KEYS = new Set(["PageUp", "PageDown", "Home", "End", "ArrowUp", "ArrowDown", " "]);
/** Where keys do their own thing rather than scroll the page. */
const KEYS_OWN = "input, textarea, select, button, a, [role='menu'], [contenteditable]";

const controlKey = (el) => {
  const control = el?.closest?.("[data-action]");
  return control ? (control.dataset.aimKey ?? control.dataset.focusKey ?? control.dataset.action) : null;
};

export function createAimGuard() {
  let aim = { x: NaN, y: NaN, key: null, at: -Infinity };
  let redrawnAt = -Infinity;
  let userScrollUntil = -Infinity;
  const flashes = new Map();
  /** A control the page focused in another's place: `{ el, at, sticky }`, until focus leaves it. */
  let handed = null;

  const aimAt = (x, y, key) => (aim = { x, y, key, at: performance.now() });
  const wobble = (x, y) => Math.abs(x - aim.x) <= WOBBLE_PX && Math.abs(y - aim.y) <= WOBBLE_PX;

  const capture = { capture: true, passive: true };
  document.addEventListener(
    "pointermove",
    (e) => {
      // Chromium also moves the pointer by itself, on the spot, after a layout change.
      if (wobble(e.clientX, e.clientY) && (redrawnAt > aim.at || (e.clientX === aim.x && e.clientY === aim.y))) return;
      aimAt(e.clientX, e.clientY, controlKey(e.target));
    },
    capture,
  );
  // A tap, or a pen that cannot hover, aims where it lands: nothing rested there before.
  document.addEventListener(
    "pointerdown",
    (e) => {
      if (e.pointerType !== "mouse") aimAt(e.clientX, e.clientY, controlKey(e.target));
    },
    capture,
  );
  document.addEventListener(
    "focusin",
    (e) => {
      // Focus taken from a guarded control that a redraw took away is the page's hand-off,
      // which `handedFocus` decides on.
      if (handed && e.target !== handed.el && handed.el.isConnected) handed = null;
    },
    capture,
  );
  document.addEventListener("wheel", () => (userScrollUntil = performance.now() + USER_SCROLL_MS), capture);
  document.addEventListener(
    "keydown",
    (e) => {
      if (SCROLL_KEYS.has(e.key) && !e.target.closest?.(KEYS_OWN)) {
        userScrollUntil = performance.now() + USER_SCROLL_MS;
      }
    },
    capture,
  );
  // What the user scrolled under the resting pointer is what it aims at; a scroll the page made
  // (the browser keeping the visible cards in place across a redraw) is not.
  document.addEventListener(
    "scroll",
    () => {
      if (performance.now() < userScrollUntil && !Number.isNaN(aim.x)) {
        aimAt(aim.x, aim.y, controlKey(document.elementFromPoint(aim.x, aim.y)));
      }
    },
    capture,
  );

  return {
    /** Told after every change that can move the cards: a redraw, a banner, new relative times. */
    redrawn() {
      redrawnAt = performance.now();
    },

    /**
     * Told when the page moved the focus from `from` (redrawn away, or disabled) to `to`. Only a
     * control with an aim key of its own (one that acts on a report) is guarded.
     */
    handedFocus(from, to) {
      // The guarded control drawn again, for the same report (its hosts changed, say): the
      // guard goes with it.
      const carried = handed !== null && from === handed.el && to && controlKey(from) === controlKey(to);
      handed = carried ? { ...handed, el: to } : null;
      if (carried || !to?.dataset?.aimKey || controlKey(from) === controlKey(to)) return;
      const sameControl = from?.dataset?.focusKey === to.dataset.focusKey;
      handed = { el: to, at: performance.now(), sticky: sameControl };
    },

    /** Whether `click` on `control` should be dropped. A keyboard's click has detail 0. */
    unaimed(click, control) {
      if (click.detail === 0) {
        const dropped =
          handed !== null && control === handed.el && (handed.sticky || performance.now() - handed.at < STEADY_MS);
        if (dropped) handed = null;
        return dropped;
      }
      return performance.now() - redrawnAt < STEADY_MS && controlKey(control) !== aim.key;
    },

    /** Shows that `control`'s click was dropped. */
    flash(control) {
      const target = control.closest('[data-testid="card"]') ?? control;
      clearTimeout(flashes.get(target));
      target.classList.remove("unaimed");
      // Restarts the animation when two clicks are dropped in a row.
      void target.offsetWidth;
      target.classList.add("unaimed");
      flashes.set(
        target,
        setTimeout(() => {
          flashes.delete(target);
          target.classList.remove("unaimed");
        }, STEADY_MS),
      );
    },
  };
}
