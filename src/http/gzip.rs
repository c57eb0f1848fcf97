//! gzip for response bodies, when the client accepts it (RFC 9110 §12.5.3).
//!
//! flate2 on its zlib-rs backend: pure Rust like miniz_oxide, and several times faster at the
//! fast levels, which is what a listing of thousands of images compressed per request needs.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use warp::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, HeaderMap, HeaderValue, VARY};

/// How hard to compress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    /// For what is compressed per request: most of the gain for a fraction of the time.
    Fast,
    /// For what is compressed once and kept (embedded assets).
    Small,
}

impl Effort {
    fn level(self) -> Compression {
        match self {
            Effort::Fast => Compression::fast(),
            Effort::Small => Compression::best(),
        }
    }
}

/// Whether the request's `Accept-Encoding` allows gzip: `gzip` (or `x-gzip`, or `*` when gzip
/// itself is not named) listed without `q=0`.
pub fn accepted(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    let values = headers.get_all(ACCEPT_ENCODING).into_iter().filter_map(|value| value.to_str().ok());
    for item in values.flat_map(|value| value.split(',')) {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, q)| q.trim().parse::<f32>().unwrap_or(0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(weight > 0.0);
        } else if coding == "*" {
            any = Some(weight > 0.0);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// A gzip stream writing into a buffer of `capacity` bytes; `finish()` returns the buffer.
pub fn writer(effort: Effort, capacity: usize) -> GzEncoder<Vec<u8>> {
    GzEncoder::new(Vec::with_capacity(capacity), effort.level())
}

/// `data` compressed (for the embedded assets, compressed once).
pub fn compress(data: &[u8], effort: Effort) -> Vec<u8> {
    let mut gzip = writer(effort, data.len() / 4 + 64);
    // Writing into a Vec cannot fail.
    let _ = gzip.write_all(data);
    gzip.finish().unwrap_or_default()
}

/// Marks a response whose body is gzip: `Content-Encoding`, and `Vary` for caches.
pub fn mark_encoded(headers: &mut HeaderMap) {
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    mark_negotiated(headers);
}

/// Marks a response whose encoding depended on `Accept-Encoding` (`Vary`), compressed or not.
pub fn mark_negotiated(headers: &mut HeaderMap) {
    headers.append(VARY, HeaderValue::from_static("accept-encoding"));
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn accepts(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        accepted(&headers)
    }

    #[test]
    fn gzip_is_accepted_only_when_the_client_says_so() {
        assert!(accepts("gzip"));
        assert!(accepts("gzip, deflate, br, zstd"));
        assert!(accepts("br;q=1.0, GZip;q=0.5"));
        assert!(accepts("x-gzip"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip; q=0.000"));
        assert!(!accepts("*, gzip;q=0"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts("identity"));
        assert!(!accepted(&HeaderMap::new()));
    }

    #[test]
    fn compressed_data_decompresses_to_the_original() {
        let data = br#"{"docker.io/library/nginx:1.27":{"acknowledged":false}}"#.repeat(100);
        for effort in [Effort::Fast, Effort::Small] {
            let compressed = compress(&data, effort);
            assert!(compressed.len() < data.len() / 10, "{effort:?}: {} bytes", compressed.len());
            let mut restored = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut restored).unwrap();
            assert_eq!(restored, data);
        }
    }
}
