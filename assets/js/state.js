// The page's state: the last snapshot from the server (updates, tags, and the hosts reporting each
// pending image), optimistic changes laid over it, the filters, and which updates the user has
// already seen. Subscribers are told of every change.

import { load, save, has } from "./storage.js";

const listeners = new Set();

export const state = {
  loaded: false,
  server: { updates: {}, tags: [], hosts: {} },
  filters: { q: "", status: "all", group: "all", host: "all", sort: "newest" },
  /** Inline confirmation open in a group header: { key: "3" | "untagged", kind: "dismiss" | "delete" }. */
  confirm: null,
};

export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function notify() {
  for (const fn of listeners) fn();
}

// ---- Optimistic changes ----------------------------------------------------------------------
// An overlay edits a copy of the server snapshot. It is dropped on failure (the rollback) and,
// after success, once a snapshot fetched after the change arrived (so polls already in flight
// cannot flash the old state back).

const overlays = new Map();
let nextOverlay = 1;
let commits = 0;

export function addOverlay(apply) {
  const id = nextOverlay++;
  overlays.set(id, { apply, committedAt: null });
  notify();
  return id;
}

export function commitOverlay(id) {
  const overlay = overlays.get(id);
  if (overlay) overlay.committedAt = ++commits;
}

export function dropOverlay(id) {
  if (overlays.delete(id)) notify();
}

/** A token to pass to setSnapshot: which commits the snapshot is sure to contain. */
export function snapshotToken() {
  return commits;
}

export function setSnapshot(updates, tags, hosts, token) {
  const isObject = (value) => value && typeof value === "object" && !Array.isArray(value);
  state.server = {
    updates: isObject(updates) ? updates : {},
    tags: Array.isArray(tags) ? tags : [],
    hosts: isObject(hosts) ? hosts : {},
  };
  state.loaded = true;
  for (const [id, overlay] of overlays) {
    if (overlay.committedAt !== null && overlay.committedAt <= token) overlays.delete(id);
  }
  notify();
}

/**
 * The snapshot with every overlay applied:
 * { updates: {image: entry}, tags: [{id, name}], hosts: {image: [{hostname, last_seen, metadata}]} }.
 * hosts is read-only (overlays do not touch it).
 */
export function view() {
  return composed(() => true);
}

/** As `view`, with only the overlays the server has confirmed: what it holds, as far as the
 * page knows. Other writes still on their way are not in it. */
export function confirmedView() {
  return composed((overlay) => overlay.committedAt !== null);
}

function composed(included) {
  // No prototype: an image may be named "__proto__", which on a plain object would set the
  // prototype instead of adding an entry.
  const updates = Object.create(null);
  for (const [image, entry] of Object.entries(state.server.updates)) updates[image] = { ...entry };
  const result = { updates, tags: state.server.tags.map((t) => ({ ...t })), hosts: state.server.hosts };
  for (const overlay of overlays.values()) if (included(overlay)) overlay.apply(result);
  return result;
}

/** The section `entry` is drawn in, given the tag ids (as strings) that exist: a tag that is not
 * among them (deleted while the listing was on its way) is drawn, and dismissed, as Untagged. */
export function sectionKeyOf(entry, tagKeys) {
  const key = entry.tag && entry.tag.id !== undefined ? String(entry.tag.id) : "untagged";
  return tagKeys.has(key) ? key : "untagged";
}

/** Whether an entry is in the group `key` (a tag id as a string, or "untagged") as it is drawn. */
function inGroup(key, tags) {
  const tagKeys = new Set(tags.map((t) => String(t.id)));
  return (entry) => sectionKeyOf(entry, tagKeys) === key;
}

/** The pending updates the page shows, as [image, entry] pairs; of one group when `group` (a tag
 * id as a string, or "untagged") is given: what a dismissal asks about and then dismisses. */
export function pendingEntries(group = null) {
  const v = view();
  const member = group === null ? () => true : inGroup(group, v.tags);
  return Object.entries(v.updates).filter(([, entry]) => !entry.acknowledged && member(entry));
}

// ---- Seen updates ----------------------------------------------------------------------------
// An update is "new" until the user has had it on screen: we remember image → received_at.

const firstVisit = !has("seen");
// Keyed by image: no prototype, as in view().
const stored = load("seen", null);
const seen = Object.assign(Object.create(null), stored && typeof stored === "object" ? stored : {});

export function isNew(image, entry) {
  return !entry.acknowledged && seen[image] !== entry.received_at;
}

export function markSeen(image, receivedAt) {
  if (seen[image] === receivedAt) return;
  seen[image] = receivedAt;
  saveSeen();
}

/**
 * Saves the marks with those another tab saved meanwhile: each tab holds its own copy, and saving
 * it whole erased the other's, whose cards were "Just in" again on the next visit. Per image, the
 * later report's mark wins (RFC 3339 in UTC, one format: compared as text).
 */
function saveSeen() {
  const theirs = load("seen", null);
  if (theirs && typeof theirs === "object") {
    for (const [image, at] of Object.entries(theirs)) {
      if (typeof at === "string" && !(typeof seen[image] === "string" && seen[image] >= at)) seen[image] = at;
    }
  }
  save("seen", seen);
}

/** On the very first visit everything already there counts as seen; later, forget removed images. */
export function baselineSeen(updates) {
  if (firstVisit && !has("seen")) {
    for (const [image, entry] of Object.entries(updates)) seen[image] = entry.received_at;
  } else {
    for (const image of Object.keys(seen)) if (!Object.hasOwn(updates, image)) delete seen[image];
  }
  save("seen", seen);
}
