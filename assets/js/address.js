// The filters in the page's address (?status=pending&host=nas…): a bookmark or a link opens the
// dashboard as it was filtered, and a reload keeps the filters. Defaults are left out, so the
// plain address is the unfiltered page.

import { hostFilterValue } from "./hosts.js";

const DEFAULTS = { q: "", status: "all", group: "all", host: "all", sort: "newest" };
const STATUSES = new Set(["all", "pending", "acknowledged"]);
const SORTS = new Set(["newest", "name", "registry"]);
const HOST_PREFIX = hostFilterValue("");

/** The filters an address's query names, over the defaults; what it cannot mean is ignored. */
export function filtersFromQuery(query) {
  const params = new URLSearchParams(query);
  const filters = { ...DEFAULTS };
  const q = params.get("q");
  if (q !== null) filters.q = q;
  if (STATUSES.has(params.get("status"))) filters.status = params.get("status");
  if (SORTS.has(params.get("sort"))) filters.sort = params.get("sort");
  // A group by its id, or "untagged"; one deleted since falls back to all once the groups load.
  const group = params.get("group");
  if (group === "untagged" || /^[1-9][0-9]{0,18}$/.test(group ?? "")) filters.group = group;
  const host = params.get("host");
  if (host) filters.host = hostFilterValue(host);
  return filters;
}

/** How many of the boxes besides the search are not at their defaults (an unusual order counts). */
export function boxesChanged(filters) {
  return ["status", "group", "host", "sort"].filter((key) => filters[key] !== DEFAULTS[key]).length;
}

/** The query naming `filters` ("" when every filter is at its default), with a leading "?". */
export function queryOfFilters(filters) {
  const params = new URLSearchParams();
  if (filters.q.trim()) params.set("q", filters.q);
  for (const key of ["status", "group", "sort"]) if (filters[key] !== DEFAULTS[key]) params.set(key, filters[key]);
  if (filters.host !== DEFAULTS.host && filters.host.startsWith(HOST_PREFIX)) params.set("host", filters.host.slice(HOST_PREFIX.length));
  const query = params.toString();
  return query ? `?${query}` : "";
}
