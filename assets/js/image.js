// What a card shows about an image reference and the place it runs, taken from DIUN's event.

/**
 * Split `docker.io/library/nginx:1.27` or `ghcr.io/org/app@sha256:…` into parts.
 * Docker's rule: the first segment is a registry when it has a dot or a port, or is localhost.
 */
export function parseImage(ref) {
  let rest = String(ref || "");
  let digest = "";
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag = "";
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  let segments = rest.split("/").filter(Boolean);
  let registry = "docker.io";
  if (segments.length > 1 && /[.:]|^localhost$/.test(segments[0])) registry = segments.shift();
  if (registry === "docker.io" && segments[0] === "library" && segments.length > 1) {
    segments = segments.slice(1);
  }
  const name = segments[segments.length - 1] || String(ref || "");
  const namespace = segments.slice(0, -1).join("/");
  return { registry, namespace, name, path: segments.join("/"), tag, digest };
}

// Last path segments that say nothing on their own (`vaultwarden/server`, `goauthentik/server`).
const GENERIC = new Set(["server", "app", "web", "api", "core", "backend", "frontend", "main", "service", "agent", "community-edition", "ce", "ee", "oss", "docker", "image", "base"]);

/** The card title: the image's last path segment, with its owner when that segment is generic. */
export function displayName(parsed) {
  const owner = parsed.namespace.split("/").pop();
  return owner && GENERIC.has(parsed.name.toLowerCase()) ? `${owner}/${parsed.name}` : parsed.name;
}

/** The image as a person names it: its card's name and version, `@` before a bare digest
 * ("vaultwarden/server:1.30", "app@sha256:1a2b3c4d5e6f…"). */
export function referenceLabel(parsed) {
  return `${displayName(parsed)}${!parsed.tag && parsed.digest ? "@" : ":"}${versionLabel(parsed)}`;
}

/** The text of the version chip: the tag, or a short digest for digest-only references. */
export function versionLabel(parsed) {
  if (parsed.tag) return parsed.tag;
  if (parsed.digest) return parsed.digest.replace(/^(sha256:)?(.{12}).*$/, "$1$2…");
  return "latest";
}

/** Where the image runs, from DIUN's metadata: docker, swarm, kubernetes, nomad, containerd. */
export function placeRows(event) {
  const rows = [];
  if (event && event.hostname) rows.push(["Host", String(event.hostname)]);
  return rows.concat(metadataRows(event && event.metadata));
}

/** The rows of placeRows that come from one metadata object (containers, pod, job, task). */
export function metadataRows(metadata) {
  const md = metadata && typeof metadata === "object" ? metadata : {};
  const get = (key) => (typeof md[key] === "string" ? md[key].trim() : "");
  const rows = [];
  const names = get("ctn_names");
  if (names) {
    const list = names.split(",").map((n) => n.trim().replace(/^\//, "")).filter(Boolean);
    rows.push([list.length > 1 ? "Containers" : "Container", list.join(", ")]);
  }
  const pod = get("pod_name");
  if (pod) rows.push(["Pod", get("pod_namespace") ? `${get("pod_namespace")}/${pod}` : pod]);
  if (!names && get("ctn_name")) rows.push(["Container", get("ctn_name")]);
  if (get("job_name")) rows.push(["Job", get("job_name")]);
  if (get("task_name")) rows.push(["Task", get("task_name")]);
  return rows;
}

/** metadataRows as one short line: "web, web-2" or "pod monitoring/prometheus-0 · container prometheus". */
export function placeSummary(metadata) {
  const rows = metadataRows(metadata);
  const containersOnly = rows.length === 1 && rows[0][0].startsWith("Container");
  return rows.map(([label, value]) => (containersOnly ? value : `${label.toLowerCase()} ${value}`)).join(" · ");
}

/** A digest shortened for display: "sha256:1a2b3c4d5e6f…". */
export function shortDigest(digest) {
  const text = String(digest || "");
  return text.replace(/^((?:[a-z0-9]+:)?)([0-9a-f]{12})[0-9a-f]{4,}$/i, "$1$2…");
}

/** The registry page link, only for http(s) URLs: hub_link comes from the webhook sender. */
export function safeLink(url) {
  if (!url) return null;
  try {
    const parsed = new URL(String(url));
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}
