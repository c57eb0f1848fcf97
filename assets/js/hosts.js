// Which hosts run an image: every host that reported it since it last became pending (GET
// /api/hosts; for an acknowledged image, the reports the acknowledgement covered), merged with
// the host of the image's latest event (which covers a webhook that landed between the two
// requests, and an image whose reports the history no longer keeps).

/**
 * [{ hostname, last_seen, metadata }] sorted by host name; [] when the event names no host.
 * hosts: the /api/hosts answer.
 */
export function hostsOf(image, entry, hosts) {
  const event = entry.event || {};
  const reported = hosts && Array.isArray(hosts[image]) ? hosts[image] : [];
  const byName = new Map();
  for (const report of reported) {
    if (!report || typeof report.hostname !== "string" || !report.hostname) continue;
    byName.set(report.hostname, {
      hostname: report.hostname,
      last_seen: report.last_seen || null,
      metadata: report.metadata && typeof report.metadata === "object" ? report.metadata : null,
    });
  }
  const own = event.hostname ? String(event.hostname) : "";
  if (own && !byName.has(own)) {
    byName.set(own, { hostname: own, last_seen: entry.received_at || null, metadata: event.metadata || null });
  }
  return [...byName.values()].sort((a, b) => a.hostname.localeCompare(b.hostname));
}

// The host filter's option for `name`: prefixed, since a host may be named anything, "all" too.
export function hostFilterValue(name) {
  return `host:${name}`;
}

/** Every host name among the items (summarize's items, which carry .hosts), sorted. */
export function knownHosts(items) {
  const names = new Set();
  for (const item of items) for (const host of item.hosts) names.add(host.hostname);
  return [...names].sort((a, b) => a.localeCompare(b));
}
