//! The web UI, embedded in the binary: `/` is `index.html`, every other file under `assets/`
//! is served at its own path, with an ETag so browsers revalidate cheaply.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use include_dir::{Dir, include_dir};
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::path::Tail;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::{gzip, only_reads};

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
    if let Err(wrong_method) = only_reads(&method) {
        return Ok(wrong_method.into_response());
    }
    let prepared = prepared(path, content, content_type);
    // Both forms are shared, not copied: the embedded file is static and the gzip form lives
    // in the cache for the life of the process.
    let (body, etag, encoded) = match &prepared.gzip {
        Some((compressed, etag)) if gzip::accepted(&headers) => (compressed.clone(), etag, true),
        _ => (Bytes::from_static(content), &prepared.etag, false),
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        // If-None-Match compares weakly (RFC 9110 §13.1.2): `W/"x"` matches `"x"`.
        .is_some_and(|tags| {
            tags.split(',')
                .map(str::trim)
                .any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == etag.as_str() || tag == "*")
        });
    let mut response = if fresh {
        warp::reply::with_status(warp::reply(), StatusCode::NOT_MODIFIED).into_response()
    } else {
        let mut response = Response::new(body.into());
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    if prepared.gzip.is_some() {
        if encoded {
            gzip::mark_encoded(headers);
        } else {
            gzip::mark_negotiated(headers);
        }
    }
    // Names carry no content hash, so browsers must revalidate; the ETag makes that cheap.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// What is worked out once per file: its ETag, and its gzip form with its own ETag when the
/// type compresses and gzip makes it smaller.
struct Prepared {
    etag: String,
    gzip: Option<(Bytes, String)>,
}

fn prepared(path: &str, content: &'static [u8], content_type: &str) -> Arc<Prepared> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Prepared>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = cache.get(path) {
        return Arc::clone(known);
    }
    let entry = cache.entry(path.to_string()).or_insert_with(|| {
        let hash = fnv1a(content);
        let compressible = content_type.starts_with("text/")
            || content_type.contains("json")
            || content_type.contains("svg");
        let gzip = compressible
            .then(|| gzip::compress(content, gzip::Effort::Small))
            .filter(|compressed| compressed.len() < content.len())
            .map(|compressed| (Bytes::from(compressed), format!("\"{hash:016x}-gz\"")));
        Arc::new(Prepared { etag: format!("\"{hash:016x}\""), gzip })
    });
    Arc::clone(entry)
}

fn fnv1a(content: &[u8]) -> u64 {
    content
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
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
    fn files_get_an_etag_each_and_a_smaller_gzip_form_when_text() {
        let text: &'static [u8] = b"body { color: red; } body { color: red; } body { color: red; }";
        let css = prepared("test/a.css", text, "text/css; charset=utf-8");
        let (compressed, gzip_etag) = css.gzip.as_ref().expect("text compresses");
        assert!(compressed.len() < text.len());
        assert_ne!(*gzip_etag, css.etag, "each representation has its own ETag");
        let png = prepared("test/b.png", b"\x89PNG not really", "image/png");
        assert!(png.gzip.is_none(), "images are not compressed again");
        assert_ne!(png.etag, css.etag);
    }
}
