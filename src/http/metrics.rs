//! `GET /metrics` (Prometheus text format) and `GET /api/summary` (for home-lab dashboards).
//!
//! Counters live in one process-wide registry of atomics: cheap to bump on the request path,
//! and the gauges (pending updates per group) are read from the store at scrape time, so they
//! are right on every replica.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use super::error::{ApiError, respond};
use super::{AppState, json_reply, only_reads};
use crate::model::Tag;
use crate::store::{GroupCount, StoreError, UpdateStore};

/// Upper bounds of the request-duration histogram, in seconds.
const BUCKETS: [f64; 11] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Route labels: fixed, so that no request can create new series.
const ROUTES: [&str; 16] = [
    "/healthz",
    "/webhook",
    "/api/updates",
    "/api/updates/{image}",
    "/api/updates/{image}/history",
    "/api/hosts",
    "/api/updates/acknowledge-all",
    "/api/updates/acknowledge-by-tag",
    "/api/stream",
    "/api/summary",
    "/api/tags",
    "/api/tags/{id}",
    "/api/tag-assignments",
    "/metrics",
    "assets",
    "other",
];

/// What a webhook was about (DIUN's `status`, folded to known values) and what became of it.
const WEBHOOK_STATUSES: [&str; 3] = ["new", "update", "other"];
const WEBHOOK_RESULTS: [&str; 4] = ["stored", "rejected", "unauthorized", "failed"];

#[derive(Clone, Copy, Debug)]
pub enum WebhookResult {
    Stored,
    Rejected,
    Unauthorized,
    Failed,
}

struct Registry {
    durations: [[AtomicU64; BUCKETS.len() + 1]; ROUTES.len()],
    duration_sums_micros: [AtomicU64; ROUTES.len()],
    webhooks: [[AtomicU64; WEBHOOK_RESULTS.len()]; WEBHOOK_STATUSES.len()],
    database_errors: AtomicU64,
}

static REGISTRY: Registry = Registry {
    durations: [const { [const { AtomicU64::new(0) }; BUCKETS.len() + 1] }; ROUTES.len()],
    duration_sums_micros: [const { AtomicU64::new(0) }; ROUTES.len()],
    webhooks: [const { [const { AtomicU64::new(0) }; WEBHOOK_RESULTS.len()] }; WEBHOOK_STATUSES.len()],
    database_errors: AtomicU64::new(0),
};

/// Records one answered request; the route label comes from the path, never the path itself.
pub fn observe_request(path: &str, elapsed: Duration) {
    let route = route_index(path);
    let seconds = elapsed.as_secs_f64();
    let bucket = BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(BUCKETS.len());
    REGISTRY.durations[route][bucket].fetch_add(1, Ordering::Relaxed);
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    REGISTRY.duration_sums_micros[route].fetch_add(micros, Ordering::Relaxed);
}

/// DIUN's `status` as a metrics label: `new`, `update` or `other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebhookStatus(usize);

impl WebhookStatus {
    pub fn of(status: &str) -> Self {
        Self(WEBHOOK_STATUSES.iter().position(|known| *known == status).unwrap_or(WEBHOOK_STATUSES.len() - 1))
    }
}

pub fn count_webhook(status: WebhookStatus, result: WebhookResult) {
    REGISTRY.webhooks[status.0][result as usize].fetch_add(1, Ordering::Relaxed);
}

pub fn count_database_error() {
    REGISTRY.database_errors.fetch_add(1, Ordering::Relaxed);
}

fn route_index(path: &str) -> usize {
    // The routes take one trailing slash too (DIUN set to `…/webhook/`): counted as the route.
    let path = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
    let position = |label: &str| ROUTES.iter().position(|route| *route == label).unwrap_or(ROUTES.len() - 1);
    // A fixed route is its own label (ROUTES is the one list of them); the rest by prefix.
    if let Some(fixed) = ROUTES.iter().position(|route| *route == path) {
        return fixed;
    }
    match path {
        _ if path.starts_with("/api/updates/") && path.ends_with("/history") => {
            position("/api/updates/{image}/history")
        }
        _ if path.starts_with("/api/updates/") => position("/api/updates/{image}"),
        _ if path.starts_with("/api/tags/") => position("/api/tags/{id}"),
        _ if path.starts_with("/api/") => position("other"),
        _ => position("assets"),
    }
}

/// Counts that describe the tracked updates.
struct Summary {
    total: usize,
    pending: usize,
    groups: usize,
    /// Pending updates per group name, `None` for untagged ones.
    pending_by_group: BTreeMap<Option<String>, usize>,
}

impl Summary {
    /// Every tag is a group, with or without pending updates; a count whose tag went between
    /// the two reads is counted as untagged.
    fn of(counts: &[GroupCount], tags: Vec<Tag>) -> Self {
        let groups = tags.len();
        let names: HashMap<i64, String> = tags.into_iter().map(|tag| (tag.id, tag.name)).collect();
        let mut pending_by_group: BTreeMap<Option<String>, usize> =
            names.values().map(|name| (Some(name.clone()), 0)).collect();
        pending_by_group.insert(None, 0);
        let (mut total, mut pending) = (0, 0);
        for count in counts {
            let group = count.tag_id.and_then(|id| names.get(&id)).cloned();
            *pending_by_group.entry(group).or_default() += to_usize(count.pending);
            total += to_usize(count.total);
            pending += to_usize(count.pending);
        }
        Self { total, pending, groups, pending_by_group }
    }
}

fn to_usize(count: u64) -> usize {
    usize::try_from(count).unwrap_or(usize::MAX)
}

async fn summarize(state: &AppState) -> Result<Summary, ApiError> {
    Ok(summarize_from_store(state).await?)
}

async fn summarize_from_store(state: &AppState) -> Result<Summary, StoreError> {
    let (counts, tags) = tokio::try_join!(state.store.count_by_group(), state.store.list_tags())?;
    Ok(Summary::of(&counts, tags))
}

pub async fn summary(state: AppState, method: Method) -> Response {
    respond(
        async {
            only_reads(&method)?;
            let summary = summarize(&state).await?;
            let refused = state.refused_webhook.latest();
            Ok(json_reply(
                StatusCode::OK,
                &serde_json::json!({
                    "total": summary.total,
                    "pending": summary.pending,
                    "acknowledged": summary.total - summary.pending,
                    "groups": summary.groups,
                    "last_refused_webhook": refused.any,
                    "last_refused_post": refused.post,
                }),
            ))
        }
        .await,
    )
}

pub async fn metrics(state: AppState, method: Method) -> Response {
    respond(
        async {
            only_reads(&method)?;
            // The counters live in the process: during an outage, the time they are wanted
            // most, they are served without the store's gauges (and `diun_store_up` 0).
            // Within the health check's limit: a hung server must not take the scrape past
            // Prometheus's own timeout (10 s by default), counters and all.
            let summary = match tokio::time::timeout(super::api::HEALTH_TIMEOUT, summarize_from_store(&state))
                .await
            {
                Ok(Ok(summary)) => Some(summary),
                Ok(Err(err)) => {
                    log::debug!("metrics without the store's figures: {err}");
                    None
                }
                Err(_) => {
                    log::debug!("metrics without the store's figures: the database did not answer in time");
                    None
                }
            };
            let mut response = Response::new(render(summary.as_ref()).into());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(response)
        }
        .await,
    )
}

/// The exposition; the store's gauges only with `summary` (the store answered).
fn render(summary: Option<&Summary>) -> String {
    let mut out = String::with_capacity(8 * 1024);
    family_header(
        &mut out,
        "diun_store_up",
        "gauge",
        "Whether the database answered this scrape (1) or not (0).",
    );
    let _ = writeln!(out, "diun_store_up {}", u8::from(summary.is_some()));
    if let Some(summary) = summary {
        store_gauges(&mut out, summary);
    }
    counters(&mut out);
    out
}

fn store_gauges(out: &mut String, summary: &Summary) {
    family_header(out, "diun_updates_tracked", "gauge", "Images with an update on record.");
    let _ = writeln!(out, "diun_updates_tracked {}", summary.total);
    family_header(out, "diun_updates_pending", "gauge", "Updates not acknowledged yet.");
    let _ = writeln!(out, "diun_updates_pending {}", summary.pending);
    family_header(
        out,
        "diun_updates_pending_by_group",
        "gauge",
        "Pending updates per group (\"\" = untagged).",
    );
    for (group, count) in &summary.pending_by_group {
        let _ = writeln!(
            out,
            "diun_updates_pending_by_group{{group=\"{}\"}} {count}",
            escape_label(group.as_deref().unwrap_or(""))
        );
    }
    family_header(out, "diun_groups", "gauge", "Groups (tags) defined.");
    let _ = writeln!(out, "diun_groups {}", summary.groups);
}

fn counters(out: &mut String) {
    family_header(
        out,
        "diun_webhooks_received_total",
        "counter",
        "Webhooks received, by DIUN status and result.",
    );
    for (s, status) in WEBHOOK_STATUSES.iter().enumerate() {
        for (r, result) in WEBHOOK_RESULTS.iter().enumerate() {
            let count = REGISTRY.webhooks[s][r].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "diun_webhooks_received_total{{status=\"{status}\",result=\"{result}\"}} {count}"
            );
        }
    }

    family_header(
        out,
        "diun_database_errors_total",
        "counter",
        "Requests answered with a database error (a batch of webhooks counts each), failed health checks and failed history pruning.",
    );
    let _ = writeln!(out, "diun_database_errors_total {}", REGISTRY.database_errors.load(Ordering::Relaxed));

    family_header(
        out,
        "diun_http_request_duration_seconds",
        "histogram",
        "Time to answer HTTP requests, by route.",
    );
    for (r, route) in ROUTES.iter().enumerate() {
        let mut cumulative = 0;
        for (b, bound) in BUCKETS.iter().enumerate() {
            cumulative += REGISTRY.durations[r][b].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "diun_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += REGISTRY.durations[r][BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "diun_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = REGISTRY.duration_sums_micros[r].load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "diun_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}");
        let _ = writeln!(out, "diun_http_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}");
    }
}

fn family_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline (Prometheus text format).
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn routes_are_labelled_by_template_not_by_path() {
        assert_eq!(ROUTES[route_index("/api/updates/docker.io%2Fnginx")], "/api/updates/{image}");
        assert_eq!(ROUTES[route_index("/api/updates/acknowledge-all")], "/api/updates/acknowledge-all");
        assert_eq!(ROUTES[route_index("/api/updates/a%3A1/history")], "/api/updates/{image}/history");
        assert_eq!(ROUTES[route_index("/api/tags/12")], "/api/tags/{id}");
        assert_eq!(ROUTES[route_index("/api/whatever")], "other");
        assert_eq!(ROUTES[route_index("/js/app.js")], "assets");
        assert_eq!(ROUTES[route_index("/webhook/")], "/webhook");
        assert_eq!(ROUTES[route_index("/healthz/")], "/healthz");
        assert_eq!(ROUTES[route_index("/api/updates/")], "/api/updates");
        assert_eq!(ROUTES[route_index("/api/updates/a%3A1/history/")], "/api/updates/{image}/history");
        assert_eq!(ROUTES[route_index("/")], "assets", "the page itself");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let route = route_index("/api/summary");
        observe_request("/api/summary", Duration::from_micros(300));
        observe_request("/api/summary", Duration::from_secs(9));
        let text = render(Some(&Summary::of(&[], Vec::new())));
        let line = |le: &str| {
            let prefix =
                format!("diun_http_request_duration_seconds_bucket{{route=\"/api/summary\",le=\"{le}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.parse::<u64>().ok()).unwrap()
        };
        assert!(line("0.0005") >= 1);
        assert!(line("+Inf") > line("5"), "the 9 s request is only in +Inf");
        assert_eq!(ROUTES[route], "/api/summary");
    }
}
