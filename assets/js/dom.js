// Building DOM safely: everything goes in as text or attributes, never as HTML.

/** Create an element: attrs are attributes (text → textContent); children skip null/false. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) if (child) el.append(child);
  return el;
}

/**
 * Closes `dialog` with `returnValue` on a click on its backdrop (the dialog element itself,
 * outside its body), but only when the press began there too: a text selection dragged from
 * inside the dialog and released over the backdrop also ends in a click on the dialog element.
 */
export function closeOnBackdrop(dialog, returnValue) {
  let pressedOnBackdrop = false;
  dialog.addEventListener("pointerdown", (e) => {
    pressedOnBackdrop = e.target === dialog;
  });
  dialog.addEventListener("click", (e) => {
    if (e.target === dialog && pressedOnBackdrop) dialog.close(returnValue);
    pressedOnBackdrop = false;
  });
}

/** Text with line-break opportunities after "/" and "-", so long names wrap at sensible places. */
export function breakable(text) {
  // Each part ends after a "/" or "-" (or at the end). Not a split on a lookbehind: Safari before
  // 16.4 cannot parse one, and one regular expression it cannot parse stops the whole page.
  const parts = text.match(/[^/-]*[/-]|[^/-]+$/g) ?? [text];
  return parts.flatMap((part, i) => (i ? [document.createElement("wbr"), part] : [part]));
}

/**
 * Focuses `region` (the list of updates) when the control that had focus is gone: the keyboard
 * keeps its place in the list rather than starting again from the top of the page. Focusable only
 * meanwhile: with a tabindex for good, a click on a card's text focused the whole list, and Tab
 * then went to its first heading and J to its first card.
 */
export function focusRegion(region) {
  region.setAttribute("tabindex", "-1");
  region.removeEventListener("blur", letGoOfFocus);
  region.addEventListener("blur", letGoOfFocus);
  region.focus({ preventScroll: true });
}

function letGoOfFocus(e) {
  // The window going to another application blurs it too: it keeps its place for the return.
  if (!document.hasFocus()) return;
  e.currentTarget.removeAttribute("tabindex");
  e.currentTarget.removeEventListener("blur", letGoOfFocus);
}
