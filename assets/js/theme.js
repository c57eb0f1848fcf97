// The theme toggle: system → light → dark → system, remembered (theme-boot.js applies it early).

import { load, save } from "./storage.js";

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

export function initTheme(button) {
  let mode = load("theme", "system");
  if (!MODES.includes(mode)) mode = "system";
  apply(mode, button);
  button.addEventListener("click", () => {
    mode = MODES[(MODES.indexOf(mode) + 1) % MODES.length];
    save("theme", mode);
    apply(mode, button);
  });
}
