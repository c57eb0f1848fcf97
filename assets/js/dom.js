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
  return text.split(/(?<=[/-])/).flatMap((part, i) => (i ? [document.createElement("wbr"), part] : [part]));
}

