//! One scripted sequence of API calls on SQLite and on PostgreSQL: every answer must be the
//! same, byte for byte, ids and timestamps aside (SPEC §5).
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod support;

use serde_json::{Value, json};
use support::{TestApp, docker_event};

/// The body's text with the values that differ between runs (ids, timestamps) replaced by
/// markers; everything else, key order and blanks included, stays as it was sent.
fn mask_text(raw: &str) -> String {
    const VARYING: [(&str, bool); 7] = [
        ("\"received_at\":\"", true),
        // A refused webhook's time (`/api/summary`).
        ("\"at\":\"", true),
        ("\"acknowledged_at\":\"", true),
        ("\"last_seen\":\"", true),
        ("\"id\":", false),
        ("\"tag_id\":", false),
        ("\"next_before\":", false),
    ];
    let (mut masked, mut rest) = (String::new(), raw);
    while let Some((at, key, is_time)) = VARYING
        .iter()
        .filter_map(|&(key, is_time)| rest.find(key).map(|at| (at, key, is_time)))
        .min_by_key(|&(at, ..)| at)
    {
        masked.push_str(&rest[..at + key.len()]);
        rest = &rest[at + key.len()..];
        let end = if is_time {
            rest.find('"').expect("a closed timestamp string")
        } else {
            rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())
        };
        if end > 0 {
            masked.push_str(if is_time { "<time>" } else { "<id>" });
        }
        rest = &rest[end..];
    }
    masked.push_str(rest);
    masked
}

/// Every call of the script, with the answer it got: (call, status, masked body text).
async fn run_script(app: &TestApp) -> Vec<(String, u16, String)> {
    let mut transcript = Vec::new();
    let mut step = |call: String, response: support::Response| {
        transcript.push((call, response.status, mask_text(&response.text())));
    };
    let images = [
        "docker.io/library/nginx:1.27",
        "docker.io/library/Nginx:1.27",
        "ghcr.io/org/app@sha256:0123",
        "lscr.io/linuxserver/ZZZ:latest",
        "registry.example:5000/café/ünï:1",
        "a:1",
        "_underscore/x:1",
    ];
    for (i, image) in images.iter().enumerate() {
        let mut event = docker_event(image);
        event["hostname"] = json!(format!("host-{i}"));
        if i % 2 == 0 {
            event["created"] = Value::Null;
        }
        if i % 3 == 0 {
            event["metadata"] = Value::Null;
        }
        event["extra_number"] = json!(1.5e3);
        event["unicode"] = json!("😀 \u{7f} tab\t");
        // Metadata beyond DIUN's strings, as a file provider's user-defined keys may be:
        // numbers, nesting, escapes; jsonb prints all of it its own way.
        if i % 3 == 1 {
            event["metadata"] = json!({
                "z_last": "\"quoted\" \\ \u{1}\n", "a": 1, "nested": { "k2": [0.5, 1e300, -0.0, true, null], "k": {} },
                "big": 123_456_789_012_345_678_901_234_567_890.0_f64, "whole": 1e16, "whole_below": -1.5e16, "é": "ü", "": "empty key",
            });
            event["zz_unknown"] = json!({ "b": 1, "a": [2, { "y": null, "x": "1" }] });
        }
        step(format!("webhook {image}"), app.webhook(&event).await);
    }
    for name in ["beta", "Alpha", "gamma", "alpha", "Ärger", "zulu", "_under", "10", "9"] {
        step(format!("create tag {name}"), app.api("POST", "/api/tags", &json!({ "name": name })).await);
    }
    step("duplicate tag".into(), app.api("POST", "/api/tags", &json!({ "name": "beta" })).await);
    step("list tags".into(), app.get("/api/tags").await);
    let tags = app.get("/api/tags").await.json();
    let id_of = |name: &str| {
        tags.as_array().unwrap().iter().find(|t| t["name"] == json!(name)).unwrap()["id"].clone()
    };
    for (image, tag) in [(images[0], "beta"), (images[1], "beta"), (images[2], "Alpha"), (images[4], "zulu")]
    {
        let body = json!({ "image": image, "tag_id": id_of(tag) });
        step(format!("assign {image} {tag}"), app.api("PUT", "/api/tag-assignments", &body).await);
    }
    step(
        "assign unknown image".into(),
        app.api("PUT", "/api/tag-assignments", &json!({ "image": "nope:1", "tag_id": id_of("beta") })).await,
    );
    step(
        "assign unknown tag".into(),
        app.api("PUT", "/api/tag-assignments", &json!({ "image": images[0], "tag_id": 987_654 })).await,
    );
    step(
        "reassign".into(),
        app.api("PUT", "/api/tag-assignments", &json!({ "image": images[1], "tag_id": id_of("gamma") }))
            .await,
    );
    step("ack one".into(), app.request("PATCH", "/api/updates/a%3A1").send().await);
    step("ack unknown".into(), app.request("PATCH", "/api/updates/zzz%3A1").send().await);
    step(
        "ack by tag".into(),
        app.api("POST", "/api/updates/acknowledge-by-tag", &json!({ "tag_id": id_of("beta") })).await,
    );
    step(
        "ack by unknown tag".into(),
        app.api("POST", "/api/updates/acknowledge-by-tag", &json!({ "tag_id": 987_654 })).await,
    );
    step("list".into(), app.get("/api/updates").await);
    step("re-send acknowledged".into(), app.webhook(&docker_event(images[0])).await);
    step("delete tag".into(), app.request("DELETE", &format!("/api/tags/{}", id_of("zulu"))).send().await);
    step("delete unknown tag".into(), app.request("DELETE", "/api/tags/987654").send().await);
    step("unassign".into(), app.api("DELETE", "/api/tag-assignments", &json!({ "image": images[2] })).await);
    step("ack all".into(), app.api("POST", "/api/updates/acknowledge-all", &json!({})).await);
    step("ack all again".into(), app.api("POST", "/api/updates/acknowledge-all", &json!({})).await);
    step("bad webhook".into(), app.webhook(&json!({ "image": "" })).await);
    step("hosts".into(), app.get("/api/hosts").await);
    for image in ["docker.io%2Flibrary%2Fnginx%3A1.27", "a%3A1", "nope%3A1"] {
        step(format!("history {image}"), app.get(&format!("/api/updates/{image}/history")).await);
        step(
            format!("history page {image}"),
            app.get(&format!("/api/updates/{image}/history?limit=1")).await,
        );
    }
    step("summary".into(), app.get("/api/summary").await);
    step("final list".into(), app.get("/api/updates").await);
    step("final tags".into(), app.get("/api/tags").await);
    transcript
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_calls_give_the_same_answers_on_sqlite_and_postgresql() {
    let Some(postgres) = TestApp::postgres().await else { return };
    let sqlite = TestApp::sqlite().await;
    let on_sqlite = run_script(&sqlite).await;
    let on_postgres = run_script(&postgres).await;
    assert_eq!(on_sqlite.len(), on_postgres.len());
    for (a, b) in on_sqlite.iter().zip(&on_postgres) {
        assert_eq!(a, b, "SQLite and PostgreSQL disagree at `{}`", a.0);
    }
    // Agreeing is not enough: both could fail a step the same way. The steps named for a
    // refusal are refused (4xx); every other step succeeds.
    for (call, status, body) in &on_sqlite {
        let refusal = ["unknown", "duplicate", "bad", "nope"].iter().any(|word| call.contains(word));
        if refusal {
            assert!((400..500).contains(status), "`{call}` answered {status}: {body}");
        } else {
            assert!((200..300).contains(status), "`{call}` answered {status}: {body}");
        }
    }
    // The listing's key order is part of the output, too.
    assert_eq!(listing_order(&sqlite).await, listing_order(&postgres).await);
    sqlite.stop().await;
    postgres.stop().await;
}

/// The images in the order the raw `GET /api/updates` text lists them.
async fn listing_order(app: &TestApp) -> Vec<String> {
    let raw = app.get("/api/updates").await.text();
    let object: serde_json::Map<String, Value> = serde_json::from_str(&raw).unwrap();
    let mut images: Vec<(usize, String)> = object
        .keys()
        .map(|image| {
            let key = format!("{}:{{\"event\"", serde_json::to_string(image).unwrap());
            (raw.find(&key).expect("key in raw text"), image.clone())
        })
        .collect();
    images.sort();
    images.into_iter().map(|(_, image)| image).collect()
}
