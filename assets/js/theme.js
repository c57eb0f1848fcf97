// The theme toggle: system → light → dark → system, remembered (theme-boot.js applies it early).

import { load, onChange, save } from "./storage.js";

const MODES = ["system", "light", "dark"];
const NEXT_LABEL = { system: "light", light: "dark", dark: "system" };

function apply(mode, button) {
  const root = document.documentElement;
  if (mode === "system") root.removeAttribute("data-theme");
  else root.setAttribute("data-theme", mode);
  button.dataset.mode = mode;
  button.setAttribute("aria-label", `Theme: ${mode}. Switch to ${NEXT_LABEL[mode]}`);
  button.title = `Theme: ${mode}`;
}

const known = (mode) => (MODES.includes(mode) ? mode : "system");

export function initTheme(button) {
  let mode = known(load("theme", "system"));
  apply(mode, button);
  button.addEventListener("click", () => {
    mode = MODES[(MODES.indexOf(mode) + 1) % MODES.length];
    save("theme", mode);
    apply(mode, button);
  });
  // A theme chosen in another tab is this one's too, as it will be on the next visit.
  onChange("theme", "system", (theirs) => {
    mode = known(theirs);
    apply(mode, button);
  });
}
