//! Cross-site request forgery protection for the mutating `/api` routes (SPEC §4.5).
//!
//! A page on another site can make a browser send simple requests (form or text bodies, no
//! custom headers) without asking first. Refusing a foreign `Origin`, and requiring
//! `Content-Type: application/json` on POST and PUT, leaves such a page nothing to send.

use warp::http::{HeaderMap, Method, StatusCode, header};

use super::error::ApiError;

pub fn check_mutation(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if !(method == Method::POST
        || method == Method::PUT
        || method == Method::PATCH
        || method == Method::DELETE)
    {
        return Ok(());
    }
    check_origin(headers)?;
    if (method == Method::POST || method == Method::PUT) && !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    Ok(())
}

/// Refuses a request a browser sent from a page of another origin (403). A request without
/// `Origin`, as DIUN and curl send them, passes.
pub fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        Some(origin) if !is_same_origin(origin.to_str().unwrap_or("null"), headers) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, cross_origin_refusal(origin, headers)))
        }
        // Browsers that omit Origin still say where a request comes from.
        None if headers.get("sec-fetch-site").is_some_and(|site| site == "cross-site") => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "cross-site request refused"))
        }
        _ => Ok(()),
    }
}

/// Whether a web browser sent this request: browsers name the page's origin on every POST and
/// say where a request comes from (`Sec-Fetch-Site`); DIUN and curl send neither. Not
/// `Sec-Fetch-Mode`: Node's own `fetch` sends that one on every request, a relay's too. A relay
/// that adds an `Origin` of its own is taken for a browser here: its refusals are in the log
/// only, not on the dashboard.
pub fn sent_by_a_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Why a request from another origin is refused. The commonest cause is not an attack but a
/// reverse proxy that sends the service its own upstream address as `Host` (nginx does unless
/// told otherwise), so the message says which host was compared and how to fix that.
fn cross_origin_refusal(origin: &header::HeaderValue, headers: &HeaderMap) -> String {
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let origin = crate::logging::clipped(&origin);
    let served = served_hosts(headers).map(crate::logging::clipped).collect::<Vec<_>>().join(", ");
    let served = crate::logging::clipped(&served);
    let message = format!(
        "cross-origin request refused: Origin {origin:?} is not this server ({served:?}); behind a reverse \
         proxy, pass the original host on (nginx: proxy_set_header Host $http_host;)"
    );
    static REFUSALS: crate::logging::Throttle = crate::logging::Throttle::new();
    if let Some(unsaid) = REFUSALS.say() {
        log::warn!("{message}{unsaid}");
    }
    message
}

/// The hosts this request was sent to: its `Host`, and those a reverse proxy named in
/// `X-Forwarded-Host` or in `Forwarded`'s `host=` (RFC 7239). A cross-site page cannot set either
/// header without a preflight, which this service never grants.
fn served_hosts(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    let listed = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
    };
    let forwarded = listed("forwarded").flat_map(|element| {
        element.split(';').filter_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            key.eq_ignore_ascii_case("host").then(|| value.trim_matches('"'))
        })
    });
    listed(header::HOST.as_str()).chain(listed("x-forwarded-host")).chain(forwarded).map(str::trim)
}

/// Whether `origin` names one of the hosts this request was sent to ([`served_hosts`]).
fn is_same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // "null" and other opaque origins
    };
    let scheme = scheme.to_ascii_lowercase();
    let origin_authority = normalize_authority(authority, &scheme);
    served_hosts(headers).any(|host| normalize_authority(host, &scheme) == origin_authority)
}

/// Lower-cases and drops the scheme's default port, so `Example.com:443` equals `example.com`.
fn normalize_authority(authority: &str, scheme: &str) -> String {
    let authority = authority.trim_end_matches('/').to_ascii_lowercase();
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return authority,
    };
    authority.strip_suffix(default_port).map(str::to_string).unwrap_or(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn same_origin_requests_pass() {
        let h = headers(&[
            ("host", "dash.lan:8080"),
            ("origin", "http://dash.lan:8080"),
            ("content-type", "application/json"),
        ]);
        assert!(check_mutation(&Method::POST, &h).is_ok());
        let h = headers(&[("host", "Dash.example"), ("origin", "https://dash.example:443")]);
        assert!(check_mutation(&Method::PATCH, &h).is_ok());
    }

    #[test]
    fn proxied_requests_match_the_forwarded_host() {
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "dash.example"),
            ("origin", "https://dash.example"),
        ]);
        assert!(check_mutation(&Method::DELETE, &h).is_ok());
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("forwarded", r#"for=192.0.2.1;proto=https, for=10.0.0.1;Host="dash.example";proto=https"#),
            ("origin", "https://dash.example"),
        ]);
        assert!(check_mutation(&Method::DELETE, &h).is_ok());
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("forwarded", "for=192.0.2.1;proto=https;by=dash.example"),
            ("origin", "https://dash.example"),
        ]);
        assert!(check_mutation(&Method::DELETE, &h).is_err(), "only host= names the served host");
    }

    #[test]
    fn a_refusal_says_which_host_was_compared_and_how_a_proxy_passes_the_right_one() {
        let h = headers(&[("host", "127.0.0.1:8080"), ("origin", "https://dash.example")]);
        let refused = check_mutation(&Method::PATCH, &h).unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        for needle in ["https://dash.example", "127.0.0.1:8080", "proxy_set_header Host $http_host"] {
            assert!(refused.message().contains(needle), "{needle:?} missing from {:?}", refused.message());
        }
    }

    /// The refusal is logged and sent back: a sender's headers of hundreds of kilobytes made a
    /// line and an answer that size, for each request, before any secret was checked.
    #[test]
    fn a_refusal_quotes_at_most_a_few_hundred_characters_of_each_header() {
        let huge = format!("http://{}", "\"".repeat(100_000));
        let host = "h".repeat(100_000);
        let h = headers(&[("host", &host), ("x-forwarded-host", &host), ("origin", &huge)]);
        let refused = check_origin(&h).unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(refused.message().len() < 2_000, "{} bytes", refused.message().len());
        assert!(refused.message().contains("proxy_set_header"), "{}", refused.message());
    }

    #[test]
    fn foreign_and_opaque_origins_are_refused() {
        for origin in ["http://evil.example", "null", "http://dash.lan:8081", "https://dash.lan.evil.example"]
        {
            let h = headers(&[
                ("host", "dash.lan:8080"),
                ("origin", origin),
                ("content-type", "application/json"),
            ]);
            assert_eq!(
                check_mutation(&Method::POST, &h).unwrap_err().status(),
                StatusCode::FORBIDDEN,
                "{origin}"
            );
        }
        let h = headers(&[("host", "dash.lan"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(check_mutation(&Method::PATCH, &h).unwrap_err().status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn post_and_put_need_a_json_content_type_but_patch_and_delete_do_not() {
        for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            let h = headers(&[("host", "h"), ("content-type", ct)]);
            assert_eq!(
                check_mutation(&Method::PUT, &h).unwrap_err().status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            );
        }
        assert_eq!(
            check_mutation(&Method::POST, &headers(&[])).unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let h = headers(&[("content-type", "Application/JSON; charset=utf-8")]);
        assert!(check_mutation(&Method::POST, &h).is_ok());
        assert!(check_mutation(&Method::PATCH, &headers(&[])).is_ok());
        assert!(check_mutation(&Method::DELETE, &headers(&[])).is_ok());
        assert!(check_mutation(&Method::GET, &headers(&[("origin", "http://evil")])).is_ok());
    }
}
