//! The embedded dashboard: content types, cache validators and gzip.

mod support;

use support::TestApp;

async fn assets_are_served_with_types_validators_and_gzip(app: &TestApp) {
    for (path, content_type) in [
        ("/", "text/html"),
        ("/app.css", "text/css"),
        ("/js/app.js", "text/javascript"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let plain = app.get(path).await;
        assert_eq!(plain.status, 200, "{path}");
        assert!(plain.header("content-type").is_some_and(|ct| ct.starts_with(content_type)), "{path}");
        assert_eq!(plain.header("content-encoding"), None, "{path}: gzip only when accepted");
        let file = if path == "/" { "/index.html" } else { path };
        let on_disk = std::fs::read(format!("{}/assets{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(plain.body == on_disk, "{path}: the embedded file, whole");
        let etag = plain.header("etag").expect("an ETag").to_string();

        let gzipped = app.request("GET", path).header("Accept-Encoding", "gzip, br").send().await;
        assert_eq!(gzipped.header("content-encoding"), Some("gzip"), "{path}");
        assert!(gzipped.header("vary").is_some_and(|v| v.eq_ignore_ascii_case("accept-encoding")));
        assert!(gzipped.body.len() < plain.body.len(), "{path}");
        assert_eq!(support::gunzip(&gzipped.body).unwrap(), plain.body, "{path}: the same content");
        let gzip_etag = gzipped.header("etag").expect("an ETag").to_string();
        assert_ne!(gzip_etag, etag, "each encoding is its own representation");

        let revalidated = app.request("GET", path).header("If-None-Match", &etag).send().await;
        assert_eq!(revalidated.status, 304, "{path}");
        assert!(revalidated.body.is_empty());
        let weakly =
            app.request("GET", path).header("If-None-Match", &format!("\"x\", W/{etag}")).send().await;
        assert_eq!(weakly.status, 304, "{path}: If-None-Match compares weakly");
        let stale = app.request("GET", path).header("If-None-Match", "\"other\"").send().await;
        assert_eq!(stale.status, 200);
    }
    assert_eq!(app.request("POST", "/app.css").send().await.status, 405);
    assert_eq!(app.get("/ICONS.md").await.status, 404, "only web assets are served");
}

async fn the_listing_is_gzipped_when_accepted(app: &TestApp) {
    for i in 0..50 {
        app.webhook(&support::docker_event(&format!("reg.example/app{i}:1"))).await;
    }
    let plain = app.get("/api/updates").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    let gzipped = app.request("GET", "/api/updates").header("Accept-Encoding", "gzip").send().await;
    assert_eq!(gzipped.status, 200);
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert!(gzipped.body.len() * 4 < plain.body.len(), "{} vs {}", gzipped.body.len(), plain.body.len());
    let unpacked = support::gunzip(&gzipped.body).unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&unpacked).unwrap(), plain.json());

    // The hosts grow with the images too (about 1.4 MB for 5,000).
    let plain = app.get("/api/hosts").await;
    assert_eq!((plain.status, plain.header("content-encoding")), (200, None));
    assert!(plain.header("vary").is_some_and(|v| v.eq_ignore_ascii_case("accept-encoding")));
    let gzipped = app.request("GET", "/api/hosts").header("Accept-Encoding", "gzip").send().await;
    assert_eq!((gzipped.status, gzipped.header("content-encoding")), (200, Some("gzip")));
    assert_eq!(gzipped.header("content-type"), Some("application/json"));
    assert!(support::gunzip(&gzipped.body).unwrap() == plain.body, "the same text, compressed");
    assert_eq!(plain.json().as_object().map(|hosts| hosts.len()), Some(50));
}

on_every_backend!(assets_are_served_with_types_validators_and_gzip, the_listing_is_gzipped_when_accepted);

/// Safari before 16.4 (an older iPad kept as a wall panel, say) cannot parse a regular
/// expression with a lookbehind, and one module it cannot parse stops the whole page.
#[test]
fn the_scripts_use_no_regex_lookbehind() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/js");
    let mut read = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for lookbehind in ["(?<=", "(?<!"] {
            assert!(!text.contains(lookbehind), "{}: a lookbehind {lookbehind}", path.display());
        }
        read += 1;
    }
    assert!(read > 10, "the scripts were not found in {dir}");
}
