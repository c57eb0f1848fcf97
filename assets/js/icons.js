// Icons: the service icon of a card (a simple-icons brand logo recognised from the image name, or
// coloured initials) and the small line glyphs of the interface.

import { ICONS, ALIASES } from "./icon-data.js";
import { parseImage } from "./image.js";

const SVG = "http://www.w3.org/2000/svg";

/** Candidate names for `ghcr.io/immich-app/immich-server`, most specific first (see icons.rs). */
function candidates(path) {
  const segments = path.toLowerCase().split("/").filter(Boolean);
  const out = [segments.join("/")];
  for (let i = segments.length - 1; i >= 0; i--) {
    let name = segments[i];
    out.push(name);
    let cut;
    while ((cut = Math.max(name.lastIndexOf("-"), name.lastIndexOf("_"), name.lastIndexOf("."))) > 0) {
      name = name.slice(0, cut);
      out.push(name);
    }
  }
  return out;
}

/** The brand icon for an image reference, or null. */
export function brandFor(image) {
  const { path } = parseImage(image);
  for (const name of candidates(path)) {
    const slug = Object.hasOwn(ALIASES, name) ? ALIASES[name] : null;
    if (slug && Object.hasOwn(ICONS, slug)) return { slug, ...ICONS[slug] };
  }
  return null;
}

function luminance(hex) {
  const channel = (i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4);
}

// Initials backgrounds: each keeps white text above 4.5:1.
const PALETTE = ["#b91c1c", "#c2410c", "#a16207", "#15803d", "#0f766e", "#0369a1", "#1d4ed8", "#6d28d9", "#a21caf", "#be123c"];

function initials(name) {
  const words = name.split(/[-_.\s]+/).filter((w) => /[a-z0-9]/i.test(w));
  const letters = words.length > 1 ? words[0][0] + words[1][0] : (words[0] || "?").slice(0, 2);
  return letters.toUpperCase();
}

function hash(text) {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h;
}

/** The 40×40 tile shown on a card. */
export function serviceIcon(image) {
  const tile = document.createElement("span");
  tile.className = "service-icon";
  const brand = brandFor(image);
  if (brand) {
    tile.style.backgroundColor = `#${brand.hex}`;
    if (luminance(brand.hex) > 0.4) tile.classList.add("on-light");
    tile.title = brand.title;
    tile.dataset.icon = brand.slug;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const p = document.createElementNS(SVG, "path");
    p.setAttribute("d", brand.path);
    svg.append(p);
    tile.append(svg);
  } else {
    const { name } = parseImage(image);
    tile.style.backgroundColor = PALETTE[hash(name) % PALETTE.length];
    tile.dataset.icon = "initials";
    tile.setAttribute("aria-hidden", "true");
    tile.textContent = initials(name);
  }
  return tile;
}

// Line glyphs for buttons (24×24, stroked with currentColor; styled by .icon in app.css).
const GLYPHS = {
  check: ["m4 12.5 5 5L20 6.5"],
  x: ["M6 6l12 12M18 6 6 18"],
  external: ["M14 4h6v6", "M20 4 10 14", "M18 14v5a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1h5"],
  move: ["M4 7h16M4 12h10M4 17h7", "m16 14 3 3-3 3"],
  trash: ["M4 7h16", "M9 7V4h6v3", "M6 7l1 13h10l1-13"],
  folder: ["M3 6a1 1 0 0 1 1-1h5l2 2h9a1 1 0 0 1 1 1v10a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1Z"],
  inbox: ["M3 13h5l1 3h6l1-3h5", "M5 5h14l2 8v6H3v-6Z"],
  alert: ["M12 3 2 20h20Z", "M12 10v4M12 17h.01"],
  bell: ["M6 16V11a6 6 0 0 1 12 0v5l2 2H4Z", "M10 20a2 2 0 0 0 4 0"],
  copy: ["M8 8h11v12H8Z", "M5 16V4h11"],
  package: ["M12 2 3 7v10l9 5 9-5V7Z", "M3 7l9 5 9-5M12 12v10"],
  history: ["M3.5 12a8.5 8.5 0 1 0 2.5-6", "M3 4v4.5h4.5", "M12 7.5V12l3 2"],
  server: ["M4 4h16v6H4Z", "M4 14h16v6H4Z", "M8 7h.01M8 17h.01"],
  chevron: ["m6 9 6 6 6-6"],
};

export function glyph(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "icon");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of GLYPHS[name] || []) {
    const p = document.createElementNS(SVG, "path");
    p.setAttribute("d", d);
    svg.append(p);
  }
  return svg;
}

/** Six dots: the drag handle. */
export function gripGlyph() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 14 14");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const [cx, cy] of [[4, 2.5], [10, 2.5], [4, 7], [10, 7], [4, 11.5], [10, 11.5]]) {
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("cx", cx);
    c.setAttribute("cy", cy);
    c.setAttribute("r", "1.4");
    svg.append(c);
  }
  return svg;
}
