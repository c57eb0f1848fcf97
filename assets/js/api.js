// The dashboard's HTTP API (SPEC §4). Every non-2xx answer becomes a thrown ApiError carrying the
// server's {"error": "..."} message. Paths are relative so the page also works behind a reverse
// proxy under a sub-path.

export class ApiError extends Error {
  /** status 0: no answer; `timedOut` then tells a request given up on from a broken one. */
  constructor(message, status, { timedOut = false } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.timedOut = timedOut;
  }
}

/**
 * How long a request may take, its body included. One that never ends (a proxy or a network that
 * accepts the connection and never answers) would hold every later refetch behind it while the
 * page still said "Live".
 */
const REQUEST_TIMEOUT_MS = 30_000;

/**
 * The signal that ends a request after `ms`, and whether it did: AbortSignal.timeout where the
 * browser has it, else a timer of the page's own (Safari before 16, Chrome before 103), without
 * which a request that never answered kept its change shown as done for good.
 */
function deadline(ms) {
  if (typeof AbortController === "undefined") return { signal: undefined, expired: () => false, clear() {} };
  if (AbortSignal.timeout) {
    return { signal: AbortSignal.timeout(ms), expired: (err) => err?.name === "TimeoutError", clear() {} };
  }
  const controller = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    controller.abort();
  }, ms);
  return { signal: controller.signal, expired: () => expired, clear: () => clearTimeout(timer) };
}

/** Why a request got no answer, as the ApiError the callers show. */
function unanswered(err, limit) {
  if (limit.expired(err)) {
    return new ApiError(`The dashboard server did not answer within ${REQUEST_TIMEOUT_MS / 1000} s.`, 0, {
      timedOut: true,
    });
  }
  return new ApiError("Cannot reach the dashboard server. Is it running?", 0);
}

/** The parsed JSON answer; with `withMark`, {data, mark} with the X-Change-Seq header too. */
async function request(method, path, body, withMark = false) {
  const limit = deadline(REQUEST_TIMEOUT_MS);
  try {
    return await requestWithin(limit, method, path, body, withMark);
  } finally {
    limit.clear();
  }
}

async function requestWithin(limit, method, path, body, withMark) {
  const init = { method, headers: { Accept: "application/json" }, cache: "no-store", signal: limit.signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw unanswered(err, limit);
  }
  if (!res.ok) {
    let message = `The server answered ${res.status}${res.statusText ? ` ${res.statusText}` : ""}.`;
    try {
      const data = await res.json();
      if (data && typeof data.error === "string" && data.error) message = data.error;
    } catch {
      /* not JSON: keep the status line */
    }
    throw new ApiError(message, res.status);
  }
  let text = "";
  try {
    if (res.status !== 204) text = await res.text();
  } catch (err) {
    throw unanswered(err, limit);
  }
  let data = null;
  try {
    if (text) data = JSON.parse(text);
  } catch {
    throw new ApiError("The server sent a reply that is not JSON.", res.status);
  }
  return withMark ? { data, mark: res.headers.get("X-Change-Seq") } : data;
}

/** An image's path, naming the report the page showed (`received_at`) when given. */
function updatePath(image, receivedAt) {
  const seen = receivedAt ? `?received_at=${encodeURIComponent(receivedAt)}` : "";
  return `api/updates/${encodeURIComponent(image)}${seen}`;
}

export const api = {
  /**
   * The page's snapshot, each part with its change mark: {updates, tags, hosts, marks}. `hosts`
   * is {image: [{hostname, last_seen, metadata}]}: every host that reported each image since it
   * last became pending (acknowledged: the reports the acknowledgement covered).
   */
  snapshot: async () => {
    const parts = await Promise.all(
      ["api/updates", "api/tags", "api/hosts"].map((path) => request("GET", path, undefined, true)),
    );
    const [updates, tags, hosts] = parts.map((part) => part.data);
    return { updates, tags, hosts, marks: parts.map((part) => part.mark) };
  },
  /** {total, pending, acknowledged, groups}: what a hidden tab's title needs, without the listing. */
  summary: () => request("GET", "api/summary"),
  /** One page of an image's events, newest first: {image, events, next_before}. */
  history: (image, { before = null, limit = 50 } = {}) => {
    const page = before === null ? `limit=${limit}` : `limit=${limit}&before=${encodeURIComponent(before)}`;
    return request("GET", `api/updates/${encodeURIComponent(image)}/history?${page}`);
  },
  /**
   * receivedAt: the report's time the page showed; a newer report that arrived meanwhile is then
   * left pending (409) rather than dismissed unseen.
   */
  acknowledge: (image, receivedAt) => request("PATCH", updatePath(image, receivedAt)),
  /** Forgets the image (its container is gone); receivedAt as for `acknowledge` (409 if newer). */
  remove: (image, receivedAt) => request("DELETE", updatePath(image, receivedAt)),
  /**
   * receivedUntil: the newest report's time the page showed; reports that arrived after it are
   * left pending rather than dismissed unseen.
   */
  acknowledgeAll: (receivedUntil) =>
    request("POST", "api/updates/acknowledge-all", receivedUntil ? { received_until: receivedUntil } : {}),
  acknowledgeTag: (tagId, receivedUntil) =>
    request("POST", "api/updates/acknowledge-by-tag", {
      tag_id: tagId,
      ...(receivedUntil ? { received_until: receivedUntil } : {}),
    }),
  createTag: (name) => request("POST", "api/tags", { name }),
  deleteTag: (tagId) => request("DELETE", `api/tags/${encodeURIComponent(tagId)}`),
  assign: (image, tagId) => request("PUT", "api/tag-assignments", { image, tag_id: tagId }),
  unassign: (image) => request("DELETE", "api/tag-assignments", { image }),
};
