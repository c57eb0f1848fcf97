//! `/api/summary` for home-lab dashboards and `/metrics` for Prometheus.

mod support;

use std::collections::HashMap;

use diun_dashboard::config::Database;
use diun_dashboard::store::{Received, UpdateStore};
use diun_dashboard::time::Timestamp;
use serde_json::{Value, json};
use support::{TestApp, docker_event};

async fn seed(app: &TestApp) {
    for image in ["a:1", "b:1", "c:1", "d:1"] {
        assert_eq!(app.webhook(&docker_event(image)).await.status, 200);
    }
    let media = app.create_tag("media \"quoted\"").await;
    app.create_tag("empty").await;
    app.api("PUT", "/api/tag-assignments", &json!({ "image": "a:1", "tag_id": media })).await;
    app.api("PUT", "/api/tag-assignments", &json!({ "image": "b:1", "tag_id": media })).await;
    app.request("PATCH", "/api/updates/d%3A1").send().await;
}

async fn summary_counts_updates_and_groups(app: &TestApp) {
    assert_eq!(
        app.get("/api/summary").await.json(),
        json!({ "total": 0, "pending": 0, "acknowledged": 0, "groups": 0, "last_refused_webhook": null, "last_refused_post": null })
    );
    seed(app).await;
    let response = app.get("/api/summary").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({ "total": 4, "pending": 3, "acknowledged": 1, "groups": 2, "last_refused_webhook": null, "last_refused_post": null })
    );
    assert_eq!(app.request("POST", "/api/summary").send().await.status, 405);
}

/// The last webhook refused is in `/api/summary`, for the dashboard: when, its status and what
/// the sender was told; the latest wins. The last refused POST is kept apart, which a scanner's
/// later GET does not hide. One stored changes neither; both come after the reports before them.
async fn summary_tells_the_last_refused_webhook(app: &TestApp) {
    let summary = async || app.get("/api/summary").await.json();
    assert_eq!(app.webhook(&docker_event("a:1")).await.status, 200);
    let stored_at = app.get("/api/updates").await.json()["a:1"]["received_at"].as_str().unwrap().to_string();
    assert_eq!(app.get("/webhook").await.status, 405);
    let first = summary().await;
    let refused = &first["last_refused_webhook"];
    assert_eq!(refused["status"], json!(405), "{first}");
    assert!(refused["error"].as_str().unwrap().contains("method: POST"), "{first}");
    assert_eq!(first["last_refused_post"], Value::Null, "a GET is no refused POST: {first}");
    let at = refused["at"].as_str().unwrap();
    assert!(at.ends_with('Z') && at.len() >= 20, "RFC 3339 in UTC: {at}");
    assert!(at > stored_at.as_str(), "a refusal after a report is stamped after it: {at} {stored_at}");

    assert_eq!(app.request("POST", "/webhook").body("{not json").send().await.status, 400);
    let posted = summary().await;
    let refused = &posted["last_refused_webhook"];
    assert_eq!(refused["status"], json!(400), "{posted}");
    assert!(!refused["error"].as_str().unwrap().is_empty());
    assert_eq!(posted["last_refused_post"], *refused, "{posted}");
    // Any page the admin opens can post here through the browser: neither a foreign origin's
    // refusal nor a bad body a same-origin page sent stands for DIUN's.
    let from_a_page = app
        .request("POST", "/webhook")
        .header("Origin", "http://click-here.example")
        .header("Content-Type", "text/plain")
        .body(docker_event("a:1").to_string());
    assert_eq!(from_a_page.send().await.status, 403);
    let from_the_dashboard = app
        .request("POST", "/webhook")
        .header("Sec-Fetch-Site", "same-origin")
        .header("Sec-Fetch-Mode", "cors")
        .body("{not json either");
    assert_eq!(from_the_dashboard.send().await.status, 400);
    assert_eq!(summary().await, posted, "a browser's webhook shown as the last refusal");
    assert_eq!(app.get("/webhook").await.status, 405);
    let scanned = summary().await;
    assert_eq!(scanned["last_refused_webhook"]["status"], json!(405), "the latest of all: {scanned}");
    assert_eq!(scanned["last_refused_post"], posted["last_refused_post"], "a GET hid the refused POST");
    assert_eq!(app.webhook(&docker_event("a:2")).await.status, 200);
    let after = summary().await;
    assert_eq!(
        after["last_refused_webhook"], scanned["last_refused_webhook"],
        "a stored webhook is no refusal"
    );
    assert_eq!(after["last_refused_post"], scanned["last_refused_post"]);
    let newest = app.get("/api/updates").await.json()["a:2"]["received_at"].clone();
    let refused_at = &scanned["last_refused_webhook"]["at"];
    assert!(
        newest.as_str() > refused_at.as_str(),
        "a report after a refusal is stamped after it: {newest} {refused_at}"
    );
}

/// Behind `WEBHOOK_SECRET`, the most common mistake: DIUN without (or with another) secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_the_wrong_secret_is_the_last_refused() {
    // The secret needs its own server, on whichever backend this build has.
    let Some(db) = support::TestDb::any().await else { return };
    let app = TestApp::start(db, Some("s3cret")).await;
    let from_a_page = app
        .request("POST", "/webhook")
        .header("Origin", "http://click-here.example")
        .header("Sec-Fetch-Site", "cross-site")
        .body(docker_event("a:1").to_string());
    assert_eq!(from_a_page.send().await.status, 401);
    let summary = app.get("/api/summary").await.json();
    assert_eq!(
        summary["last_refused_post"],
        Value::Null,
        "a page's webhook blamed on DIUN's secret: {summary}"
    );
    // Sent through a relay written in Node, whose fetch sends `Sec-Fetch-Mode` (and no
    // Origin): no browser, so its refusal is the one shown.
    let wrong = app
        .request("POST", "/webhook")
        .header("Authorization", "guess")
        .header("Sec-Fetch-Mode", "cors")
        .body(docker_event("a:1").to_string());
    assert_eq!(wrong.send().await.status, 401);
    let summary = app.get("/api/summary").await.json();
    let refused = &summary["last_refused_webhook"];
    assert_eq!(refused["status"], json!(401), "{summary}");
    assert!(refused["error"].as_str().unwrap().contains("Authorization"), "{summary}");
    assert!(!summary.to_string().contains("s3cret") && !summary.to_string().contains("guess"));
    app.stop().await;
}

/// The samples of a Prometheus text exposition, checked line by line: every sample belongs to
/// a family declared by HELP and TYPE before it, label values are quoted and escaped, and
/// values are numbers.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut declared: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            declared.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| declared.get(*f).is_some_and(|k| k == "histogram"))
            .unwrap_or(name);
        assert!(declared.contains_key(family), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            assert!(!labels[1..labels.len() - 1].contains('\n'), "{line}");
        }
        samples.insert(series.to_string(), value);
    }
    samples
}

async fn metrics_expose_pending_updates_webhooks_and_durations(app: &TestApp) {
    seed(app).await;
    app.webhook(&json!({ "image": "" })).await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert!(response.header("content-type").is_some_and(|ct| ct.starts_with("text/plain; version=0.0.4")));
    let samples = parse_exposition(&response.text());
    assert_eq!(samples["diun_updates_tracked"], 4.0);
    assert_eq!(samples["diun_updates_pending"], 3.0);
    assert_eq!(samples["diun_groups"], 2.0);
    assert_eq!(samples[r#"diun_updates_pending_by_group{group="media \"quoted\""}"#], 2.0);
    assert_eq!(samples[r#"diun_updates_pending_by_group{group="empty"}"#], 0.0);
    assert_eq!(samples[r#"diun_updates_pending_by_group{group=""}"#], 1.0);
    // Counters are process-wide and other tests run beside this one: at least ours are there.
    assert!(samples[r#"diun_webhooks_received_total{status="new",result="stored"}"#] >= 4.0);
    assert!(samples[r#"diun_webhooks_received_total{status="other",result="rejected"}"#] >= 1.0);
    assert!(samples[r#"diun_http_request_duration_seconds_count{route="/webhook"}"#] >= 5.0);
    assert!(samples.keys().all(|series| !series.contains("a:1")), "paths never become labels");
}

/// While the store fails (here its `tags` table gone), `/metrics` still serves the process's
/// counters, with `diun_store_up` 0 instead of the store's gauges: the outage is when they are
/// wanted. A GET on `/webhook` (DIUN left on its default method) counts as a rejected webhook.
async fn metrics_outlive_the_store_and_count_a_get_on_the_webhook(app: &TestApp) {
    let samples = async || {
        let response = app.get("/metrics").await;
        assert_eq!(response.status, 200, "{}", response.text());
        parse_exposition(&response.text())
    };
    let rejected = r#"diun_webhooks_received_total{status="other",result="rejected"}"#;
    let before = samples().await;
    assert_eq!(before["diun_store_up"], 1.0);
    assert!(before.contains_key("diun_updates_pending"));
    assert_eq!(app.get("/webhook").await.status, 405);
    let after_get = samples().await;
    assert!(after_get[rejected] >= before[rejected] + 1.0, "the GET was not counted");

    for table in ["tag_assignments", "tags"] {
        run_on_the_database(app, &format!("DROP TABLE {table}")).await;
    }
    let during = samples().await;
    assert_eq!(during["diun_store_up"], 0.0, "{during:?}");
    assert!(!during.contains_key("diun_updates_pending"), "a gauge without its store: {during:?}");
    assert!(during[rejected] >= after_get[rejected], "the counters are served");
    assert!(during.contains_key(r#"diun_http_request_duration_seconds_count{route="/metrics"}"#));
}

/// `sql` run on the test's database, apart from the service.
async fn run_on_the_database(app: &TestApp, sql: &str) {
    match app.db.database() {
        #[cfg(feature = "sqlite")]
        Database::Sqlite { path } => rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap(),
        #[cfg(feature = "postgres")]
        Database::Postgres { .. } => drop(app.db.query(sql).await),
        #[allow(unreachable_patterns)]
        other => unreachable!("{other:?}: a backend this build does not have"),
    }
}

/// Makes the database refuse to delete history, as a DBA's trigger might.
async fn refuse_deletes_of_history(app: &TestApp) {
    match app.db.database() {
        #[cfg(feature = "sqlite")]
        Database::Sqlite { path } => rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'refused'); END",
            )
            .unwrap(),
        #[cfg(feature = "postgres")]
        Database::Postgres { .. } => {
            app.db
                .query(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
                     AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
                )
                .await;
            app.db
                .query("CREATE TRIGGER refuse BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION refuse()")
                .await;
        }
        #[allow(unreachable_patterns)]
        other => unreachable!("{other:?}: a backend this build does not have"),
    }
}

/// A prune of the history that fails is counted with the requests' database errors: it was only
/// logged, and a prune failing every hour could not be alerted on.
async fn a_failed_prune_counts_as_a_database_error(app: &TestApp) {
    // The counter is the process's: this test on the other backend, beside this one, must not
    // move it between the two readings.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _alone = ONE_AT_A_TIME.lock().await;
    let now = Timestamp::now();
    let earlier = Timestamp::from_unix_micros(now.unix_micros() - 1_000_000);
    app.store.upsert_event(support::event_from_host("a:1", "nas"), Received::At(earlier)).await.unwrap();
    app.store.acknowledge_all(earlier, None).await.unwrap();
    app.store.upsert_event(support::event_from_host("a:1", "pi"), Received::At(now)).await.unwrap();
    refuse_deletes_of_history(app).await;
    let errors = async || parse_exposition(&app.get("/metrics").await.text())["diun_database_errors_total"];
    let before = errors().await;
    let later = Timestamp::from_unix_micros(now.unix_micros() + 2 * 86_400_000_000);
    assert_eq!(diun_dashboard::retention::prune(&app.store, 1, later).await, 0);
    assert_eq!(errors().await, before + 1.0, "the failed prune was not counted once");
}

on_every_backend!(
    summary_counts_updates_and_groups,
    summary_tells_the_last_refused_webhook,
    metrics_expose_pending_updates_webhooks_and_durations,
    metrics_outlive_the_store_and_count_a_get_on_the_webhook,
    a_failed_prune_counts_as_a_database_error
);
