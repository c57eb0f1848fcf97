//! The HTTP contract of SPEC §4, run on every compiled backend; at the end, what PostgreSQL
//! alone must show of it (webhooks sharing transactions).

mod support;

use diun_dashboard::store::{ImageOutcome, Received, Store, UpdateStore};
use diun_dashboard::time::Timestamp;
use futures_util::future::join_all;
use serde_json::{Value, json};
use support::{TestApp, docker_event};

const NGINX: &str = "docker.io/library/nginx:1.27";

fn encode(image: &str) -> String {
    image
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn healthz_reports_the_backend(app: &TestApp) {
    let response = app.get("/healthz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({ "status": "ok", "backend": UpdateStore::backend(&*app.store) }));
    let response = app.request("POST", "/healthz").send().await;
    assert_eq!(response.status, 405);
    assert!(!response.error().is_empty());
}

async fn empty_store_lists_an_empty_object(app: &TestApp) {
    assert_eq!(app.updates().await, json!({}));
    assert_eq!(app.get("/api/tags").await.json(), json!([]));
}

async fn webhook_stores_every_field(app: &TestApp) {
    let mut event = docker_event(NGINX);
    event["a_future_field"] = json!({ "nested": [1, "two"] });
    event["metadata"]["user_defined_key"] = json!("kept");
    let response = app.webhook(&event).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({ "status": "ok" }));
    assert_eq!(response.header("content-type"), Some("application/json"));
    let updates = app.updates().await;
    let entry = &updates[NGINX];
    assert_eq!(entry["event"], event, "every field and metadata key comes back as sent");
    assert_eq!(entry["acknowledged"], json!(false));
    assert_eq!(entry["acknowledged_at"], Value::Null);
    assert_eq!(entry["tag"], Value::Null);
    assert_rfc3339_utc(&entry["received_at"]);
}

fn assert_rfc3339_utc(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("timestamp is not a string: {value}"));
    let stamp = diun_dashboard::time::Timestamp::parse_rfc3339(text).expect("RFC 3339");
    assert!(text.ends_with('Z'), "{text} is not UTC");
    assert_eq!(stamp.to_string(), text, "one canonical format");
}

async fn every_provider_payload_round_trips(app: &TestApp) {
    let providers = [
        (
            "docker",
            json!({"ctn_id": "1", "ctn_names": "web", "ctn_command": "nginx", "ctn_createdat": "x", "ctn_state": "running", "ctn_status": "Up", "ctn_size": "0B"}),
        ),
        (
            "swarm",
            json!({"svc_id": "s1", "svc_createdat": "x", "svc_updatedat": "y", "ctn_name": "stack_web"}),
        ),
        (
            "kubernetes",
            json!({"pod_name": "web-0", "pod_status": "Running", "pod_namespace": "default", "pod_createdat": "x", "ctn_name": "web", "ctn_command": "nginx"}),
        ),
        (
            "nomad",
            json!({"job_id": "j", "job_name": "web", "job_status": "running", "job_namespace": "default", "taskgroup_name": "g", "task_name": "t", "task_driver": "docker", "task_user": ""}),
        ),
        (
            "containerd",
            json!({"ctn_id": "c", "ctn_name": "web", "ctn_image": "nginx", "ctn_namespace": "k8s.io", "ctn_createdat": "x", "ctn_updatedat": "y", "ctn_runtime": "io.containerd.runc.v2", "ctn_snapshotter": "overlayfs", "ctn_snapshot_key": "k", "ctn_status": "running"}),
        ),
        ("file", json!({"owner": "me"})),
        ("dockerfile", json!({})),
    ];
    let mut sent = serde_json::Map::new();
    for (provider, metadata) in providers {
        let image = format!("ghcr.io/example/{provider}:2.1");
        let mut event = docker_event(&image);
        event["provider"] = json!(provider);
        event["status"] = json!(if provider == "file" { "update" } else { "new" });
        event["metadata"] = metadata;
        assert_eq!(app.webhook(&event).await.status, 200, "{provider}");
        sent.insert(image, event);
    }
    let updates = app.updates().await;
    for (image, event) in sent {
        assert_eq!(updates[&image]["event"], event, "{image}");
    }
}

async fn null_created_and_metadata_and_minimal_events_are_accepted(app: &TestApp) {
    let mut event = docker_event(NGINX);
    event["created"] = Value::Null;
    event["metadata"] = Value::Null;
    assert_eq!(app.webhook(&event).await.status, 200);
    assert_eq!(app.updates().await[NGINX]["event"], event);

    assert_eq!(app.webhook(&json!({ "image": "redis:7" })).await.status, 200);
    let minimal = &app.updates().await["redis:7"]["event"];
    assert_eq!(minimal["image"], json!("redis:7"));
    assert_eq!(minimal["hostname"], json!(""));
    assert_eq!(minimal["created"], Value::Null);

    // Any RFC 3339 `created` is kept as sent, even one its offset moves past the year 9999.
    let mut far = docker_event("far:1");
    far["created"] = json!("9999-12-31T23:59:59-05:00");
    assert_eq!(app.webhook(&far).await.status, 200);
    assert_eq!(app.updates().await["far:1"]["event"], far);
}

async fn bad_webhook_bodies_get_400_and_store_nothing(app: &TestApp) {
    let mut wrong_type = docker_event("a:1");
    wrong_type["hostname"] = json!(5);
    let mut bad_created = docker_event("b:1");
    bad_created["created"] = json!("yesterday");
    let mut bad_metadata = docker_event("c:1");
    bad_metadata["metadata"] = json!(["not", "an", "object"]);
    let mut nul = docker_event("d:1");
    nul["metadata"]["ctn_names"] = json!("we\u{0}b");
    let bodies: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"{\"image\": \"x:1\"".to_vec(),
        b"[]".to_vec(),
        b"".to_vec(),
        json!({ "hostname": "nas" }).to_string().into_bytes(),
        json!({ "image": "" }).to_string().into_bytes(),
        json!({ "image": "   " }).to_string().into_bytes(),
        json!({ "image": 42 }).to_string().into_bytes(),
        wrong_type.to_string().into_bytes(),
        bad_created.to_string().into_bytes(),
        bad_metadata.to_string().into_bytes(),
        nul.to_string().into_bytes(),
        b"{\"image\": \"x:1\xff\"}".to_vec(),
    ];
    for body in bodies {
        let response = app.request("POST", "/webhook").body(body.clone()).send().await;
        assert_eq!(response.status, 400, "{:?} → {}", String::from_utf8_lossy(&body), response.text());
        assert!(!response.error().is_empty());
    }
    // Valid JSON, but a number no backend can keep: said so, rather than "invalid JSON".
    let huge = app.request("POST", "/webhook").body(r#"{"image":"e:1","future":1e400}"#).send().await;
    assert_eq!(huge.status, 400);
    assert!(huge.error().starts_with("a number is too large to store"), "{}", huge.text());
    assert_eq!(app.updates().await, json!({}));
}

async fn webhook_accepts_chunked_bodies_without_content_type(app: &TestApp) {
    let event = docker_event(NGINX);
    let response = app.request("POST", "/webhook").body(event.to_string()).chunked().send().await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(app.updates().await[NGINX]["event"], event);
}

async fn oversized_bodies_get_413_chunked_or_not(app: &TestApp) {
    let mut event = docker_event(NGINX);
    event["metadata"]["padding"] = json!("x".repeat(diun_dashboard::http::MAX_BODY));
    let big = event.to_string();
    let response = app.request("POST", "/webhook").body(big.clone()).send().await;
    assert_eq!(response.status, 413);
    assert!(!response.error().is_empty());
    let response = app.request("POST", "/webhook").body(big.clone()).chunked().send().await;
    assert_eq!(response.status, 413);
    // Every route that reads a body caps it the same way.
    for (method, path) in
        [("POST", "/api/tags"), ("PUT", "/api/tag-assignments"), ("POST", "/api/updates/acknowledge-by-tag")]
    {
        let response = app
            .request(method, path)
            .header("Content-Type", "application/json")
            .body(big.clone())
            .chunked()
            .send()
            .await;
        assert_eq!(response.status, 413, "{method} {path}");
    }
    assert_eq!(app.updates().await, json!({}));
    assert_eq!(app.get("/api/tags").await.json(), json!([]));

    // Just under the cap is fine.
    let mut event = docker_event(NGINX);
    event["metadata"]["padding"] = json!("");
    let room = diun_dashboard::http::MAX_BODY - event.to_string().len();
    event["metadata"]["padding"] = json!("y".repeat(room));
    assert_eq!(event.to_string().len(), diun_dashboard::http::MAX_BODY);
    assert_eq!(app.webhook(&event).await.status, 200);
}

/// Like Python's requests: the whole body is written before the answer is read, so a server
/// that closed early would leave the client with a reset instead of its 413.
async fn a_client_that_sends_everything_first_still_reads_its_413(app: &TestApp) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = vec![b'x'; 2 * diun_dashboard::http::MAX_BODY];
    for chunked in [false, true] {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let mut request = b"POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
        if chunked {
            request.extend_from_slice(
                format!("Transfer-Encoding: chunked\r\n\r\n{:x}\r\n", body.len()).as_bytes(),
            );
            request.extend_from_slice(&body);
            request.extend_from_slice(b"\r\n0\r\n\r\n");
        } else {
            request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            request.extend_from_slice(&body);
        }
        stream.write_all(&request).await.expect("the server reads the whole body");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("the answer arrives");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "chunked={chunked}: {answer}");
    }
}

async fn get_on_webhook_explains_the_diun_method_setting(app: &TestApp) {
    let response = app.get("/webhook").await;
    assert_eq!(response.status, 405);
    assert!(response.error().contains("method: POST"), "{}", response.text());
    assert_eq!(response.header("allow"), Some("POST"), "RFC 9110: a 405 says what is allowed");
    assert_eq!(app.request("PUT", "/webhook").send().await.status, 405);
}

async fn upsert_overwrites_fields_clears_acknowledgement_and_keeps_the_tag(app: &TestApp) {
    assert_eq!(app.webhook(&docker_event(NGINX)).await.status, 200);
    let tag = app.create_tag("prod").await;
    let assigned = app.api("PUT", "/api/tag-assignments", &json!({ "image": NGINX, "tag_id": tag })).await;
    assert_eq!(assigned.status, 204);
    assert_eq!(app.request("PATCH", &format!("/api/updates/{}", encode(NGINX))).send().await.status, 204);
    let before = app.updates().await[NGINX].clone();
    assert_eq!(before["acknowledged"], json!(true));

    let mut newer = docker_event(NGINX);
    newer["digest"] = json!("sha256:1111");
    newer["status"] = json!("update");
    newer["hostname"] = json!("pi");
    newer["metadata"] = json!({ "ctn_names": "web2" });
    assert_eq!(app.webhook(&newer).await.status, 200);
    let after = app.updates().await[NGINX].clone();
    assert_eq!(after["event"], newer, "every field is overwritten, old metadata keys included");
    assert_eq!(after["acknowledged"], json!(false));
    assert_eq!(after["acknowledged_at"], Value::Null);
    assert_eq!(after["tag"], json!({ "id": tag, "name": "prod" }), "the tag survives the upsert");
    assert!(after["received_at"].as_str() > before["received_at"].as_str(), "received_at is refreshed");
}

async fn acknowledging_one_update(app: &TestApp) {
    let images = [
        "docker.io/library/nginx:1.27",
        "ghcr.io/org/app@sha256:abcdef",
        "registry.example:5000/café/ünïcode:1.0",
    ];
    for image in images {
        assert_eq!(app.webhook(&docker_event(image)).await.status, 200);
    }
    for image in images {
        let response = app.request("PATCH", &format!("/api/updates/{}", encode(image))).send().await;
        assert_eq!(response.status, 204, "{image}: {}", response.text());
        let entry = &app.updates().await[image];
        assert_eq!(entry["acknowledged"], json!(true), "{image}");
        assert_rfc3339_utc(&entry["acknowledged_at"]);
    }
    // Acknowledging again keeps the first time.
    let first = app.updates().await[images[0]]["acknowledged_at"].clone();
    assert_eq!(app.request("PATCH", &format!("/api/updates/{}", encode(images[0]))).send().await.status, 204);
    assert_eq!(app.updates().await[images[0]]["acknowledged_at"], first);

    // Unencoded slashes work too, so curl users need not encode, and a trailing slash, as on
    // the other routes.
    assert_eq!(app.webhook(&docker_event("quay.io/a/b:2")).await.status, 200);
    assert_eq!(app.request("PATCH", "/api/updates/quay.io/a/b:2").send().await.status, 204);
    assert_eq!(app.webhook(&docker_event("quay.io/a/c:3")).await.status, 200);
    let trailing = app.request("PATCH", &format!("/api/updates/{}/", encode("quay.io/a/c:3"))).send().await;
    assert_eq!(trailing.status, 204, "{}", trailing.text());
    assert_eq!(app.updates().await["quay.io/a/c:3"]["acknowledged"], json!(true));

    let unknown = app.request("PATCH", &format!("/api/updates/{}", encode("nope:1"))).send().await;
    assert_eq!(unknown.status, 404);
    assert!(!unknown.error().is_empty());
    assert_eq!(app.request("GET", &format!("/api/updates/{}", encode(NGINX))).send().await.status, 405);
}

/// An acknowledgement that names the report it was shown (`received_at`, as listed) leaves a
/// report that arrived since pending (409): the user has not seen it.
async fn an_acknowledgement_of_a_report_since_replaced_is_refused(app: &TestApp) {
    let received_at = |updates: &Value| updates[NGINX]["received_at"].as_str().unwrap().to_string();
    app.webhook(&docker_event(NGINX)).await;
    let shown = received_at(&app.updates().await);
    let mut newer = docker_event(NGINX);
    newer["digest"] = json!("sha256:newer");
    app.webhook(&newer).await;
    let latest = received_at(&app.updates().await);
    assert_ne!(shown, latest);
    let patch =
        |image: &str, query: String| app.request("PATCH", &format!("/api/updates/{}?{query}", encode(image)));

    let refused = patch(NGINX, format!("received_at={}", encode(&shown))).send().await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(refused.error().contains("reported again"), "{}", refused.text());
    let updates = app.updates().await;
    assert_eq!(updates[NGINX]["acknowledged"], json!(false), "the newer report stays pending");
    let history = app.get(&format!("/api/updates/{}/history", encode(NGINX))).await.json();
    assert_eq!(history["events"].as_array().unwrap().len(), 2, "both reports: {history}");
    assert!(
        history["events"].as_array().unwrap().iter().all(|e| e["acknowledged_at"].is_null()),
        "{history}"
    );

    assert_eq!(patch(NGINX, format!("received_at={}", encode(&latest))).send().await.status, 204);
    assert_eq!(app.updates().await[NGINX]["acknowledged"], json!(true));
    assert_eq!(
        patch(NGINX, format!("received_at={}", encode(&latest))).send().await.status,
        204,
        "again: still so"
    );
    assert_eq!(patch("nope:1", format!("received_at={}", encode(&latest))).send().await.status, 404);
    for query in ["received_at=yesterday".to_string(), format!("seen={}", encode(&latest))] {
        let response = patch(NGINX, query.clone()).send().await;
        assert_eq!(response.status, 400, "{query}: {}", response.text());
        assert!(!response.error().is_empty());
    }
}

/// `DELETE /api/updates/{image}` forgets an image that is gone: its update, its group
/// assignment and its history. DIUN's next report of it starts afresh. As an acknowledgement,
/// it can name the report the user was shown.
async fn removing_an_update_forgets_it_with_its_group_and_history(app: &TestApp) {
    let path = |image: &str| format!("/api/updates/{}", encode(image));
    let received_at = |updates: &Value| updates[NGINX]["received_at"].as_str().unwrap().to_string();
    app.webhook(&docker_event(NGINX)).await;
    let mut newer = docker_event(NGINX);
    newer["digest"] = json!("sha256:newer");
    newer["hostname"] = json!("pi");
    app.webhook(&newer).await;
    app.webhook(&docker_event("redis:7")).await;
    let tag = app.create_tag("prod").await;
    for image in [NGINX, "redis:7"] {
        let assigned =
            app.api("PUT", "/api/tag-assignments", &json!({ "image": image, "tag_id": tag })).await;
        assert_eq!(assigned.status, 204);
    }
    let shown = received_at(&app.updates().await);

    let removed = app.request("DELETE", &path(NGINX)).send().await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    let updates = app.updates().await;
    assert!(updates.get(NGINX).is_none(), "{updates}");
    assert_eq!(updates["redis:7"]["tag"]["id"], json!(tag), "the other images stay as they were");
    assert_eq!(app.get(&format!("{}/history", path(NGINX))).await.status, 404);
    assert!(app.get("/api/hosts").await.json().get(NGINX).is_none());
    assert_eq!(app.get("/api/summary").await.json()["total"], json!(1));
    assert_eq!(app.get("/api/tags").await.json(), json!([{ "id": tag, "name": "prod" }]), "groups stay");
    let again = app.request("DELETE", &path(NGINX)).send().await;
    assert_eq!(again.status, 404, "removed already: {}", again.text());
    assert!(!again.error().is_empty());

    // Reported again, it comes back as new: pending, in no group, its one report the history.
    assert_eq!(app.webhook(&docker_event(NGINX)).await.status, 200);
    let updates = app.updates().await;
    assert_eq!(updates[NGINX]["tag"], Value::Null);
    assert_eq!(updates[NGINX]["acknowledged"], json!(false));
    let history = app.get(&format!("{}/history", path(NGINX))).await.json();
    assert_eq!(history["events"].as_array().unwrap().len(), 1, "{history}");
    let hosts = app.get("/api/hosts").await.json();
    assert_eq!(hosts[NGINX].as_array().unwrap().len(), 1, "{hosts}");

    // Naming the report shown: one that arrived since is kept (409), the one shown goes.
    let named =
        |shown: &str| app.request("DELETE", &format!("{}?received_at={}", path(NGINX), encode(shown)));
    let refused = named(&shown).send().await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(refused.error().contains("reported again"), "{}", refused.text());
    assert!(app.updates().await.get(NGINX).is_some());
    let history = app.get(&format!("{}/history", path(NGINX))).await.json();
    assert_eq!(
        history["events"].as_array().unwrap().len(),
        1,
        "a refused removal keeps the history: {history}"
    );
    let latest = received_at(&app.updates().await);
    assert_eq!(named(&latest).send().await.status, 204);
    assert!(app.updates().await.get(NGINX).is_none());
    let bad = app.request("DELETE", &format!("{}?received_at=yesterday", path("redis:7"))).send().await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(app.updates().await.get("redis:7").is_some(), "a refused request removes nothing");
}

async fn acknowledge_all_counts_newly_acknowledged(app: &TestApp) {
    for image in ["a:1", "b:1", "c:1"] {
        app.webhook(&docker_event(image)).await;
    }
    app.request("PATCH", "/api/updates/a%3A1").send().await;
    // Its body is checked like any other route's, and a refused one acknowledges nothing.
    for (body, status) in [
        ("garbage".to_string(), 400),
        ("[]".into(), 400),
        ("[null]".into(), 400),
        ("{".into(), 400),
        (" ".repeat(1 << 21), 413),
    ] {
        let refused = app
            .request("POST", "/api/updates/acknowledge-all")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await;
        assert_eq!(refused.status, status, "{}", refused.text());
        assert!(!refused.error().is_empty());
    }
    assert_eq!(app.updates().await["b:1"]["acknowledged"], json!(false));
    let response = app.api("POST", "/api/updates/acknowledge-all", &json!({})).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({ "count": 2 }));
    let again = app
        .request("POST", "/api/updates/acknowledge-all")
        .header("Content-Type", "application/json")
        .send()
        .await;
    assert_eq!(again.json(), json!({ "count": 0 }), "no body is needed");
    let updates = app.updates().await;
    assert_eq!(updates.as_object().unwrap().len(), 3);
    assert!(updates.as_object().unwrap().values().all(|u| u["acknowledged"] == json!(true)));
    assert_eq!(app.get("/api/updates/acknowledge-all").await.status, 405);
}

async fn acknowledge_by_tag_touches_only_that_group(app: &TestApp) {
    for image in ["a:1", "b:1", "c:1"] {
        app.webhook(&docker_event(image)).await;
    }
    let prod = app.create_tag("prod").await;
    let dev = app.create_tag("dev").await;
    for (image, tag) in [("a:1", prod), ("b:1", prod), ("c:1", dev)] {
        assert_eq!(
            app.api("PUT", "/api/tag-assignments", &json!({ "image": image, "tag_id": tag })).await.status,
            204
        );
    }
    let response = app.api("POST", "/api/updates/acknowledge-by-tag", &json!({ "tag_id": prod })).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({ "count": 2 }));
    let updates = app.updates().await;
    assert_eq!(updates["a:1"]["acknowledged"], json!(true));
    assert_eq!(updates["c:1"]["acknowledged"], json!(false));
    let empty_tag = app.create_tag("empty").await;
    assert_eq!(
        app.api("POST", "/api/updates/acknowledge-by-tag", &json!({ "tag_id": empty_tag })).await.json(),
        json!({ "count": 0 })
    );

    let unknown = app.api("POST", "/api/updates/acknowledge-by-tag", &json!({ "tag_id": 999_999 })).await;
    assert_eq!(unknown.status, 404);
    // A whole number beyond any id is an unknown tag, as in a path; one written as a float is no id.
    for (tag_id, expected) in [
        ("9223372036854775808", 404),
        ("100000000000000000000", 404),
        ("-9223372036854775809", 404),
        ("3.0", 400),
        ("1e3", 400),
    ] {
        let body = format!(r#"{{"tag_id": {tag_id}}}"#);
        for (path, body) in [
            ("/api/updates/acknowledge-by-tag", body.clone()),
            ("/api/tag-assignments", format!(r#"{{"image": "{NGINX}", "tag_id": {tag_id}}}"#)),
        ] {
            let method = if path.ends_with("assignments") { "PUT" } else { "POST" };
            let response =
                app.request(method, path).header("Content-Type", "application/json").body(body).send().await;
            assert_eq!(response.status, expected, "{path} {tag_id}: {}", response.text());
        }
    }
    // An array is not an object, even one that reads as its fields in order.
    for bad in
        [json!({}), json!({ "tag_id": "1" }), json!({ "tag_id": 1.5 }), json!([]), json!([empty_tag, null])]
    {
        assert_eq!(app.api("POST", "/api/updates/acknowledge-by-tag", &bad).await.status, 400, "{bad}");
    }
}

/// Dismissing many (all, or a group) with `received_until` (the newest report the page showed)
/// leaves pending what arrived after it: the user has not seen it.
async fn dismissals_of_many_leave_newer_reports_pending(app: &TestApp) {
    for image in ["a:1", "b:1"] {
        app.webhook(&docker_event(image)).await;
    }
    let prod = app.create_tag("prod").await;
    for image in ["a:1", "b:1"] {
        app.api("PUT", "/api/tag-assignments", &json!({ "image": image, "tag_id": prod })).await;
    }
    let listed = app.updates().await;
    let shown = listed["b:1"]["received_at"].as_str().unwrap().to_string();
    assert!(listed["a:1"]["received_at"].as_str().unwrap() <= shown.as_str());
    let mut newer = docker_event("b:1");
    newer["digest"] = json!("sha256:newer");
    app.webhook(&newer).await;
    app.webhook(&docker_event("c:1")).await;
    let latest = app.updates().await["c:1"]["received_at"].as_str().unwrap().to_string();
    let pending = async || -> Vec<String> {
        let updates = app.updates().await;
        let entries = updates.as_object().unwrap();
        entries
            .iter()
            .filter(|(_, u)| u["acknowledged"] == json!(false))
            .map(|(image, _)| image.clone())
            .collect()
    };

    for bad in [
        json!({ "received_until": "yesterday" }),
        json!({ "received_until": 5 }),
        // A misspelt bound read as none would dismiss everything.
        json!({ "recieved_until": shown }),
        // Past the year 9999 in UTC: no canonical text, and SQLite compares the text.
        json!({ "received_until": "9999-12-31T23:59:59-05:00" }),
    ] {
        let refused = app.api("POST", "/api/updates/acknowledge-all", &bad).await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.text());
        let mut tagged = bad.clone();
        tagged["tag_id"] = json!(prod);
        assert_eq!(app.api("POST", "/api/updates/acknowledge-by-tag", &tagged).await.status, 400, "{tagged}");
    }
    assert_eq!(pending().await, ["a:1", "b:1", "c:1"], "a refused dismissal dismissed something");

    let by_tag = json!({ "tag_id": prod, "received_until": shown });
    let response = app.api("POST", "/api/updates/acknowledge-by-tag", &by_tag).await;
    assert_eq!(response.json(), json!({ "count": 1 }), "{}", response.text());
    assert_eq!(pending().await, ["b:1", "c:1"], "b's newer report was dismissed unseen");
    let history = app.get("/api/updates/b%3A1/history").await.json();
    assert_eq!(history["events"].as_array().unwrap().len(), 2, "both of b's reports: {history}");
    assert!(
        history["events"].as_array().unwrap().iter().all(|e| e["acknowledged_at"].is_null()),
        "b's history was acknowledged though its update is pending: {history}"
    );
    let all = app.api("POST", "/api/updates/acknowledge-all", &json!({ "received_until": shown })).await;
    assert_eq!(all.json(), json!({ "count": 0 }));
    assert_eq!(pending().await, ["b:1", "c:1"]);
    let all = app.api("POST", "/api/updates/acknowledge-all", &json!({ "received_until": latest })).await;
    assert_eq!(all.json(), json!({ "count": 2 }));
    assert!(pending().await.is_empty());
}

/// A report is stamped later than every report stored before it, whatever the system clock
/// says. Stamped by the clock alone, a report that came after the clock was set back (NTP
/// stepping it, a VM resumed) was older than one the page had shown, and "Dismiss all" up to
/// what was shown dismissed it unseen. Here the report shown was stamped an hour ahead.
async fn reports_are_stamped_after_every_stored_one(app: &TestApp) {
    let hour_ahead = |micros: i64| Timestamp::from_unix_micros(micros + 3_600_000_000);
    let ahead = hour_ahead(Timestamp::now().unix_micros());
    app.store.upsert_event(support::event_from_host("a:1", "nas"), Received::At(ahead)).await.unwrap();
    let shown = app.updates().await["a:1"]["received_at"].as_str().unwrap().to_string();
    assert_eq!(shown, ahead.to_string());
    assert_eq!(app.webhook(&docker_event("b:1")).await.status, 200);
    let later = app.updates().await["b:1"]["received_at"].as_str().unwrap().to_string();
    assert!(later > shown, "a report stamped {later}, before the {shown} shown");
    let all = app.api("POST", "/api/updates/acknowledge-all", &json!({ "received_until": shown })).await;
    assert_eq!(all.json(), json!({ "count": 1 }), "{}", all.text());
    assert_eq!(app.updates().await["b:1"]["acknowledged"], json!(false), "dismissed unseen");

    // A store opened again on the database (a restart) reads where its stamps must start.
    let further = hour_ahead(ahead.unix_micros());
    app.store.upsert_event(support::event_from_host("c:1", "nas"), Received::At(further)).await.unwrap();
    let reopened = Store::open(&app.db.database()).await.unwrap();
    reopened.upsert_event(support::event_from_host("d:1", "nas"), Received::Now).await.unwrap();
    reopened.close().await;
    let updates = app.updates().await;
    let (newest, restarted) = (&updates["c:1"]["received_at"], &updates["d:1"]["received_at"]);
    assert!(restarted.as_str() > newest.as_str(), "stamped {restarted} after a restart, before {newest}");

    // So does an acknowledgement stamped later still (by a clock further ahead): after a
    // restart, the next one must not be stamped before it, nor at the same microsecond.
    let furthest = hour_ahead(further.unix_micros());
    assert_eq!(app.store.acknowledge("c:1".into(), furthest, None).await.unwrap(), ImageOutcome::Done);
    let reopened = Store::open(&app.db.database()).await.unwrap();
    let stamp = reopened.receipt_time();
    reopened.close().await;
    assert!(stamp > furthest, "stamped {stamp} after a restart, before the acknowledgement at {furthest}");
}

async fn tags_are_created_trimmed_validated_and_unique(app: &TestApp) {
    let response = app.api("POST", "/api/tags", &json!({ "name": "  Production  " })).await;
    assert_eq!(response.status, 201);
    let tag = response.json();
    assert_eq!(tag["name"], json!("Production"));
    assert!(tag["id"].is_i64());
    let duplicate = app.api("POST", "/api/tags", &json!({ "name": "Production" })).await;
    assert_eq!(duplicate.status, 409);
    assert!(!duplicate.error().is_empty());
    for bad in [
        json!({ "name": "" }),
        json!({ "name": "   " }),
        json!({ "name": "x".repeat(101) }),
        json!({}),
        json!({ "name": 3 }),
        json!({ "name": "ok", "colour": "red" }),
    ] {
        assert_eq!(app.api("POST", "/api/tags", &bad).await.status, 400, "{bad}");
    }
    assert_eq!(app.api("POST", "/api/tags", &json!({ "name": "é".repeat(100) })).await.status, 201);
    assert_eq!(
        app.request("POST", "/api/tags")
            .body("{")
            .header("Content-Type", "application/json")
            .send()
            .await
            .status,
        400
    );
}

async fn tags_are_listed_by_name_case_insensitively(app: &TestApp) {
    for name in ["beta", "Alpha", "gamma", "Delta", "alpha2"] {
        app.create_tag(name).await;
    }
    let names: Vec<String> = app
        .get("/api/tags")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["Alpha", "alpha2", "beta", "Delta", "gamma"]);
}

async fn deleting_a_tag_untags_its_images_and_keeps_them(app: &TestApp) {
    app.webhook(&docker_event(NGINX)).await;
    let tag = app.create_tag("prod").await;
    let assigned = app.api("PUT", "/api/tag-assignments", &json!({ "image": NGINX, "tag_id": tag })).await;
    assert_eq!(assigned.status, 204);
    let response = app.request("DELETE", &format!("/api/tags/{tag}")).send().await;
    assert_eq!(response.status, 204);
    let updates = app.updates().await;
    assert_eq!(updates[NGINX]["tag"], Value::Null);
    assert_eq!(updates[NGINX]["event"]["image"], json!(NGINX));
    assert_eq!(app.get("/api/tags").await.json(), json!([]));
    // The assignment went with its tag: the listing's LEFT JOIN would hide one left behind.
    assert_eq!(app.db.count_rows("tag_assignments").await, 0);
    assert_eq!(app.request("DELETE", &format!("/api/tags/{tag}")).send().await.status, 404);
    for malformed in ["abc", "+1", "%31", "1.0", "", "-"] {
        let response = app.request("DELETE", &format!("/api/tags/{malformed}")).send().await;
        // An empty id is no route at all.
        let expected = if malformed.is_empty() { 405 } else { 400 };
        assert_eq!(response.status, expected, "{malformed:?}: {}", response.text());
    }
    // Numeric but beyond any id: no such tag, like any other unknown one.
    assert_eq!(app.request("DELETE", "/api/tags/99999999999999999999999").send().await.status, 404);
    assert_eq!(app.request("DELETE", "/api/tags/-3").send().await.status, 404);
    assert_eq!(app.request("GET", "/api/tags/1").send().await.status, 405);
}

async fn tag_assignment_replaces_and_reports_unknowns(app: &TestApp) {
    app.webhook(&docker_event(NGINX)).await;
    let one = app.create_tag("one").await;
    let two = app.create_tag("two").await;
    assert_eq!(
        app.api("PUT", "/api/tag-assignments", &json!({ "image": NGINX, "tag_id": one })).await.status,
        204
    );
    assert_eq!(
        app.api("PUT", "/api/tag-assignments", &json!({ "image": NGINX, "tag_id": two })).await.status,
        204
    );
    assert_eq!(app.updates().await[NGINX]["tag"], json!({ "id": two, "name": "two" }));

    let unknown_tag =
        app.api("PUT", "/api/tag-assignments", &json!({ "image": NGINX, "tag_id": 424_242 })).await;
    assert_eq!(unknown_tag.status, 404);
    let unknown_image =
        app.api("PUT", "/api/tag-assignments", &json!({ "image": "nope:1", "tag_id": one })).await;
    assert_eq!(unknown_image.status, 404);
    assert!(!unknown_image.error().is_empty());
    for bad in [json!({ "image": NGINX }), json!({ "tag_id": one }), json!({ "image": "", "tag_id": one })] {
        assert_eq!(app.api("PUT", "/api/tag-assignments", &bad).await.status, 400, "{bad}");
    }

    let removed = app.api("DELETE", "/api/tag-assignments", &json!({ "image": NGINX })).await;
    assert_eq!(removed.status, 204);
    assert_eq!(app.updates().await[NGINX]["tag"], Value::Null);
    assert_eq!(
        app.api("DELETE", "/api/tag-assignments", &json!({ "image": NGINX })).await.status,
        204,
        "also when none"
    );
    assert_eq!(
        app.request("DELETE", "/api/tag-assignments").body(r#"{"image":"nope:1"}"#).send().await.status,
        204
    );
    assert_eq!(app.get("/api/tag-assignments").await.status, 405);
}

async fn unknown_paths_are_404_and_wrong_methods_405_as_json(app: &TestApp) {
    for path in
        ["/nope", "/api", "/api/nope", "/api/updates/x/y/z/../q", "/webhook/extra", "/js/../../Cargo.toml"]
    {
        let response = app.get(path).await;
        if path == "/api/updates/x/y/z/../q" {
            assert_eq!(response.status, 405, "GET on an image path");
            continue;
        }
        assert_eq!(response.status, 404, "{path}");
        assert!(!response.error().is_empty());
    }
    for (method, path, allow) in [
        ("DELETE", "/api/updates", "GET, HEAD"),
        ("POST", "/api/updates", "GET, HEAD"),
        ("PUT", "/api/tags", "GET, HEAD, POST"),
        ("PATCH", "/healthz", "GET, HEAD"),
    ] {
        let response = app.request(method, path).send().await;
        assert_eq!(response.status, 405, "{method} {path}");
        assert_eq!(response.header("allow"), Some(allow), "{method} {path}");
        assert!(!response.error().is_empty());
    }
    // The method is checked before the image is decoded.
    for (method, path, allow) in [
        ("GET", "/api/updates/bad%FF", "PATCH, DELETE"),
        ("POST", "/api/updates/bad%FF/history", "GET, HEAD"),
    ] {
        let response = app.request(method, path).send().await;
        assert_eq!(response.status, 405, "{method} {path}: {}", response.text());
        assert_eq!(response.header("allow"), Some(allow), "{method} {path}");
    }
}

async fn cross_site_requests_are_refused(app: &TestApp) {
    app.webhook(&docker_event(NGINX)).await;
    app.webhook(&docker_event("redis:7")).await;
    let tag = app.create_tag("prod").await;
    let assigned =
        app.api("PUT", "/api/tag-assignments", &json!({ "image": "redis:7", "tag_id": tag })).await;
    assert_eq!(assigned.status, 204);
    let foreign = "http://evil.example";
    // Every route that changes something, each refused on its own.
    let attempts = [
        app.request("PATCH", &format!("/api/updates/{}", encode(NGINX))).header("Origin", foreign),
        app.request("DELETE", &format!("/api/updates/{}", encode("redis:7"))).header("Origin", foreign),
        app.request("POST", "/api/updates/acknowledge-all")
            .header("Origin", foreign)
            .header("Content-Type", "application/json"),
        app.request("POST", "/api/updates/acknowledge-by-tag")
            .header("Sec-Fetch-Site", "cross-site")
            .json(&json!({ "tag_id": tag })),
        app.request("POST", "/api/tags").header("Origin", foreign).json(&json!({ "name": "evil" })),
        app.request("DELETE", &format!("/api/tags/{tag}")).header("Origin", foreign),
        app.request("PUT", "/api/tag-assignments")
            .header("Origin", "null")
            .json(&json!({ "image": NGINX, "tag_id": tag })),
        app.request("DELETE", "/api/tag-assignments")
            .header("Origin", foreign)
            .json(&json!({ "image": "redis:7" })),
    ];
    for attempt in attempts {
        let response = attempt.send().await;
        assert_eq!(response.status, 403, "{}", response.text());
        assert!(!response.error().is_empty(), "{}", response.text());
    }
    for (method, path, content_type) in [
        ("POST", "/api/updates/acknowledge-all", "text/plain"),
        ("POST", "/api/updates/acknowledge-by-tag", "text/plain"),
        ("POST", "/api/tags", "application/x-www-form-urlencoded"),
        ("PUT", "/api/tag-assignments", "multipart/form-data; boundary=x"),
    ] {
        let body = json!({ "name": "x", "image": NGINX, "tag_id": tag }).to_string();
        let response = app.request(method, path).header("Content-Type", content_type).body(body).send().await;
        assert_eq!(response.status, 415, "{method} {path}");
    }
    let updates = app.updates().await;
    assert_eq!(updates[NGINX]["acknowledged"], json!(false), "nothing changed");
    assert_eq!(updates[NGINX]["tag"], Value::Null);
    assert_eq!(updates["redis:7"]["acknowledged"], json!(false));
    assert_eq!(updates["redis:7"]["tag"]["id"], json!(tag));
    assert_eq!(app.get("/api/tags").await.json().as_array().unwrap().len(), 1);

    let own_origin = format!("http://{}", app.addr);
    let response = app
        .request("PATCH", &format!("/api/updates/{}", encode(NGINX)))
        .header("Origin", &own_origin)
        .send()
        .await;
    assert_eq!(response.status, 204, "the dashboard's own origin is welcome");

    // The webhook too, without a secret: DIUN sends no Origin, a browser always does, so a page
    // elsewhere cannot post events through the admin's browser (a text/plain body needs no
    // preflight).
    for (name, value) in [("Origin", foreign), ("Sec-Fetch-Site", "cross-site")] {
        let webhook = app
            .request("POST", "/webhook")
            .header(name, value)
            .body(docker_event("x:1").to_string())
            .send()
            .await;
        assert_eq!(webhook.status, 403, "{name}: {}", webhook.text());
        assert!(!webhook.error().is_empty());
    }
    assert!(app.updates().await.get("x:1").is_none(), "a refused webhook stored nothing");
    let webhook = app
        .request("POST", "/webhook")
        .header("Origin", &own_origin)
        .body(docker_event("x:1").to_string())
        .send()
        .await;
    assert_eq!(webhook.status, 200, "the dashboard's own origin is welcome: {}", webhook.text());
}

async fn hundreds_of_concurrent_webhooks_are_all_kept(app: &TestApp) {
    let sends = (0..300).map(|i| {
        let event = docker_event(&format!("registry.example/app{i}:1.{i}"));
        async move { app.webhook(&event).await.status }
    });
    let statuses = join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let same_image = (0..50).map(|i| {
        let mut event = docker_event(NGINX);
        event["digest"] = json!(format!("sha256:{i}"));
        async move { app.webhook(&event).await.status }
    });
    assert!(join_all(same_image).await.iter().all(|s| *s == 200));
    let updates = app.updates().await;
    assert_eq!(updates.as_object().unwrap().len(), 301);
    for i in 0..300 {
        assert!(updates.get(format!("registry.example/app{i}:1.{i}")).is_some(), "app{i} lost");
    }
    // Batched together or not, every event is in the history and the newest is the update.
    let history = app.store.history(NGINX.into(), None, 500).await.unwrap().unwrap();
    assert_eq!(history.len(), 50);
    let mut digests: Vec<&str> = history.iter().map(|event| event.digest.as_str()).collect();
    assert_eq!(updates[NGINX]["event"]["digest"], json!(digests[0]), "the last stored event wins");
    digests.sort_unstable();
    digests.dedup();
    assert_eq!(digests.len(), 50, "no event stored twice");
}

async fn security_headers_are_on_every_response(app: &TestApp) {
    let cross_site = app
        .request("POST", "/api/tags")
        .header("Origin", "http://evil.example")
        .json(&json!({ "name": "x" }))
        .send()
        .await;
    assert_eq!(cross_site.status, 403);
    let too_large = app
        .request("POST", "/api/tags")
        .header("Content-Type", "application/json")
        .body(vec![b' '; 1024 * 1024 + 1])
        .send()
        .await;
    assert_eq!(too_large.status, 413);
    let wrong_method = app.request("DELETE", "/api/updates").send().await;
    assert_eq!(wrong_method.status, 405);
    let mut responses =
        vec![("403", cross_site), ("413", too_large), ("405", wrong_method), ("404", app.get("/nope").await)];
    for path in ["/", "/js/app.js", "/app.css", "/healthz", "/api/updates", "/api/tags"] {
        let response = app.get(path).await;
        assert_eq!(response.status, 200, "{path}");
        responses.push((path, response));
    }
    assert_eq!(responses.len(), 10);
    for (what, response) in &responses {
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"), "{what}");
        assert_eq!(response.header("referrer-policy"), Some("no-referrer"), "{what}");
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{what}");
        let csp = response.header("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        // SECURITY.md: only the page's own scripts, styles, images and connections; no framing,
        // no <base>, forms only to itself; no inline script.
        for promised in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(directives.contains(&promised), "{what}: {promised:?} missing from {csp:?}");
        }
        assert!(!csp.contains("unsafe"), "{what}: {csp:?}");
    }
}

/// `GET /api/updates` is written straight from the rows; it must say exactly what the stored
/// entries say through their `Serialize`, in image order, plain and gzip alike.
async fn the_listing_is_the_stored_entries_in_image_order(app: &TestApp) {
    let images = ["b/two:1", "a/one:1", "B/upper:1", "c/ünï:1", "a/one:2", "z\"q\\:1"];
    for (i, image) in images.iter().enumerate() {
        let mut event = docker_event(image);
        match i % 3 {
            0 => event["metadata"] = Value::Null,
            1 => event["metadata"]["nested"] = json!({ "list": [1, 2.5, -0.0, null, "x\u{1}\n"], "t": true }),
            _ => event["created"] = Value::Null,
        }
        if i % 2 == 0 {
            event["future_field"] = json!({ "k": [1, { "deep": "é" }] });
            event["another"] = json!(12345678901234567890u64);
        }
        assert_eq!(app.webhook(&event).await.status, 200);
    }
    let tag = app.create_tag("home \"lab\"").await;
    let assigned = json!({ "image": images[1], "tag_id": tag });
    assert_eq!(app.api("PUT", "/api/tag-assignments", &assigned).await.status, 204);
    assert_eq!(app.request("PATCH", "/api/updates/c%2F%C3%BCn%C3%AF%3A1").send().await.status, 204);

    let entries = app.store.list_updates().await.unwrap();
    let expected: serde_json::Map<String, Value> = entries
        .iter()
        .map(|entry| (entry.event.image.clone(), serde_json::to_value(entry).unwrap()))
        .collect();
    let plain = app.get("/api/updates").await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.json(), Value::Object(expected));
    let mut sorted = images.map(str::to_owned);
    sorted.sort();
    assert_eq!(support::top_level_keys(&plain.body), sorted);
    let gzip = app.request("GET", "/api/updates").header("Accept-Encoding", "gzip").send().await;
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(support::gunzip(&gzip.body).unwrap(), plain.body);
}

/// An acknowledgement is stamped after every report it covers, also one stamped by a clock
/// ahead of this machine's (another replica's, or this one's before it was set back): neither
/// "acknowledged at" nor the history's marks, which compare the two, come before the report.
async fn an_acknowledgement_comes_after_the_reports_it_covers(app: &TestApp) {
    let hour = 3_600_000_000;
    let ahead = |hours: i64| Timestamp::from_unix_micros(Timestamp::now().unix_micros() + hours * hour);
    let group = app.create_tag("ahead").await;
    for (image, hours) in [("one:1", 1), ("all:1", 2), ("group:1", 3)] {
        let event = support::event_from_host(image, "nas");
        app.store.upsert_event(event, Received::At(ahead(hours))).await.expect("stored");
    }
    let assigned = json!({ "image": "group:1", "tag_id": group });
    assert_eq!(app.api("PUT", "/api/tag-assignments", &assigned).await.status, 204);
    let acknowledged = async |image: &str| {
        let updates = app.updates().await;
        let entry = &updates[image];
        let (received, acknowledged) = (entry["received_at"].as_str(), entry["acknowledged_at"].as_str());
        assert!(
            acknowledged > received,
            "{image}: acknowledged at {acknowledged:?}, received at {received:?}"
        );
    };
    assert_eq!(app.request("PATCH", "/api/updates/one%3A1").send().await.status, 204);
    acknowledged("one:1").await;
    let by_group = app.api("POST", "/api/updates/acknowledge-by-tag", &json!({ "tag_id": group })).await;
    assert_eq!(by_group.json(), json!({ "count": 1 }));
    acknowledged("group:1").await;
    assert_eq!(
        app.api("POST", "/api/updates/acknowledge-all", &json!({})).await.json(),
        json!({ "count": 1 })
    );
    acknowledged("all:1").await;
}

on_every_backend!(
    healthz_reports_the_backend,
    an_acknowledgement_comes_after_the_reports_it_covers,
    empty_store_lists_an_empty_object,
    webhook_stores_every_field,
    every_provider_payload_round_trips,
    null_created_and_metadata_and_minimal_events_are_accepted,
    bad_webhook_bodies_get_400_and_store_nothing,
    webhook_accepts_chunked_bodies_without_content_type,
    oversized_bodies_get_413_chunked_or_not,
    a_client_that_sends_everything_first_still_reads_its_413,
    get_on_webhook_explains_the_diun_method_setting,
    upsert_overwrites_fields_clears_acknowledgement_and_keeps_the_tag,
    acknowledging_one_update,
    an_acknowledgement_of_a_report_since_replaced_is_refused,
    removing_an_update_forgets_it_with_its_group_and_history,
    acknowledge_all_counts_newly_acknowledged,
    acknowledge_by_tag_touches_only_that_group,
    dismissals_of_many_leave_newer_reports_pending,
    reports_are_stamped_after_every_stored_one,
    tags_are_created_trimmed_validated_and_unique,
    tags_are_listed_by_name_case_insensitively,
    deleting_a_tag_untags_its_images_and_keeps_them,
    tag_assignment_replaces_and_reports_unknowns,
    unknown_paths_are_404_and_wrong_methods_405_as_json,
    cross_site_requests_are_refused,
    hundreds_of_concurrent_webhooks_are_all_kept,
    security_headers_are_on_every_response,
    the_listing_is_the_stored_entries_in_image_order,
);

/// `/healthz` answers for the writer too: while another process keeps SQLite's write lock, no
/// webhook can be stored, and the check, a read on a reader, said all was well.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_while_no_webhook_could_be_stored() {
    let app = TestApp::sqlite().await;
    let diun_dashboard::config::Database::Sqlite { path } = app.db.database() else { unreachable!() };
    let holder = rusqlite::Connection::open(&path).unwrap();
    // The service's checkpointer may hold the lock a moment: waited for, as the service would.
    holder.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let health = app.get("/healthz").await;
    assert_eq!(health.status, 503, "{}", health.text());
    assert!(health.error().contains("another process holds the file's write lock"), "{}", health.text());
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(app.get("/healthz").await.status, 200);
    app.stop().await;
}

/// The secret needs its own server, so it runs outside the per-backend list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secret_is_required_when_set() {
    let Some(db) = support::TestDb::any().await else { return };
    let app = TestApp::start(db, Some("s3cret")).await;
    let body = docker_event(NGINX).to_string();
    let missing = app.request("POST", "/webhook").body(body.clone()).send().await;
    assert_eq!(missing.status, 401);
    assert!(!missing.error().is_empty());
    for wrong in ["s3cre", "s3cret2", "Bearer s3cret", "S3CRET"] {
        let response =
            app.request("POST", "/webhook").header("Authorization", wrong).body(body.clone()).send().await;
        assert_eq!(response.status, 401, "{wrong}");
    }
    assert_eq!(app.updates().await, json!({}));
    // The secret decides, whatever a relay in between adds: a web page cannot know it.
    let foreign = [("Origin", "https://relay.example"), ("Sec-Fetch-Site", "cross-site")];
    for (secret, expected) in [("s3cre", 401), ("s3cret", 200)] {
        for (name, value) in foreign {
            let response = app
                .request("POST", "/webhook")
                .header(name, value)
                .header("Authorization", secret)
                .body(body.clone())
                .send()
                .await;
            assert_eq!(response.status, expected, "{secret:?} with {name}: {}", response.text());
        }
        if expected == 401 {
            assert_eq!(app.updates().await, json!({}));
        }
    }
    let right =
        app.request("POST", "/webhook").header("Authorization", "s3cret").body(body.clone()).send().await;
    assert_eq!(right.status, 200);
    assert_eq!(
        app.request("GET", "/api/updates").send().await.status,
        200,
        "the API is not behind the secret"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_credentials_guard_the_dashboard_and_api_but_not_webhook_or_healthz() {
    let Some(db) = support::TestDb::any().await else { return };
    let password = diun_dashboard::config::Secret::new("pa55");
    let app = TestApp::start_configured(db.database(), db, |store| {
        diun_dashboard::http::AppState::new(store, None).with_dashboard_credentials("admin", &password)
    })
    .await;
    let guarded = [
        ("GET", "/"),
        ("GET", "/js/app.js"),
        ("GET", "/api/updates"),
        ("GET", "/api/summary"),
        ("GET", "/api/hosts"),
        ("GET", "/api/stream"),
        ("GET", "/api/tags"),
        ("GET", "/api/updates/x%3A1/history"),
        ("GET", "/metrics"),
        ("GET", "/nope"),
        ("POST", "/api/tags"),
        ("POST", "/api/updates/acknowledge-all"),
        ("POST", "/api/updates/acknowledge-by-tag"),
        ("PUT", "/api/tag-assignments"),
        ("DELETE", "/api/tag-assignments"),
        ("DELETE", "/api/tags/1"),
        ("PATCH", "/api/updates/x%3A1"),
    ];
    for (method, path) in guarded {
        let response =
            app.request(method, path).header("Content-Type", "application/json").body("{}").send().await;
        assert_eq!(response.status, 401, "{method} {path}");
        assert!(
            response.header("www-authenticate").is_some_and(|h| h.starts_with("Basic")),
            "{method} {path}"
        );
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{method} {path}");
        assert!(!response.error().is_empty(), "{method} {path}");
    }
    let wrong =
        app.request("GET", "/api/updates").header("Authorization", "Basic YWRtaW46bm9wZQ==").send().await;
    assert_eq!(wrong.status, 401);

    assert_eq!(app.get("/healthz").await.status, 200, "health checks need no password");
    assert_eq!(app.webhook(&docker_event(NGINX)).await.status, 200, "DIUN needs no dashboard password");
    let right =
        app.request("GET", "/api/updates").header("Authorization", "Basic YWRtaW46cGE1NQ==").send().await;
    assert_eq!(right.status, 200);
    assert!(right.json().get(NGINX).is_some());
    app.stop().await;
}

/// Webhooks that arrive together share a transaction on PostgreSQL (one statement, one WAL
/// flush for many), which is what ingest under load rests on. The rows one transaction writes
/// all carry its id in `xmin`, so the history tells how many transactions stored it.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_webhooks_share_postgres_transactions() {
    const WEBHOOKS: i64 = 64;
    let Some(running) = TestApp::postgres().await else { return };
    let app = &running;
    let sends = (0..WEBHOOKS).map(|i| {
        let event = docker_event(&format!("registry.example/batched{i}:1"));
        async move { app.webhook(&event).await.status }
    });
    assert!(join_all(sends).await.iter().all(|status| *status == 200));
    let rows = app.db.query("SELECT count(*), count(DISTINCT xmin::text) FROM events").await;
    let (events, transactions): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    assert_eq!(events, WEBHOOKS, "every webhook in the history");
    eprintln!("{WEBHOOKS} concurrent webhooks were stored by {transactions} transaction(s)");
    // One each would be 64; batching gives a handful. Half leaves room for a slow client.
    assert!(transactions <= WEBHOOKS / 2, "{transactions} transactions for {WEBHOOKS} concurrent webhooks");
    running.stop().await;
}
