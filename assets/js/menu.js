// The "Move to…" menu of a card: a menu button (WAI-ARIA menu pattern) listing the groups as
// radio items. Arrow keys, Home/End, type-ahead, Enter/Space, Escape and Tab behave as expected.

import { glyph } from "./icons.js";

let open = null; // { trigger, menu, onClose }

export function isMenuOpen() {
  return open !== null;
}

export function closeMenu({ focusTrigger = false, preventScroll = false } = {}) {
  if (!open) return;
  const { trigger, menu, onClose } = open;
  open = null;
  menu.remove();
  trigger.closest(".card")?.classList.remove("has-open-menu");
  trigger.setAttribute("aria-expanded", "false");
  if (focusTrigger && trigger.isConnected) trigger.focus({ preventScroll });
  onClose();
}

function items(menu) {
  return [...menu.querySelectorAll('[role^="menuitem"]:not([aria-disabled="true"])')];
}

function focusItem(menu, index) {
  const list = items(menu);
  if (!list.length) return;
  list[(index + list.length) % list.length].focus();
}

/**
 * Open the menu under `trigger`.
 * groups: [{ id: number | null, name }] (null = Untagged); current: the card's group id or null.
 * Focus goes to the checked item, or with `focusLast` (opened by ArrowUp) to the last one.
 */
export function openMoveMenu(trigger, { groups, current, onSelect, onClose, focusLast = false }) {
  closeMenu();
  const menu = document.createElement("div");
  menu.className = "menu";
  menu.setAttribute("role", "menu");
  menu.id = `${trigger.id}-menu`;
  menu.setAttribute("aria-labelledby", trigger.id);
  menu.dataset.testid = "move-options";

  const label = document.createElement("div");
  label.className = "menu-label";
  label.setAttribute("aria-hidden", "true");
  label.textContent = "Move to group";
  menu.append(label);

  for (const group of groups) {
    if (group.id === null && groups.length > 1) {
      const sep = document.createElement("div");
      sep.className = "menu-sep";
      sep.setAttribute("role", "separator");
      menu.append(sep);
    }
    const item = document.createElement("button");
    item.type = "button";
    item.className = "menu-item";
    item.setAttribute("role", "menuitemradio");
    item.tabIndex = -1;
    item.dataset.testid = "move-option";
    item.dataset.tagId = group.id === null ? "untagged" : String(group.id);
    const checked = group.id === current;
    item.setAttribute("aria-checked", String(checked));
    const name = document.createElement("span");
    name.textContent = group.name;
    item.append(glyph("check"), name);
    item.addEventListener("click", () => {
      closeMenu({ focusTrigger: true });
      if (!checked) onSelect(group.id);
    });
    menu.append(item);
  }
  if (groups.length === 1) {
    const hint = document.createElement("div");
    hint.className = "menu-item";
    hint.setAttribute("role", "menuitem");
    hint.setAttribute("aria-disabled", "true");
    hint.textContent = "Create a group first";
    menu.append(hint);
  }

  menu.addEventListener("keydown", (e) => {
    const list = items(menu);
    const at = list.indexOf(document.activeElement);
    if (e.key === "ArrowDown") focusItem(menu, at + 1);
    else if (e.key === "ArrowUp") focusItem(menu, at - 1);
    else if (e.key === "Home") focusItem(menu, 0);
    else if (e.key === "End") focusItem(menu, -1);
    else if (e.key === "Escape") closeMenu({ focusTrigger: true });
    else if (e.key === "Tab") {
      // From the trigger, as the menu-button pattern has it: the default Tab then moves on from
      // a control still on the page, not from the item just removed.
      closeMenu({ focusTrigger: true, preventScroll: true });
      return;
    } else if (e.key.length === 1 && /\S/.test(e.key)) {
      const key = e.key.toLowerCase();
      const next = list.findIndex((el, i) => i > at && el.textContent.toLowerCase().startsWith(key));
      const first = list.findIndex((el) => el.textContent.toLowerCase().startsWith(key));
      if (next >= 0 || first >= 0) list[next >= 0 ? next : first].focus();
    } else return;
    e.preventDefault();
    e.stopPropagation();
  });

  // Focus gone elsewhere (a click that is no pointerdown, a screen reader's own navigation): an
  // open menu holds the page's redraws, so it must not stay open behind the user's back.
  menu.addEventListener("focusout", (e) => {
    const to = e.relatedTarget;
    if (to && !menu.contains(to) && !trigger.contains(to)) closeMenu();
  });

  trigger.closest(".card")?.classList.add("has-open-menu");
  trigger.after(menu);
  trigger.setAttribute("aria-expanded", "true");
  trigger.setAttribute("aria-controls", menu.id);
  open = { trigger, menu, onClose };

  // Keep the menu on screen: open upwards near the bottom, leftwards near the right edge.
  const rect = menu.getBoundingClientRect();
  if (rect.bottom > window.innerHeight - 8 && trigger.getBoundingClientRect().top > rect.height + 16) {
    menu.classList.add("menu-up");
  }
  if (rect.right > document.documentElement.clientWidth - 8) menu.classList.add("menu-right");

  const list = items(menu);
  const checkedItem = list.find((el) => el.getAttribute("aria-checked") === "true");
  (focusLast ? list.at(-1) : checkedItem || list[0])?.focus();
}

// Clicking anywhere else closes the menu.
document.addEventListener("pointerdown", (e) => {
  if (open && !open.menu.contains(e.target) && !open.trigger.contains(e.target)) closeMenu();
});
// So does leaving the tab (a phone locked with the menu open): coming back, the page is current.
document.addEventListener("visibilitychange", () => {
  if (document.hidden) closeMenu({ focusTrigger: true });
});
// And scrolling its card out of sight (the wheel, a swipe): it would hold every redraw while the
// user reads elsewhere. The focus goes back to its button without scrolling the page back there.
window.addEventListener(
  "scroll",
  () => {
    if (!open) return;
    const { top, bottom } = open.trigger.getBoundingClientRect();
    if (bottom < 0 || top > window.innerHeight) closeMenu({ focusTrigger: true, preventScroll: true });
  },
  { passive: true },
);
// And leaving the window for another application: the page may stay in sight (another screen,
// a window beside it), and while the menu is open it holds every redraw, the title's count too.
window.addEventListener("blur", () => closeMenu({ focusTrigger: true }));
