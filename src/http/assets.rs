//! The web UI, embedded in the binary: `/` is `index.html`, every other file under `assets/`
//! is served at its own path, with an ETag so browsers revalidate cheaply.

use std::collections::HashMap;
use std::sync::OnceLock;

use include_dir::{Dir, include_dir};
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::path::Tail;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::error::ApiError;
use super::is_read;

static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets");

pub fn route() -> BoxedFilter<(Response,)> {
    warp::path::tail().and(warp::method()).and(warp::header::headers_cloned()).and_then(serve).boxed()
}

async fn serve(tail: Tail, method: Method, headers: HeaderMap) -> Result<Response, Rejection> {
    let path = match tail.as_str() {
        "" => "index.html",
        other => other,
    };
    let (content, content_type) = find(path).ok_or_else(warp::reject::not_found)?;
    if !is_read(&method) {
        return Ok(ApiError::method_not_allowed("GET").into_response());
    }
    let etag = etag(path, content);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if fresh {
        warp::reply::with_status(warp::reply(), StatusCode::NOT_MODIFIED).into_response()
    } else {
        let mut response = Response::new(content.to_vec().into());
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    // Names carry no content hash, so browsers must revalidate; the ETag makes that cheap.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The embedded file at `path` and its media type. Only plain relative paths to files of a
/// known type are served: no `..`, no absolute paths, no other files.
fn find(path: &str) -> Option<(&'static [u8], &'static str)> {
    if path.starts_with('/')
        || path.contains('\\')
        || path.split('/').any(|part| part.is_empty() || part == "." || part == "..")
    {
        return None;
    }
    let content_type = content_type(path)?;
    Some((ASSETS.get_file(path)?.contents(), content_type))
}

fn content_type(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// A strong ETag per file (FNV-1a of its bytes), computed once.
fn etag(path: &str, content: &[u8]) -> &'static str {
    static TAGS: OnceLock<std::sync::Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let tags = TAGS.get_or_init(Default::default);
    let mut tags = tags.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    tags.entry(path.to_string()).or_insert_with(|| {
        let hash = content.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        Box::leak(format!("\"{hash:016x}\"").into_boxed_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_unknown_types_are_not_served() {
        for path in
            ["../Cargo.toml", "js/../../Cargo.toml", "/etc/passwd", "..", "a//b.js", "js\\x.js", "ICONS.md"]
        {
            assert!(find(path).is_none(), "{path} must not be served");
        }
    }

    #[test]
    fn media_types_follow_the_extension() {
        assert_eq!(content_type("index.html"), Some("text/html; charset=utf-8"));
        assert_eq!(content_type("js/app.js"), Some("text/javascript; charset=utf-8"));
        assert_eq!(content_type("README"), None);
    }

    #[test]
    fn etags_change_with_content() {
        assert_ne!(etag("a-test-file", b"one"), etag("b-test-file", b"two"));
        assert_eq!(etag("a-test-file", b"one"), etag("a-test-file", b"one"));
    }
}
