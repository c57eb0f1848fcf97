//! Optional HTTP Basic authentication for the dashboard and `/api` (`DASHBOARD_USERNAME` and
//! `DASHBOARD_PASSWORD`). `/webhook` keeps its own secret and `/healthz` stays open, so DIUN
//! and container health checks need no dashboard credentials.

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, header};

use crate::config::Secret;

/// The rejection for a missing or wrong password; rendered as 401 by the recovery handler.
#[derive(Debug)]
pub struct Unauthorized;

impl warp::reject::Reject for Unauthorized {}

/// Passes the request on when no credentials are configured or the right ones were sent.
pub fn required(credentials: Option<Arc<Secret>>) -> BoxedFilter<()> {
    // Without credentials (the usual setup) requests pay nothing, not even a header copy.
    let Some(expected) = credentials else { return warp::any().boxed() };
    warp::header::headers_cloned()
        .and_then(move |headers: HeaderMap| {
            let authorized = has_credentials(&headers, &expected);
            async move { if authorized { Ok(()) } else { Err(warp::reject::custom(Unauthorized)) } }
        })
        .untuple_one()
        .boxed()
}

fn has_credentials(headers: &HeaderMap, expected: &Secret) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) else {
        return false;
    };
    let Some(split) = value.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, token) = value.split_at(split);
    scheme.eq_ignore_ascii_case(b"basic")
        && constant_time_eq(token.trim_ascii(), expected.expose().as_bytes())
}

/// The token a browser sends for these credentials: base64 of `username:password`.
pub fn basic_token(username: &str, password: &str) -> Secret {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{username}:{password}").into_bytes();
    let mut encoded = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let bytes = [group[0], group.get(1).copied().unwrap_or(0), group.get(2).copied().unwrap_or(0)];
        let bits = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                encoded.push(ALPHABET[(bits >> shift & 0x3f) as usize] as char);
            } else {
                encoded.push('=');
            }
        }
    }
    Secret::new(encoded)
}

/// Takes time independent of where the inputs differ, so a secret cannot be guessed byte by
/// byte from response times.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for i in 0..given.len().max(expected.len()) {
        let a = given.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        difference |= usize::from(a ^ b);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_tokens_match_rfc_4648_base64() {
        assert_eq!(basic_token("Aladdin", "open sesame").expose(), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic_token("a", "").expose(), "YTo=");
        assert_eq!(basic_token("ab", "c").expose(), "YWI6Yw==");
        assert_eq!(basic_token("abc", "de").expose(), "YWJjOmRl");
        assert_eq!(basic_token("ü", "ß").expose(), "w7w6w58=");
    }

    #[test]
    fn credentials_are_checked_exactly_with_any_scheme_case() {
        let expected = basic_token("admin", "pw");
        let headers = |value: &str| -> HeaderMap {
            [(header::AUTHORIZATION, value.parse().unwrap())].into_iter().collect()
        };
        assert!(has_credentials(&headers("Basic YWRtaW46cHc="), &expected));
        assert!(has_credentials(&headers("basic YWRtaW46cHc="), &expected));
        assert!(!has_credentials(&headers("Basic YWRtaW46cHd4"), &expected));
        assert!(!has_credentials(&headers("Bearer YWRtaW46cHc="), &expected));
        assert!(!has_credentials(&headers("YWRtaW46cHc="), &expected));
        assert!(!has_credentials(&HeaderMap::new(), &expected));
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret "));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(constant_time_eq(b"", b""));
    }
}
