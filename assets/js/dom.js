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

/** Text with line-break opportunities after "/" and "-", so long names wrap at sensible places. */
export function breakable(text) {
  // Each part ends after a "/" or "-" (or at the end). Not a split on a lookbehind: Safari before
  // 16.4 cannot parse one, and one regular expression it cannot parse stops the whole page.
  const parts = text.match(/[^/-]*[/-]|[^/-]+$/g) ?? [text];
  return parts.flatMap((part, i) => (i ? [document.createElement("wbr"), part] : [part]));
}

