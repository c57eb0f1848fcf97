//! Update history (`/api/updates/{image}/history`), every host in view (`/api/hosts`) and
//! history retention.

mod support;

use diun_dashboard::model::DiunEvent;
use diun_dashboard::store::{ImageOutcome, Received, UpdateStore};
use diun_dashboard::time::Timestamp;
use serde_json::{Value, json};
use support::{TestApp, docker_event};

const NGINX: &str = "docker.io/library/nginx:1.27";
const HISTORY: &str = "/api/updates/docker.io%2Flibrary%2Fnginx%3A1.27/history";

fn event_from(host: &str, digest: &str, container: &str) -> Value {
    let mut event = docker_event(NGINX);
    event["hostname"] = json!(host);
    event["digest"] = json!(digest);
    event["metadata"] = json!({ "ctn_names": container });
    event
}

async fn history_lists_every_webhook_newest_first_with_pages(app: &TestApp) {
    for (host, digest) in [("nas", "sha256:1"), ("pi", "sha256:1"), ("nas", "sha256:2")] {
        assert_eq!(app.webhook(&event_from(host, digest, "web")).await.status, 200);
    }
    let page = app.get(HISTORY).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    assert_eq!(page["image"], json!(NGINX));
    let events = page["events"].as_array().unwrap();
    let seen: Vec<(&str, &str)> =
        events.iter().map(|e| (e["hostname"].as_str().unwrap(), e["digest"].as_str().unwrap())).collect();
    assert_eq!(seen, [("nas", "sha256:2"), ("pi", "sha256:1"), ("nas", "sha256:1")]);
    assert_eq!(events[0]["metadata"], json!({ "ctn_names": "web" }));
    assert_eq!(events[0]["acknowledged_at"], Value::Null);
    assert_eq!(page["next_before"], Value::Null, "one page holds all three");

    let first = app.get(&format!("{HISTORY}?limit=2")).await.json();
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let before = first["next_before"].as_i64().expect("a next page");
    let second = app.get(&format!("{HISTORY}?limit=2&before={before}")).await.json();
    let rest: Vec<&str> =
        second["events"].as_array().unwrap().iter().map(|e| e["hostname"].as_str().unwrap()).collect();
    assert_eq!(rest, ["nas"]);
    assert_eq!(second["next_before"], Value::Null);
    // A last page that is exactly full is said to be the last.
    let exact = app.get(&format!("{HISTORY}?limit=3")).await.json();
    assert_eq!(exact["events"].as_array().unwrap().len(), 3);
    assert_eq!(exact["next_before"], Value::Null, "{exact}");

    assert_eq!(
        app.request("PATCH", "/api/updates/docker.io%2Flibrary%2Fnginx%3A1.27").send().await.status,
        204
    );
    let acknowledged = app.get(HISTORY).await.json();
    assert_eq!(acknowledged["events"].as_array().unwrap().len(), 3);
    assert!(acknowledged["events"].as_array().unwrap().iter().all(|e| e["acknowledged_at"].is_string()));
    app.webhook(&event_from("pi", "sha256:3", "web")).await;
    let after = app.get(HISTORY).await.json();
    assert_eq!(after["events"][0]["acknowledged_at"], Value::Null, "the new event is pending");
    assert!(after["events"][1]["acknowledged_at"].is_string());
}

async fn history_answers_404_400_and_405(app: &TestApp) {
    assert_eq!(app.get("/api/updates/nope%3A1/history").await.status, 404);
    assert_eq!(app.get("/api/updates/nope%3A1/history?before=5").await.status, 404, "a page of nothing");
    app.webhook(&docker_event(NGINX)).await;
    let past_the_end = app.get(&format!("{HISTORY}?before=1")).await;
    assert_eq!(past_the_end.status, 200, "a known image's page past its oldest event");
    assert_eq!(past_the_end.json()["events"], json!([]));
    for bad in ["limit=0", "limit=1000", "before=x"] {
        let response = app.get(&format!("{HISTORY}?{bad}")).await;
        assert_eq!(response.status, 400, "{bad}");
        assert!(!response.error().is_empty());
    }
    assert_eq!(app.request("POST", HISTORY).send().await.status, 405);
    // Unencoded slashes work here too, and a trailing slash, as on the other routes.
    assert_eq!(app.get("/api/updates/docker.io/library/nginx:1.27/history").await.status, 200);
    let trailing = app.get(&format!("{HISTORY}/")).await;
    assert_eq!(trailing.status, 200, "{}", trailing.text());
    assert_eq!(trailing.json()["image"], json!(NGINX));
}

async fn hosts_lists_every_host_since_the_image_became_pending(app: &TestApp) {
    assert_eq!(app.get("/api/hosts").await.json(), json!({}));
    app.webhook(&event_from("nas", "sha256:1", "web")).await;
    app.webhook(&event_from("pi", "sha256:1", "proxy")).await;
    app.webhook(&event_from("nas", "sha256:1", "web-2")).await;
    app.webhook(&docker_event("redis:7")).await;
    let hosts = app.get("/api/hosts").await.json();
    let nginx: Vec<(&str, &Value)> = hosts[NGINX]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["hostname"].as_str().unwrap(), &h["metadata"]))
        .collect();
    assert_eq!(nginx, [("nas", &json!({ "ctn_names": "web-2" })), ("pi", &json!({ "ctn_names": "proxy" }))]);
    assert!(hosts[NGINX][0]["last_seen"].is_string());
    assert_eq!(hosts["redis:7"].as_array().unwrap().len(), 1);

    // Acknowledged, the card still says where the image runs: the reports the acknowledgement
    // covered.
    app.request("PATCH", "/api/updates/docker.io%2Flibrary%2Fnginx%3A1.27").send().await;
    assert_eq!(app.get("/api/hosts").await.json()[NGINX], hosts[NGINX], "acknowledged: the same hosts");
    app.webhook(&event_from("pi", "sha256:2", "proxy")).await;
    let hosts = app.get("/api/hosts").await.json();
    assert_eq!(hosts[NGINX].as_array().unwrap().len(), 1, "only hosts since it became pending again");
    assert_eq!(hosts[NGINX][0]["hostname"], json!("pi"));

    // Acknowledging everything covers every pending event, of every image, in the history too.
    let before = app.get("/api/hosts").await.json();
    assert_eq!(app.api("POST", "/api/updates/acknowledge-all", &json!({})).await.status, 200);
    assert_eq!(app.get("/api/hosts").await.json(), before, "the same hosts, acknowledged");
    let history = app.get("/api/updates/redis:7/history").await.json();
    assert_eq!(history["events"].as_array().unwrap().len(), 1, "{history}");
    assert!(
        history["events"].as_array().unwrap().iter().all(|e| e["acknowledged_at"].is_string()),
        "{history}"
    );
    app.webhook(&event_from("nas", "sha256:3", "web")).await;
    let hosts = app.get("/api/hosts").await.json();
    assert_eq!(hosts["redis:7"], before["redis:7"], "redis stays as acknowledged: {hosts}");
    assert_eq!(hosts[NGINX].as_array().unwrap().len(), 1, "{hosts}");
    assert_eq!(hosts[NGINX][0]["hostname"], json!("nas"));
    let history = app.get("/api/updates/docker.io/library/nginx:1.27/history").await.json();
    let pending =
        history["events"].as_array().unwrap().iter().filter(|e| e["acknowledged_at"].is_null()).count();
    assert_eq!(pending, 1, "{history}");
}

const DAY: i64 = 86_400_000_000;

fn days_ago(now: Timestamp, days: i64) -> Timestamp {
    Timestamp::from_unix_micros(now.unix_micros() - days * DAY)
}

async fn old_history_is_pruned_and_the_current_state_kept(app: &TestApp) {
    let now = Timestamp::now();
    for (image, age_days) in [("old:1", 200), ("old:1", 190)] {
        app.store
            .upsert_event(support::event_from_host(image, "nas"), Received::At(days_ago(now, age_days)))
            .await
            .unwrap();
    }
    assert_eq!(
        app.store.acknowledge("old:1".into(), days_ago(now, 185), None).await.unwrap(),
        ImageOutcome::Done
    );
    for (image, age_days) in [("recent:1", 10), ("old:1", 5)] {
        app.store
            .upsert_event(support::event_from_host(image, "nas"), Received::At(days_ago(now, age_days)))
            .await
            .unwrap();
    }
    let pruned = diun_dashboard::retention::prune(&app.store, 180, now).await;
    assert_eq!(pruned, 2);
    let old = app.store.history("old:1".into(), None, 10).await.unwrap().unwrap();
    assert_eq!(old.len(), 1, "only the event of 5 days ago is left");
    assert!(app.updates().await.get("old:1").is_some(), "the update itself stays");
    assert_eq!(diun_dashboard::retention::prune(&app.store, 180, now).await, 0);
}

/// An update left pending longer than the history is kept still lists every host that reported
/// it: its pending events are the card's hosts. Acknowledged, they stay the card's hosts past the
/// retention until the image is reported anew and acknowledged again (they once all went then,
/// and a pinned image's card lost its hosts).
async fn pending_history_is_kept_however_old(app: &TestApp) {
    let now = Timestamp::now();
    for (host, age_days) in [("nas", 200), ("pi", 190)] {
        app.store
            .upsert_event(support::event_from_host("old:1", host), Received::At(days_ago(now, age_days)))
            .await
            .unwrap();
    }
    assert_eq!(diun_dashboard::retention::prune(&app.store, 180, now).await, 0);
    assert_eq!(reporting(app, "old:1").await, ["nas", "pi"]);
    assert_eq!(app.store.history("old:1".into(), None, 10).await.unwrap().unwrap().len(), 2);

    // Acknowledged now, its history is kept for the full time from now, to be looked at.
    assert_eq!(app.store.acknowledge("old:1".into(), now, None).await.unwrap(), ImageOutcome::Done);
    assert_eq!(diun_dashboard::retention::prune(&app.store, 180, now).await, 0);
    assert_eq!(app.store.history("old:1".into(), None, 10).await.unwrap().unwrap().len(), 2);
    // Past the retention, the reports its acknowledgement covered stay while it is the latest:
    // they are the hosts its card lists.
    let later = Timestamp::from_unix_micros(now.unix_micros() + 181 * DAY);
    assert_eq!(diun_dashboard::retention::prune(&app.store, 180, later).await, 0);
    assert_eq!(reporting(app, "old:1").await, ["nas", "pi"]);
    // Reported anew and acknowledged again, those older reports are history, and go.
    app.store.upsert_event(support::event_from_host("old:1", "nas"), Received::At(later)).await.unwrap();
    assert_eq!(app.store.acknowledge("old:1".into(), later, None).await.unwrap(), ImageOutcome::Done);
    assert_eq!(diun_dashboard::retention::prune(&app.store, 180, later).await, 2);
    assert_eq!(reporting(app, "old:1").await, ["nas"]);
    assert_eq!(app.store.history("old:1".into(), None, 10).await.unwrap().unwrap().len(), 1);
}

/// The hosts `/api/hosts` lists for `image`.
async fn reporting(app: &TestApp, image: &str) -> Vec<String> {
    let hosts = app.get("/api/hosts").await.json();
    hosts[image]
        .as_array()
        .unwrap_or_else(|| panic!("{image} has no hosts: {hosts}"))
        .iter()
        .map(|h| h["hostname"].as_str().unwrap().to_string())
        .collect()
}

/// HISTORY_DAYS takes any `u32`; days beyond the calendar keep everything rather than
/// overflowing (in a debug build, a panic that stopped pruning; in a release build, a cutoff
/// after today that deleted everything).
async fn any_number_of_days_keeps_what_is_younger(app: &TestApp) {
    let now = Timestamp::now();
    app.store
        .upsert_event(support::event_from_host("a:1", "nas"), Received::At(days_ago(now, 1)))
        .await
        .unwrap();
    assert_eq!(app.store.acknowledge("a:1".into(), now, None).await.unwrap(), ImageOutcome::Done);
    // Reported anew: the acknowledged report is history.
    app.store.upsert_event(support::event_from_host("a:1", "pi"), Received::At(now)).await.unwrap();
    for days in [999_999_999, u32::MAX] {
        assert_eq!(diun_dashboard::retention::prune(&app.store, days, now).await, 0, "{days} days");
    }
    assert_eq!(app.store.history("a:1".into(), None, 10).await.unwrap().unwrap().len(), 2);
    assert_eq!(
        diun_dashboard::retention::prune(
            &app.store,
            1,
            Timestamp::from_unix_micros(now.unix_micros() + DAY + 1)
        )
        .await,
        1
    );
}

/// A backlog goes in slices: each call deletes at most its limit, oldest or not.
async fn pruning_deletes_at_most_the_limit_per_call(app: &TestApp) {
    let now = Timestamp::now();
    for image in ["a:1", "b:1", "a:1"] {
        let event = DiunEvent::from_json(docker_event(image).to_string().as_bytes()).unwrap();
        let received = Timestamp::from_unix_micros(now.unix_micros() - 1_000_000);
        app.store.upsert_event(event, Received::At(received)).await.unwrap();
    }
    assert_eq!(app.store.acknowledge_all(now, None).await.unwrap(), 2);
    // Reported anew, the three acknowledged reports are history
    // (see pending_history_is_kept_however_old).
    for image in ["a:1", "b:1"] {
        app.store.upsert_event(support::event_from_host(image, "pi"), Received::At(now)).await.unwrap();
    }
    let after = Timestamp::from_unix_micros(now.unix_micros() + 1);
    let deleted: Vec<u64> = [
        app.store.prune_history(after, 2).await.unwrap(),
        app.store.prune_history(after, 2).await.unwrap(),
        app.store.prune_history(after, 2).await.unwrap(),
    ]
    .into();
    assert_eq!(deleted, [2, 1, 0]);
}

on_every_backend!(
    pruning_deletes_at_most_the_limit_per_call,
    history_lists_every_webhook_newest_first_with_pages,
    history_answers_404_400_and_405,
    hosts_lists_every_host_since_the_image_became_pending,
    old_history_is_pruned_and_the_current_state_kept,
    pending_history_is_kept_however_old,
    any_number_of_days_keeps_what_is_younger,
);

/// Replicas each prune (PostgreSQL): an event another session holds is left for a later pass
/// rather than waited for. Two replicas' prunes picking the same rows queued one behind the
/// other, ended the second's pass early, and could deadlock.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_skips_an_event_another_session_holds() {
    let Some(app) = TestApp::postgres().await else { return };
    let now = Timestamp::now();
    let before = Timestamp::from_unix_micros(now.unix_micros() - 1_000_000);
    for image in ["a:1", "b:1"] {
        app.store.upsert_event(support::event_from_host(image, "nas"), Received::At(before)).await.unwrap();
    }
    assert_eq!(app.store.acknowledge_all(now, None).await.unwrap(), 2);
    for image in ["a:1", "b:1"] {
        app.store.upsert_event(support::event_from_host(image, "pi"), Received::At(now)).await.unwrap();
    }
    let holder = support::connect_to(&app).await;
    holder
        .batch_execute("BEGIN; SELECT 1 FROM events WHERE image = 'a:1' AND hostname = 'nas' FOR UPDATE")
        .await
        .unwrap();
    let holder_pid = support::backend_pid(&holder).await;
    let observer = support::connect_to(&app).await;
    let after = Timestamp::from_unix_micros(now.unix_micros() + 1);
    let deleted = {
        let prune = app.store.prune_history(after, 10);
        tokio::pin!(prune);
        loop {
            tokio::select! {
                deleted = &mut prune => break deleted.unwrap(),
                () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                    let waiting: i64 = observer
                        .query_one("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", &[&holder_pid])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(waiting, 0, "the prune waits for the event the test holds");
                }
            }
        }
    };
    assert_eq!(deleted, 1, "b:1's old report goes, a:1's held one stays");
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(app.store.prune_history(after, 10).await.unwrap(), 1, "the next pass takes it");
    app.stop().await;
}
