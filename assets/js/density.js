// The density toggle: cards, or a compact list of one line per image (for hundreds of images on
// a wide screen); remembered, and applied before first paint by theme-boot.js.

import { load, onChange, save } from "./storage.js";

function apply(compact, button) {
  const root = document.documentElement;
  if (compact) root.setAttribute("data-density", "compact");
  else root.removeAttribute("data-density");
  button.setAttribute("aria-pressed", String(compact));
}

/** Where app.css lays the compact list out; a narrower window shows cards whatever the choice. */
const ROOM_FOR_THE_LIST = "(min-width: 960px)";

/** `moved`: called after a change of density, which changes every card's size and place. */
export function initDensity(button, moved) {
  let compact = load("density", "cards") === "compact";
  apply(compact, button);
  const change = (to) => {
    if (to === compact) return;
    compact = to;
    apply(compact, button);
    moved();
  };
  button.addEventListener("click", () => {
    save("density", compact ? "cards" : "compact");
    change(!compact);
  });
  // Chosen in another tab: this one's too, as it will be on the next visit.
  onChange("density", "cards", (theirs) => change(theirs === "compact"));
  // A window narrowed or widened across the list's room changes every card as the toggle does.
  matchMedia(ROOM_FOR_THE_LIST).addEventListener("change", () => {
    if (compact) moved();
  });
}
