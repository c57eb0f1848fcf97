// Turns the state into DOM. Cards and sections are keyed and reused, so a poll that changes one
// update touches one card and keyboard focus, open confirmations and hover states survive.
// Everything from the API goes in through textContent or attributes, never as HTML.

import { parseImage, versionLabel, metadataRows, placeRows, placeSummary, safeLink, displayName } from "./image.js";
import { serviceIcon, glyph, gripGlyph } from "./icons.js";
import { timeElement, tick, parseTime } from "./time.js";
import { hostFilterValue, hostsOf, knownHosts } from "./hosts.js";
import { h, breakable } from "./dom.js";
import { plural } from "./words.js";
import { sectionKeyOf } from "./state.js";

const cardCache = new Map(); // image -> { sig, el }
const sectionCache = new Map(); // section key -> { el, headSig, head, list, placeholder }
let emptyState = null;
let noResults = null;
let uid = 0;

/** Put exactly `nodes`, in order, into `parent`, moving only what is out of place. */
function reconcile(parent, nodes) {
  // What goes goes first, then each node is moved only where it is out of place: a changed card
  // is a new element, and inserting it before its old self would shift every later sibling (a
  // few thousand moves in a long section).
  const wanted = new Set(nodes);
  for (const child of [...parent.children]) if (!wanted.has(child)) child.remove();
  let cursor = parent.firstElementChild;
  for (const node of nodes) {
    if (node === cursor) cursor = cursor.nextElementSibling;
    else parent.insertBefore(node, cursor);
  }
}

// ---- Summary: badge, stats, title, filters ------------------------------------------------------

export function summarize(view) {
  const items = Object.entries(view.updates).map(([image, entry]) => {
    const parsed = parseImage(image);
    const hosts = hostsOf(image, entry, view.hosts);
    // The hosts' reports as the snapshot holds them: what a cached search text was made from.
    const reported = view.hosts && Array.isArray(view.hosts[image]) ? view.hosts[image] : null;
    return { image, entry, parsed, hosts, reported, name: displayName(parsed), time: Date.parse(entry.received_at) || 0 };
  });
  const pending = items.filter((x) => !x.entry.acknowledged).length;
  return { items, total: items.length, pending, acknowledged: items.length - pending };
}

function setText(id, text) {
  const el = document.getElementById(id);
  if (el.textContent !== String(text)) el.textContent = String(text);
  return el;
}

/** The tab title, with the pending count when there is one: what a tab strip shows of the page. */
export function showPendingInTitle(pending) {
  const title = pending > 0 ? `Diun Dashboard (${pending})` : "Diun Dashboard";
  if (document.title !== title) document.title = title;
}

export function renderSummary({ view, summary, loaded, filters }) {
  if (!loaded) return;
  const { total, pending, acknowledged } = summary;
  const badge = setText("pending-badge", pending);
  badge.dataset.count = String(pending);
  badge.title = plural(pending, "pending update");
  setText("stat-total", total);
  const pendingStat = setText("stat-pending", pending);
  pendingStat.toggleAttribute("data-zero", pending === 0);
  setText("stat-acknowledged", acknowledged);
  setText("stat-groups", view.tags.length);
  showPendingInTitle(pending);
  document.getElementById("dismiss-all").disabled = pending === 0;

  // The boxes say what the cards show: a browser that puts a form's earlier choices back after a
  // reload (Firefox) would show "Pending" over every card otherwise.
  for (const [id, value] of [["filter-status", filters.status], ["sort", filters.sort]]) {
    const box = document.getElementById(id);
    if (box.value !== value) box.value = value;
  }

  // The group filter lists the groups; a deleted group's filter falls back to "all".
  const select = document.getElementById("filter-group");
  const options = [["all", "All"], ...view.tags.map((t) => [String(t.id), t.name]), ["untagged", "Untagged"]];
  fillSelect(select, options);
  if (!options.some(([v]) => v === filters.group)) filters.group = "all";
  if (select.value !== filters.group) select.value = filters.group;

  // The host filter lists every host in view; a host that is gone falls back to "all".
  fillSelect(document.getElementById("filter-host"), [["all", "All"], ...knownHosts(summary.items).map((name) => [hostFilterValue(name), name])]);
  const hostSelect = document.getElementById("filter-host");
  if (![...hostSelect.options].some((o) => o.value === filters.host)) filters.host = "all";
  if (hostSelect.value !== filters.host) hostSelect.value = filters.host;
}

function fillSelect(select, options) {
  // textContent, not text: `text` collapses runs of spaces, and a group named "my  group" would
  // never match, rebuilding the options (and closing an open list) at every redraw.
  const current = [...select.options].map((o) => `${o.value}\u0000${o.textContent}`).join("\u0001");
  if (current !== options.map(([v, t]) => `${v}\u0000${t}`).join("\u0001")) {
    select.replaceChildren(...options.map(([value, text]) => h("option", { value, text })));
  }
}

// ---- Filtering and sorting -------------------------------------------------------------------

/** The search box's text as matched: once per draw, not once per image. */
const searchTerm = (filters) => filters.q.trim().toLowerCase();

/** `q`: searchTerm(filters). */
function matches(item, filters, q) {
  if (filters.status === "pending" && item.entry.acknowledged) return false;
  if (filters.status === "acknowledged" && !item.entry.acknowledged) return false;
  if (filters.host !== "all" && !item.hosts.some((host) => hostFilterValue(host.hostname) === filters.host)) return false;
  return !q || searchText(item).includes(q);
}

// What search looks in, lower-cased: the image, its hosts and where it runs on each (containers,
// pods, jobs). Kept per report, as a draw happens at every snapshot and every card seen, and
// thousands of images would otherwise be taken apart again each time.
const searchTexts = new WeakMap();

function searchText(item) {
  const event = item.entry.event;
  if (!event || typeof event !== "object") return item.image.toLowerCase();
  const cached = searchTexts.get(event);
  if (cached && cached.reported === item.reported) return cached.text;
  const parts = [item.image, ...metadataRows(event.metadata).map(([, value]) => value)];
  for (const host of item.hosts) parts.push(host.hostname, ...metadataRows(host.metadata).map(([, value]) => value));
  const text = parts.join("\u0000").toLowerCase();
  searchTexts.set(event, { reported: item.reported, text });
  return text;
}

/** The pending updates the filters let through, in whatever section, folded or not, as
 * [image, entry] pairs. */
export function pendingShown(view, summary, filters) {
  const tagKeys = new Set(view.tags.map((t) => String(t.id)));
  const q = searchTerm(filters);
  const shown = [];
  for (const item of summary.items) {
    if (item.entry.acknowledged || !matches(item, filters, q)) continue;
    if (filters.group === "all" || sectionKeyOf(item.entry, tagKeys) === filters.group) shown.push([item.image, item.entry]);
  }
  return shown;
}

const byName = (a, b) => a.name.localeCompare(b.name) || a.image.localeCompare(b.image);
const SORTS = {
  newest: (a, b) => b.time - a.time || byName(a, b),
  name: byName,
  registry: (a, b) => a.parsed.registry.localeCompare(b.parsed.registry) || byName(a, b),
};

// ---- Cards -----------------------------------------------------------------------------------

function newBadge() {
  return h("span", { class: "pill pill-new", "data-testid": "new-badge", title: "Arrived since you last looked" }, h("span", { class: "dot", "aria-hidden": "true" }), "Just in");
}

/** Marks a drawn card new or not, in place. */
function setFresh(el, fresh) {
  el.dataset.new = fresh ? "true" : "false";
  const badge = el.querySelector('[data-testid="new-badge"]');
  if (fresh && !badge) el.querySelector(".pills")?.append(newBadge());
  if (!fresh && badge) badge.remove();
}

function card(item, fresh) {
  const { image, entry, parsed, name } = item;
  const event = entry.event || {};
  const pending = !entry.acknowledged;
  const id = `card-${++uid}`;
  const titleId = `${id}-title`;

  const pills = h(
    "div",
    { class: "pills" },
    h("span", { class: "pill pill-status", "data-testid": "card-status", title: `Status reported by DIUN: ${event.status || "update"}`, text: event.status || "update" }),
    fresh && newBadge(),
  );
  const registryText = parsed.namespace ? `${parsed.registry}/${parsed.namespace}` : parsed.registry;
  const registrySpan = h("span", { "data-testid": "card-registry", text: registryText });
  const link = safeLink(event.hub_link);
  const registry = link
    ? h(
        "a",
        {
          class: "registry registry-link",
          href: link,
          target: "_blank",
          rel: "noopener noreferrer",
          "data-testid": "hub-link",
          "data-focus-key": `hub:${image}`,
          // The link's own host: the label names the registry the image came from, while DIUN
          // (or whoever posted the event) chose where the link goes.
          title: `Open ${name} on ${new URL(link).host} (new tab)`,
        },
        registrySpan,
        glyph("external"),
        h("span", { class: "sr-only", text: " (registry page, opens in a new tab)" }),
      )
    : h("span", { class: "registry" }, registrySpan);
  const head = h(
    "div",
    { class: "card-head" },
    h("span", { class: "drag-handle", title: "Drag to another group", "aria-hidden": "true" }, gripGlyph()),
    serviceIcon(image),
    h(
      "div",
      { class: "card-title" },
      h("h3", { class: "card-name", id: titleId, title: image, "data-testid": "card-name" }, breakable(name)),
      h(
        "p",
        { class: "card-sub" },
        h("span", { class: "sr-only", text: "Tag " }),
        h("span", { class: "tag-chip", id: `${id}-tag`, "data-testid": "card-tag", title: parsed.digest || parsed.tag, text: versionLabel(parsed) }),
        h("span", { class: "sr-only", text: ", registry " }),
        registry,
      ),
    ),
    pills,
  );

  const meta = h("dl", { class: "card-meta" });
  const hosts = item.hosts;
  // The compact list shows where it runs (the first two rows: a host and its container, say)
  // and when it came; the rest only the cards' layout does.
  const COMPACT = "compact-row";
  let rows;
  if (hosts.length > 1) {
    meta.append(h("dt", { class: COMPACT, text: "Hosts" }), h("dd", { class: `hosts-row ${COMPACT}` }, hostList(hosts)));
    rows = [];
  } else if (hosts.length === 1) {
    rows = [["Host", hosts[0].hostname], ...metadataRows(hosts[0].metadata)];
  } else {
    rows = placeRows(event);
  }
  const placeShownCompact = Math.min(2, rows.length);
  if (event.platform) rows.push(["Platform", String(event.platform)]);
  rows.forEach(([label, value], i) => {
    const compact = i < placeShownCompact ? COMPACT : null;
    meta.append(h("dt", { class: compact, text: label }), h("dd", { class: compact, "data-testid": `card-${label.toLowerCase()}`, text: value }));
  });
  meta.append(
    h("dt", { class: COMPACT, text: "Received" }),
    h(
      "dd",
      { class: `received-row ${COMPACT}` },
      h("span", { "data-testid": "card-received" }, timeElement(entry.received_at)),
      h(
        "button",
        {
          type: "button",
          class: "btn btn-link",
          "data-action": "history",
          "data-testid": "history-open",
          "data-focus-key": `history:${image}`,
          "aria-haspopup": "dialog",
          "aria-describedby": titleId,
          title: "Every report of this image: digests, hosts, acknowledgements",
        },
        glyph("history"),
        h("span", { text: "History" }),
      ),
    ),
  );
  if (!pending && entry.acknowledged_at) {
    meta.append(h("dt", { text: "Acknowledged" }), h("dd", { "data-testid": "card-acknowledged" }, timeElement(entry.acknowledged_at)));
  }

  const foot = h("div", { class: "card-foot" });
  if (pending) {
    foot.append(
      h(
        "button",
        {
          type: "button",
          class: "btn btn-primary btn-sm",
          "data-action": "ack",
          "data-testid": "ack",
          "data-focus-key": `ack:${image}`,
          // Another report of the same image redrawn under a resting pointer is another target.
          "data-aim-key": `ack:${image}@${entry.received_at}`,
          "data-focus-fallback": `move:${image}`,
          // The version too: a newer report redrawn under the focus reads differently.
          "aria-describedby": `${titleId} ${id}-tag`,
        },
        glyph("check"),
        h("span", { text: "Acknowledge" }),
      ),
    );
  } else {
    foot.append(h("span", { class: "acked", "data-testid": "acked" }, glyph("check"), h("span", { text: "Acknowledged" })));
  }
  foot.append(h("span", { class: "spacer" }));
  foot.append(
    h(
      "div",
      { class: "move" },
      h(
        "button",
        {
          type: "button",
          id: `${id}-move`,
          class: "btn btn-outline btn-sm",
          "data-action": "move",
          "data-testid": "move-menu",
          "data-focus-key": `move:${image}`,
          "aria-haspopup": "menu",
          "aria-expanded": "false",
          "aria-describedby": titleId,
        },
        glyph("move"),
        h("span", { text: "Move to…" }),
      ),
    ),
  );

  return h(
    "article",
    {
      class: "card",
      "data-testid": "card",
      "data-image": image,
      "data-state": pending ? "pending" : "acknowledged",
      "data-new": fresh ? "true" : "false",
      "data-received-at": entry.received_at,
      "aria-labelledby": titleId,
    },
    head,
    meta,
    foot,
  );
}

/** Several hosts: one line each, host name then where it runs there (containers, pod…). */
function hostList(hosts) {
  return h(
    "ul",
    { class: "host-list", "data-testid": "card-hosts", "data-count": hosts.length },
    hosts.map((host) => {
      const place = placeSummary(host.metadata);
      return h(
        "li",
        { class: "host-item", "data-testid": "card-host-item", "data-hostname": host.hostname },
        h(
          "span",
          { class: "host-main" },
          h("span", { class: "host-name", "data-testid": "card-host", text: host.hostname }),
          place && h("span", { class: "sr-only", text: ": " }),
          place && h("span", { class: "host-place", "data-testid": "card-host-place", text: place }),
        ),
        host.last_seen && h("span", { class: "host-seen" }, h("span", { class: "sr-only", text: ", last reported " }), timeElement(host.last_seen)),
      );
    }),
  );
}

/**
 * Has every card built anew at the next draw. A card off screen keeps the size it was last
 * drawn at (content-visibility: auto) for as long as it lives, whatever the layout: after a
 * change of density the compact list kept the length of the cards it replaced.
 */
export function redrawEveryCard() {
  cardCache.clear();
}

function cardFor(item, fresh, tagKey) {
  const sig = JSON.stringify([item.entry, item.hosts]);
  let cached = cardCache.get(item.image);
  if (!cached || cached.sig !== sig) {
    cached = { sig, el: card(item, fresh) };
    cardCache.set(item.image, cached);
  } else {
    // Seen, a card is no longer new: changed in place, not drawn anew. A new element took the
    // focus along (the page moves it to the new copy), and a screen reader read the focused
    // button out again, and lost the place of whoever was reading the card.
    if ((cached.el.dataset.new === "true") !== Boolean(fresh)) setFresh(cached.el, fresh);
    // Out of the page (filtered out, say) its relative times were not kept current.
    if (!cached.el.isConnected) tick(cached.el);
  }
  cached.el.dataset.tagId = tagKey;
  return cached.el;
}

// ---- Sections --------------------------------------------------------------------------------

/** What a dismissal's question adds when the filters hide some of what it dismisses. */
export function hiddenByFilters(pending, pendingShown) {
  const hidden = pending - pendingShown;
  return hidden > 0 ? ` (${hidden} not shown by the filters)` : "";
}

function confirmRow({ kind, arrived = 0 }, group, pendingCount, pendingShown) {
  const danger = kind === "delete";
  const news = arrived ? `${plural(arrived, "new update")} arrived meanwhile. ` : "";
  const text =
    kind === "dismiss"
      ? `${news}Dismiss ${plural(pendingCount, "pending update")}${hiddenByFilters(pendingCount, pendingShown)}?`
      : group.id === null
        ? ""
        : "Delete this group? Its updates become untagged.";
  // Focus lands on Cancel: the buttons carry the question, and the row names the group, so that
  // a screen reader says what is being confirmed.
  const questionId = `group-${kind}-question-${group.key}`;
  const what = kind === "dismiss" ? `Dismiss updates in ${group.name}` : `Delete group ${group.name}`;
  return h(
    "div",
    { class: `confirm-inline${danger ? " is-danger" : ""}`, role: "group", "aria-label": what, "data-testid": `group-${kind}-confirm-row` },
    h("span", { id: questionId, text }),
    h(
      "button",
      {
        type: "button",
        class: `btn btn-sm ${danger ? "btn-danger" : "btn-primary"}`,
        "data-action": `group-${kind}-confirm`,
        "data-testid": `group-${kind}-confirm`,
        "data-focus-key": `group-${kind}-confirm:${group.key}`,
        "data-focus-fallback": `group-${kind}:${group.key}`,
        "aria-describedby": questionId,
      },
      "Confirm",
    ),
    h(
      "button",
      {
        type: "button",
        class: "btn btn-sm btn-ghost",
        "data-action": `group-${kind}-cancel`,
        "data-testid": `group-${kind}-cancel`,
        "data-focus-key": `group-${kind}-cancel:${group.key}`,
        "data-focus-fallback": `group-${kind}:${group.key}`,
        "aria-describedby": questionId,
      },
      "Cancel",
    ),
  );
}

function sectionHead(group, confirm, pendingCount, pendingShown) {
  const titleId = `group-${group.key}-title`;
  // Read out in words (see fillCounts): a bare "3" (or "2/3") after the name said nothing of
  // what it counts.
  const count = h("span", { class: "badge", "data-testid": "group-count", "aria-hidden": "true" });
  // The heading is the button that folds the section away (a disclosure): a long group the user
  // is not working on stays out of the way, its counts still in view.
  const title = h(
    "h2",
    { class: "group-title", id: titleId },
    h(
      "button",
      {
        type: "button",
        class: "group-toggle",
        "data-action": "group-toggle",
        "data-testid": "group-toggle",
        "data-focus-key": `group-toggle:${group.key}`,
        "aria-controls": `group-${group.key}-cards`,
      },
      glyph("chevron"),
      glyph(group.id === null ? "inbox" : "folder"),
      h("span", { class: "group-name", "data-testid": "group-name", text: group.name }),
      count,
      h("span", { class: "sr-only", "data-counted": "" }),
      h("span", { class: "group-pending", "data-testid": "group-pending" }),
      // Filled by sectionFor, in place: folding must not rebuild the heading the focus is on.
      h("span", { class: "group-new", "data-testid": "group-new", hidden: true }),
    ),
  );
  const actions = h("div", { class: "group-actions" });
  const mine = confirm && confirm.key === group.key ? confirm : null;
  if (mine) {
    actions.append(confirmRow(mine, group, pendingCount, pendingShown));
  } else {
    actions.append(
      h(
        "button",
        {
          type: "button",
          class: "btn btn-sm btn-ghost",
          "data-action": "group-dismiss",
          "data-testid": "group-dismiss",
          "data-focus-key": `group-dismiss:${group.key}`,
          "aria-describedby": titleId,
        },
        glyph("check"),
        h("span", { text: "Dismiss group" }),
      ),
    );
    if (group.id !== null) {
      actions.append(
        h(
          "button",
          {
            type: "button",
            class: "btn btn-sm btn-ghost btn-ghost-danger",
            "data-action": "group-delete",
            "data-testid": "group-delete",
            "data-focus-key": `group-delete:${group.key}`,
            "aria-describedby": titleId,
          },
          glyph("trash"),
          h("span", { text: "Delete group" }),
        ),
      );
    }
  }
  return h("header", { class: "group-header" }, title, actions);
}

/**
 * A section heading's counts, changed in place: rebuilt, the heading the focus was on was
 * focused anew, and a screen reader read all of it again at every report a scan brought in.
 */
function fillCounts(head, shown, all, pendingCount) {
  const write = (el, text) => {
    if (el.textContent !== text) el.textContent = text;
  };
  const counted = shown === all ? plural(all, "update") : `${shown} of ${all} shown`;
  const count = head.querySelector('[data-testid="group-count"]');
  write(count, shown === all ? String(all) : `${shown}/${all}`);
  count.title = counted;
  write(head.querySelector("[data-counted]"), ` ${counted}, `);
  const pending = head.querySelector('[data-testid="group-pending"]');
  write(pending, pendingCount > 0 ? `${pendingCount} pending` : "");
  pending.hidden = pendingCount === 0;
  const dismiss = head.querySelector('[data-testid="group-dismiss"]');
  if (dismiss) {
    dismiss.disabled = pendingCount === 0;
    if (pendingCount === 0) dismiss.title = "Nothing pending in this group";
    else dismiss.removeAttribute("title");
  }
}

function sectionFor(group, shown, all, confirm, fresh, collapsed) {
  let s = sectionCache.get(group.key);
  if (!s) {
    const list = h("div", { class: "cards", "data-testid": "group-cards", id: `group-${group.key}-cards` });
    const el = h(
      "section",
      {
        class: `group${group.id === null ? " group-untagged" : ""}`,
        "data-testid": "group",
        "data-tag-id": group.key,
        "aria-labelledby": `group-${group.key}-title`,
      },
      list,
    );
    const placeholder = h("p", {
      class: "group-empty",
      "data-testid": "group-empty",
      text: group.id === null ? "No untagged updates. Drop a card here to remove it from its group." : "No updates in this group yet. Drag a card here or use “Move to…”.",
    });
    s = { el, list, head: null, headSig: "", placeholder };
    sectionCache.set(group.key, s);
  }
  s.el.dataset.tagName = group.name;
  s.el.dataset.count = String(all.length);
  const mine = confirm && confirm.key === group.key ? confirm : null;
  const pendingShown = shown.filter((x) => !x.entry.acknowledged).length;
  const pendingCount = all.filter((x) => !x.entry.acknowledged).length;
  // Built anew for a new name or question (whose words hold the counts); else only the counts
  // change (fillCounts).
  const headSig = JSON.stringify([group.name, mine?.kind, mine?.arrived, mine && [pendingCount, pendingShown]]);
  if (headSig !== s.headSig) {
    const head = sectionHead(group, confirm, pendingCount, pendingShown);
    if (s.head) s.head.replaceWith(head);
    else s.el.prepend(head);
    s.head = head;
    s.headSig = headSig;
  }
  fillCounts(s.head, shown.length, all.length, pendingCount);
  // Changed in place: a screen reader hears the state change, and the chevron turns.
  const toggle = s.head.querySelector('[data-testid="group-toggle"]');
  if (toggle.getAttribute("aria-expanded") !== String(!collapsed)) {
    toggle.setAttribute("aria-expanded", String(!collapsed));
    toggle.title = collapsed ? "Show this group's cards" : "Fold this group away";
  }
  // The cards "Just in" that a folded section keeps out of sight.
  const arrived = collapsed ? shown.filter((item) => fresh(item.image, item.entry)).length : 0;
  const pill = s.head.querySelector('[data-testid="group-new"]');
  const said = arrived ? `${arrived} just in` : "";
  if (pill.dataset.said !== said) {
    pill.dataset.said = said;
    pill.hidden = !arrived;
    pill.replaceChildren(...(arrived ? [h("span", { class: "sr-only", text: ", " }), h("span", { class: "pill pill-new", text: said })] : []));
  }
  s.el.classList.toggle("is-collapsed", collapsed);
  s.list.hidden = collapsed;
  // A folded section draws no cards: hundreds of them cost a phone's redraws for nothing.
  const nodes = collapsed ? [] : shown.map((item) => cardFor(item, fresh(item.image, item.entry), group.key));
  reconcile(s.list, nodes);
  if (!shown.length && !collapsed) s.list.after(s.placeholder);
  else s.placeholder.remove();
  return s.el;
}

// ---- Empty state and no results -------------------------------------------------------------

export function diunSnippet(endpoint) {
  return [
    "notif:",
    "  webhook:",
    `    endpoint: ${endpoint}`,
    "    method: POST",
    "    headers:",
    "      content-type: application/json",
    "      authorization: <your WEBHOOK_SECRET>",
    "    timeout: 10s",
  ].join("\n");
}

function empty(endpoint) {
  if (emptyState) return emptyState;
  const code = h("code", { "data-testid": "diun-snippet", text: diunSnippet(endpoint) });
  emptyState = h(
    "section",
    { class: "empty", "data-testid": "empty-state", "aria-labelledby": "empty-title" },
    h("span", { class: "empty-icon" }, glyph("package")),
    h("h2", { id: "empty-title", text: "No image updates yet" }),
    // Filled by showRefusal (the page's announcer says it once: a live region here would read it
    // all again each time its relative time changes).
    h("p", { class: "empty-refusal", "data-testid": "refused-webhook", hidden: true }),
    h(
      "p",
      {},
      "Point DIUN's webhook notifier at this dashboard and every image update it finds shows up here. Add this to your ",
      h("code", { text: "diun.yml" }),
      ":",
    ),
    h(
      "div",
      { class: "snippet" },
      h("pre", {}, code),
      navigator.clipboard &&
        h(
          "button",
          { type: "button", class: "btn btn-outline btn-sm", "data-action": "copy-snippet", "data-testid": "copy-snippet" },
          glyph("copy"),
          h("span", { text: "Copy" }),
        ),
    ),
    h(
      "p",
      {},
      "DIUN's webhook uses GET unless told otherwise, so keep ",
      h("code", { text: "method: POST" }),
      ". Leave out the ",
      h("code", { text: "authorization" }),
      " header when the dashboard runs without ",
      h("code", { text: "WEBHOOK_SECRET" }),
      ".",
    ),
    isLoopback(endpoint) &&
      h(
        "p",
        { "data-testid": "loopback-hint" },
        "This page is open on this machine's own address, which DIUN in a container cannot reach: use the name or address DIUN sees the dashboard by, such as ",
        h("code", { text: "http://diun-dashboard:8080/webhook" }),
        " on a shared Docker network.",
      ),
  );
  return emptyState;
}

/** The server's message as a sentence: its messages end without a full stop, quote with
 * backticks, and are cut at 200 characters. */
function sentence(text) {
  const plain = text.replaceAll("`", "");
  if (text.length >= 200) return `${plain}…`;
  return /[.!?]$/.test(plain) ? plain : `${plain}.`;
}

/** Whether the empty page is on screen (no updates, none filtered out). */
export const emptyShown = () => Boolean(emptyState?.isConnected);

const REFUSAL_HINTS = {
  401: " DIUN's authorization header must equal the dashboard's WEBHOOK_SECRET.",
};

/** A refusal's status and message as the page writes them (the server's data, checked). */
const refusedWith = (refusal) => ({ status: Number(refusal.status) || "?", error: sentence(String(refusal.error ?? "")) });

/**
 * The last webhook the server refused (`/api/summary`'s last_refused_webhook: {at, status,
 * error}, or null), shown on the empty page: DIUN reached the dashboard, and what to fix.
 * Returns what to announce when it is newly shown, else null.
 */
export function showRefusal(refusal) {
  const slot = emptyState?.querySelector('[data-testid="refused-webhook"]');
  if (!slot) return null;
  const valid = refusal && typeof refusal === "object" && typeof refusal.at === "string";
  const key = valid ? `${refusal.at} ${refusal.status}` : "";
  if (slot.dataset.key === key) return null;
  slot.dataset.key = key;
  if (!valid) {
    slot.hidden = true;
    slot.replaceChildren();
    return null;
  }
  const { status, error } = refusedWith(refusal);
  slot.replaceChildren(
    glyph("alert"),
    h(
      "span",
      {},
      "A webhook arrived ",
      timeElement(refusal.at),
      ` but was refused (${status}): `,
      h("span", { "data-testid": "refused-webhook-error", text: error }),
      REFUSAL_HINTS[refusal.status] ?? "",
      " To check a fix, ",
      h("code", { text: "diun notif test" }),
      " sends one.",
    ),
  );
  slot.hidden = false;
  return `A webhook was refused (${status}): ${error}`;
}

const refusedAt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/**
 * A refusal that came after the newest report a page of cards shows, as an error banner's
 * title and text: the updates DIUN sent since are missing (a secret changed on one side).
 */
export function refusalBanner(refusal) {
  const at = parseTime(refusal.at);
  const { status, error } = refusedWith(refusal);
  return {
    title: `A webhook was refused (${status})`,
    text:
      `${at ? `At ${refusedAt.format(at)}: ` : ""}${error}` +
      `${REFUSAL_HINTS[refusal.status] ?? ""} Updates DIUN sent since may be missing here;` +
      " once fixed, \"diun notif test\" sends one to check.",
  };
}

/** Whether `url` names this machine itself (localhost, 127.0.0.0/8, ::1). */
function isLoopback(url) {
  const host = new URL(url).hostname;
  return host === "localhost" || host.endsWith(".localhost") || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function nothingMatches() {
  noResults ||= h(
    "div",
    // Not a status region: put back into the page, it is not reliably read out; the change of
    // filters that emptied the page says so itself (app.js).
    { class: "no-results", "data-testid": "no-results" },
    h("p", { text: "No updates match these filters." }),
    h("button", { type: "button", class: "btn btn-outline btn-sm", "data-action": "clear-filters", "data-testid": "clear-filters" }, "Clear filters"),
  );
  return noResults;
}

// ---- The list --------------------------------------------------------------------------------

/**
 * Render the sections into `root`; returns how many updates the filters show (null before the
 * first snapshot).
 * model: { view, summary, filters, confirm, loaded, isNew(image, entry), endpoint, collapsed (the
 * keys of the sections folded away, a Set) }
 */
export function renderGroups(root, { view, summary, filters, confirm, loaded, isNew, endpoint, collapsed }) {
  if (!loaded) return null;
  root.removeAttribute("aria-busy");
  const tagKeys = new Set(view.tags.map((t) => String(t.id)));
  const groups = [...view.tags.map((t) => ({ key: String(t.id), id: t.id, name: t.name })), { key: "untagged", id: null, name: "Untagged" }];
  const byGroup = new Map(groups.map((g) => [g.key, []]));
  for (const item of summary.items) byGroup.get(sectionKeyOf(item.entry, tagKeys)).push(item);

  const filtering = filters.q.trim() !== "" || filters.status !== "all" || filters.host !== "all";
  const sort = SORTS[filters.sort] || SORTS.newest;
  const nodes = [];
  const sections = [];
  let shownTotal = 0;
  const q = searchTerm(filters);
  for (const group of groups) {
    if (filters.group !== "all" && filters.group !== group.key) continue;
    if (group.id === null && summary.total === 0) continue;
    const all = byGroup.get(group.key);
    const shown = all.filter((item) => matches(item, filters, q)).sort(sort);
    shownTotal += shown.length;
    sections.push([group, shown, all]);
  }
  if (summary.total === 0) nodes.push(empty(endpoint));
  const noneShown = summary.total > 0 && shownTotal === 0 && (filtering || filters.group !== "all");
  if (noneShown) nodes.push(nothingMatches());
  const used = new Set();
  for (const [group, shown, all] of sections) {
    // A group with no cards at all is always drawn: one just created under a filter would
    // otherwise appear nowhere, and could not take a card dropped on it. (Not Untagged: empty
    // whenever every image has a group, it would stand beside every search's results.)
    if ((filtering || noneShown) && shown.length === 0 && (all.length > 0 || group.id === null)) continue;
    used.add(group.key);
    nodes.push(sectionFor(group, shown, all, confirm, isNew, collapsed.has(group.key)));
  }
  reconcile(root, nodes);

  for (const key of sectionCache.keys()) if (!used.has(key)) sectionCache.delete(key);
  for (const image of cardCache.keys()) if (!Object.hasOwn(view.updates, image)) cardCache.delete(image);
  return shownTotal;
}
