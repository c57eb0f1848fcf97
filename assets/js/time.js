// Relative times ("3 h ago") with the exact time for the hover title.

const exact = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
const short = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });
/** The exact time written out in place of the relative one: short enough for a card's row. */
const written = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function parseTime(value) {
  const date = value ? new Date(value) : null;
  return date && !Number.isNaN(date.getTime()) ? date : null;
}

export function relative(date, now = Date.now()) {
  if (!date) return "unknown";
  // Each unit rounded from the time itself: rounded from the unit below, 89.5 min read "2 h".
  const seconds = (now - date.getTime()) / 1000;
  if (Math.round(seconds) < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(seconds / 3600);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(seconds / 86400);
  if (days < 30) return `${days} d ago`;
  return short.format(date);
}

export function exactTime(date) {
  return date ? exact.format(date) : "";
}

/** A <time> element showing the relative time; tick() keeps every such element current. */
export function timeElement(value) {
  const el = document.createElement("time");
  const date = parseTime(value);
  if (date) {
    el.dateTime = date.toISOString();
    el.title = exactTime(date);
  }
  el.dataset.relative = "";
  el.textContent = relative(date);
  return el;
}

export function tick(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time[data-relative]:not([data-exact])")) {
    const text = relative(parseTime(el.dateTime), now);
    if (el.textContent !== text) el.textContent = text;
  }
}

/**
 * A touch screen has no hover for a time's title: a tap on a time writes the exact time in its
 * place, and another tap the relative one again (a redraw does too).
 */
export function exactTimesOnTap(root = document) {
  const touch = window.matchMedia("(hover: none) and (pointer: coarse)");
  root.addEventListener("click", (e) => {
    const el = e.target.closest?.("time[data-relative]");
    const date = el && parseTime(el.dateTime);
    if (!touch.matches || !date) return;
    const exact = el.toggleAttribute("data-exact");
    el.textContent = exact ? written.format(date) : relative(date);
  });
}
