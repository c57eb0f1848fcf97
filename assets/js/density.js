// The density toggle: cards, or a compact list of one line per image (for hundreds of images on
// a wide screen); remembered, and applied before first paint by theme-boot.js.

import { load, onChange, save } from "./storage.js";

function apply(compact, button) {
  const root = document.documentElement;
  if (compact) root.setAttribute("data-density", "compact");
  else root.removeAttribute("data-density");
  button.setAttribute("aria-pressed", String(compact));
}

/** Lets go of the card sizes remembered in the other density (app.css, data-density-changed). */
function forgetSizes() {
  const root = document.documentElement;
  root.setAttribute("data-density-changed", "");
  requestAnimationFrame(() => requestAnimationFrame(() => root.removeAttribute("data-density-changed")));
}

/** `moved`: called after a change of density, which moves every card. */
export function initDensity(button, moved) {
  let compact = load("density", "cards") === "compact";
  apply(compact, button);
  const change = (to) => {
    if (to === compact) return;
    compact = to;
    apply(compact, button);
    forgetSizes();
    moved();
  };
  button.addEventListener("click", () => {
    save("density", compact ? "cards" : "compact");
    change(!compact);
  });
  // Chosen in another tab: this one's too, as it will be on the next visit.
  onChange("density", "cards", (theirs) => change(theirs === "compact"));
}
