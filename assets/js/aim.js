// Clicks the pointer did not aim. A live update can put another card under a mouse that rests on
// a button: the click the user was about to make would then acknowledge an image they never
// looked at. So can their own click, doubled: the acknowledged card leaves the Pending view and
// the next one slides under the pointer. A click on a control that came under the pointer through
// a redraw, not through moving the pointer, is dropped for a moment after that redraw, and the
// card it landed on flashes to say why nothing happened.

/** How long after a redraw a control that moved under the pointer does not take its click. */
const STEADY_MS = 1000;
/** The control under a pointer that has not moved since the user scrolled: whatever is there. */
const ANY = Symbol("any");
const SCROLL_KEYS = new Set(["PageUp", "PageDown", "Home", "End", "ArrowUp", "ArrowDown", " "]);

const controlKey = (el) => {
  const control = el?.closest?.("[data-action]");
  return control ? (control.dataset.focusKey ?? control.dataset.action) : null;
};

export function createAimGuard() {
  let aim = { x: NaN, y: NaN, key: null };
  let redrawnAt = -Infinity;
  const flashes = new Map();

  document.addEventListener(
    "pointermove",
    (e) => {
      // Chromium moves the pointer by itself after a layout change, to update hover: on the spot.
      if (e.clientX === aim.x && e.clientY === aim.y) return;
      aim = { x: e.clientX, y: e.clientY, key: controlKey(e.target) };
    },
    { capture: true, passive: true },
  );
  // Scrolling moves the page under a resting pointer on purpose: what comes under it is aimed at.
  const scrolledByUser = () => (aim = { ...aim, key: ANY });
  document.addEventListener("wheel", scrolledByUser, { capture: true, passive: true });
  document.addEventListener(
    "keydown",
    (e) => {
      if (SCROLL_KEYS.has(e.key)) scrolledByUser();
    },
    { capture: true, passive: true },
  );

  return {
    /** Told after every redraw of the cards. */
    redrawn() {
      redrawnAt = performance.now();
    },

    /**
     * Whether `click` on `control` should be dropped. A keyboard's click (detail 0) and a tap (no
     * pointer rests before it) land where they are aimed.
     */
    unaimed(click, control) {
      if (click.detail === 0 || click.pointerType === "touch" || aim.key === ANY) return false;
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
