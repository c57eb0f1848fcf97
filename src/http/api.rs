//! `/api/…` and `/healthz` handlers.

use std::time::Duration;

use bytes::Buf;
use futures_util::Stream;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::path::Tail;
use warp::reply::Response;

use super::body::read_capped;
use super::error::{ApiError, INTERNAL_DATABASE_ERROR, respond};
use super::guard::check_mutation;
use super::gzip;
use super::{
    AppState, is_read, json_reply, negotiated_json, no_content, only_reads, query_pairs, with_change_mark,
};
use crate::listing::Listing;
use crate::store::{Assignment, ImageOutcome, StoreError, UpdateStore};
use crate::time::Timestamp;

const MAX_TAG_NAME: usize = 100;
/// The check's own limit, a backstop after the store's (PostgreSQL's limits to connect and to
/// wait for a free connection) so that the store's reason is the one reported, and under
/// [`HEALTHCHECK_WAIT`]. At 3 s, the store's own limits, it raced them, and on a loaded
/// machine reported a bare timeout instead of the reason.
pub(super) const HEALTH_TIMEOUT: Duration = Duration::from_secs(4);
/// How long the `healthcheck` command waits for `/healthz`. The images' HEALTHCHECK (which
/// compose uses as is) gives the command 7 s, so that a hung server is reported in the binary's
/// words, not as Docker's bare "exceeded timeout".
pub const HEALTHCHECK_WAIT: Duration = Duration::from_secs(5);

pub async fn healthz(state: AppState, method: Method) -> Response {
    if let Err(wrong_method) = only_reads(&method) {
        return respond(Err::<Response, _>(wrong_method));
    }
    let backend = state.store.backend();
    // What the caller is told, and for a fault its details, which stay in the log (this route
    // needs no credentials).
    let (problem, detail) = match tokio::time::timeout(HEALTH_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {
            return json_reply(StatusCode::OK, &serde_json::json!({ "status": "ok", "backend": backend }));
        }
        Ok(Err(err @ StoreError::Internal(_))) => (INTERNAL_DATABASE_ERROR.to_owned(), Some(err.to_string())),
        Ok(Err(err)) => (err.to_string(), None),
        // SQLite's writer waits up to its busy timeout (5 s) for a lock another process holds:
        // the reason it gives comes after this check's limit.
        Err(_) if backend == "sqlite" => (
            format!(
                "the database did not answer within {} s: its writer is busy, or another process holds the file's write lock",
                HEALTH_TIMEOUT.as_secs()
            ),
            None,
        ),
        Err(_) => (format!("the database did not answer within {} s", HEALTH_TIMEOUT.as_secs()), None),
    };
    super::metrics::count_database_error();
    // Monitors call this every few seconds during an outage, and anyone may: once a minute.
    static FAILED: crate::logging::Throttle = crate::logging::Throttle::new();
    if let Some(unsaid) = FAILED.say() {
        log::warn!("health check failed: {}{unsaid}", detail.as_deref().unwrap_or(&problem));
    }
    json_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({ "status": "unavailable", "backend": backend, "error": problem }),
    )
}

/// `GET /api/updates`, gzip-compressed when the request accepts it. The store writes the
/// listing (a few MB for thousands of images) from its rows into one buffer, or into the gzip
/// stream, off the reactor, without a copy of each row. (PostgreSQL's store writes its two
/// halves apart first, so its listing is built once more, uncompressed, on the way.)
pub async fn updates(state: AppState, method: Method, headers: HeaderMap) -> Response {
    respond(
        async {
            only_reads(&method)?;
            let gzip = gzip::accepted(&headers);
            let mark = state.store.changes().mark();
            let body = state.store.write_listing(Listing::new(gzip)).await?;
            Ok(with_change_mark(negotiated_json(body, gzip), mark))
        }
        .await,
    )
}

/// `PATCH /api/updates/{image}` acknowledges, `DELETE` removes; the image is percent-encoded,
/// `/` included. With `?received_at=<the report's time, as listed>`, only that report is
/// acknowledged or removed: one that arrived since (and that the user has not seen) answers 409
/// and is left as it is.
pub async fn update(
    tail: Tail,
    query: String,
    state: AppState,
    method: Method,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            // The method first: a known path with the wrong method is a 405 whatever its image.
            if method != Method::PATCH && method != Method::DELETE {
                return Err(ApiError::method_not_allowed("PATCH, DELETE"));
            }
            let image = decode_image(tail.as_str())?;
            check_mutation(&method, &headers)?;
            let seen = seen_report(&query)?;
            let (found, verb) = if method == Method::PATCH {
                (
                    state.store.acknowledge(image.clone(), state.store.receipt_time(), seen).await?,
                    "acknowledging",
                )
            } else {
                (state.store.remove_update(image.clone(), seen).await?, "removing")
            };
            match found {
                ImageOutcome::Done => Ok(no_content()),
                ImageOutcome::UnknownImage => {
                    Err(ApiError::not_found(format!("no update for image {image:?}")))
                }
                ImageOutcome::ReportedSince => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{image} was reported again since: look at the new report before {verb} it"),
                )),
            }
        }
        .await,
    )
}

/// `received_at` from the query string, the one parameter `PATCH /api/updates/{image}` takes.
fn seen_report(query: &str) -> Result<Option<Timestamp>, ApiError> {
    let mut seen = None;
    for (key, value) in query_pairs(query) {
        match key {
            "received_at" => {
                seen = Some(Timestamp::parse_rfc3339(&value).ok_or_else(|| {
                    ApiError::bad_request(format!("`received_at` must be an RFC 3339 time, not {value:?}"))
                })?)
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {key:?}: only `received_at` is taken"
                )));
            }
        }
    }
    Ok(seen)
}

/// Decodes the image from the request path. Unencoded slashes are accepted too, so that
/// `curl -X PATCH …/api/updates/docker.io/library/nginx:1.27` works as typed, and so is one
/// trailing slash, as on every other route (no image name ends with one).
pub fn decode_image(raw: &str) -> Result<String, ApiError> {
    let raw = without_trailing_slash(raw);
    if raw.is_empty() {
        return Err(ApiError::not_found("no image given: use /api/updates/{percent-encoded image}"));
    }
    crate::model::decode_image_path(raw).map_err(ApiError::bad_request)
}

/// A path's tail without the one trailing slash warp also forgives on its fixed routes.
pub fn without_trailing_slash(tail: &str) -> &str {
    tail.strip_suffix('/').unwrap_or(tail)
}

pub async fn acknowledge_all<S, B>(state: AppState, method: Method, headers: HeaderMap, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    respond(
        async {
            if method != Method::POST {
                return Err(ApiError::method_not_allowed("POST"));
            }
            check_mutation(&method, &headers)?;
            // No body, `{}`, or `{"received_until": …}`; checked and capped like every other.
            let body = read_capped(&headers, body).await?;
            let Shown { received_until } =
                if body.trim_ascii().is_empty() { Shown::default() } else { from_object(&body)? };
            let until = shown_until(received_until.as_deref())?;
            let at = state.store.receipt_time();
            let count = state.store.acknowledge_all(at, Some(bound_at(until, at))).await?;
            Ok(json_reply(StatusCode::OK, &serde_json::json!({ "count": count })))
        }
        .await,
    )
}

/// What a dismissal of many may name: the newest report the user was shown (`received_at` as
/// listed). A report that arrived after it stays pending: the page had not shown it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Shown {
    received_until: Option<String>,
}

/// A dismissal of many covers the reports up to `at`, its own stamp, at most: one stamped later
/// but committed before the dismissal's write came after it, and stays pending.
fn bound_at(until: Option<Timestamp>, at: Timestamp) -> Timestamp {
    until.map_or(at, |until| until.min(at))
}

fn shown_until(received_until: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    received_until
        .map(|text| {
            Timestamp::parse_rfc3339(text).ok_or_else(|| {
                ApiError::bad_request(format!("`received_until` must be an RFC 3339 time, not {text:?}"))
            })
        })
        .transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagRef {
    tag_id: BodyTagId,
    received_until: Option<String>,
}

pub async fn acknowledge_by_tag<S, B>(
    state: AppState,
    method: Method,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    respond(
        async {
            if method != Method::POST {
                return Err(ApiError::method_not_allowed("POST"));
            }
            check_mutation(&method, &headers)?;
            let TagRef { tag_id, received_until } = json_body(&headers, body).await?;
            let tag_id = tag_id.known()?;
            let until = shown_until(received_until.as_deref())?;
            let at = state.store.receipt_time();
            match state.store.acknowledge_by_tag(tag_id, at, Some(bound_at(until, at))).await? {
                Some(count) => Ok(json_reply(StatusCode::OK, &serde_json::json!({ "count": count }))),
                None => Err(unknown_tag(tag_id)),
            }
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTag {
    name: String,
}

pub async fn tags<S, B>(state: AppState, method: Method, headers: HeaderMap, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    respond(
        async {
            if is_read(&method) {
                let mark = state.store.changes().mark();
                let tags = state.store.list_tags().await?;
                return Ok(with_change_mark(json_reply(StatusCode::OK, &tags), mark));
            }
            if method != Method::POST {
                return Err(ApiError::method_not_allowed("GET, HEAD, POST"));
            }
            check_mutation(&method, &headers)?;
            let NewTag { name } = json_body(&headers, body).await?;
            let name = valid_tag_name(&name)?;
            let tag = state.store.create_tag(name).await?;
            Ok(json_reply(StatusCode::CREATED, &tag))
        }
        .await,
    )
}

fn valid_tag_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("the tag name is empty"));
    }
    if name.chars().count() > MAX_TAG_NAME {
        return Err(ApiError::bad_request(format!("the tag name is longer than {MAX_TAG_NAME} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("the tag name contains control characters"));
    }
    Ok(name.to_string())
}

pub async fn tag(id: String, state: AppState, method: Method, headers: HeaderMap) -> Response {
    respond(
        async {
            if method != Method::DELETE {
                return Err(ApiError::method_not_allowed("DELETE"));
            }
            check_mutation(&method, &headers)?;
            let tag_id = parse_tag_id(&id)?;
            if state.store.delete_tag(tag_id).await? { Ok(no_content()) } else { Err(unknown_tag(tag_id)) }
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignmentRequest {
    image: String,
    tag_id: BodyTagId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageRef {
    image: String,
}

pub async fn tag_assignments<S, B>(state: AppState, method: Method, headers: HeaderMap, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    respond(
        async {
            if method == Method::PUT {
                check_mutation(&method, &headers)?;
                let AssignmentRequest { image, tag_id } = json_body(&headers, body).await?;
                valid_image(&image)?;
                let tag_id = tag_id.known()?;
                match state.store.assign_tag(image.clone(), tag_id).await? {
                    Assignment::Assigned => Ok(no_content()),
                    Assignment::UnknownTag => Err(unknown_tag(tag_id)),
                    Assignment::UnknownImage => {
                        Err(ApiError::not_found(format!("no update for image {image:?}")))
                    }
                }
            } else if method == Method::DELETE {
                check_mutation(&method, &headers)?;
                let ImageRef { image } = json_body(&headers, body).await?;
                valid_image(&image)?;
                state.store.unassign_tag(image).await?;
                Ok(no_content())
            } else {
                Err(ApiError::method_not_allowed("PUT, DELETE"))
            }
        }
        .await,
    )
}

/// The same bounds as a webhook's image: PostgreSQL cannot even compare text holding U+0000.
fn valid_image(image: &str) -> Result<(), ApiError> {
    crate::model::check_image(image).map_err(ApiError::bad_request)
}

/// A tag id as it appears in the path: digits only (Rust's parser would take `+1` for 1), and a
/// number too large to be any tag's id is an unknown tag rather than a malformed request.
fn parse_tag_id(id: &str) -> Result<i64, ApiError> {
    let digits = id.strip_prefix('-').unwrap_or(id);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!("tag id must be an integer, not {id:?}")));
    }
    id.parse::<i64>().map_err(|_| ApiError::not_found(format!("no tag with id {id}")))
}

/// A tag id in a request body. A whole number too large to be any tag's id names no tag (404,
/// as [`parse_tag_id`] answers for the path) where serde's `i64` would call the body malformed.
#[derive(Debug, PartialEq)]
enum BodyTagId {
    Id(i64),
    Beyond(String),
}

impl BodyTagId {
    fn known(self) -> Result<i64, ApiError> {
        match self {
            BodyTagId::Id(id) => Ok(id),
            BodyTagId::Beyond(id) => Err(ApiError::not_found(format!("no tag with id {id}"))),
        }
    }
}

impl<'de> Deserialize<'de> for BodyTagId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = BodyTagId;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, id: i64) -> Result<BodyTagId, E> {
                Ok(BodyTagId::Id(id))
            }
            fn visit_u64<E: serde::de::Error>(self, id: u64) -> Result<BodyTagId, E> {
                Ok(i64::try_from(id).map_or_else(|_| BodyTagId::Beyond(id.to_string()), BodyTagId::Id))
            }
            // serde_json reads an integer beyond u64 as a float; one within i64 written as a
            // float (`3.0`) is no integer, as serde's `i64` says.
            fn visit_f64<E: serde::de::Error>(self, id: f64) -> Result<BodyTagId, E> {
                if id.is_finite() && id.fract() == 0.0 && id.abs() >= -(i64::MIN as f64) {
                    // In exponent form: a float's digits are not the number sent.
                    Ok(BodyTagId::Beyond(format!("{id:e}")))
                } else {
                    Err(E::invalid_type(serde::de::Unexpected::Float(id), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn unknown_tag(tag_id: i64) -> ApiError {
    ApiError::not_found(format!("no tag with id {tag_id}"))
}

async fn json_body<T, S, B>(headers: &HeaderMap, body: S) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let bytes = read_capped(headers, body).await?;
    from_object(&bytes)
}

/// `T` from a body that must be a JSON object. A derived struct would also take a JSON array
/// (`[3, null]` as `{"tag_id": 3, "received_until": null}`), so anything else is refused first.
/// Every body type refuses fields it does not know: a misspelt `received_until` read as absent
/// would dismiss every report, seen or not. Read straight into `T`, an unknown field is refused
/// at its name, before its value is read: a map built first held a 1 MiB array of zeros as
/// 17 MB of values.
fn from_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let is_object = bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b'{');
    if !is_object {
        // Checked as JSON without keeping any of it, to say which of the two it is.
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => ApiError::bad_request("invalid request: expected a JSON object"),
            Err(err) => ApiError::bad_request(format!("invalid JSON: {err}")),
        });
    }
    serde_json::from_slice(bytes).map_err(|err| {
        if err.is_data() {
            ApiError::bad_request(format!("invalid request: {err}"))
        } else {
            ApiError::bad_request(format!("invalid JSON: {err}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "postgres")]
    #[test]
    fn the_health_check_waits_for_the_stores_reason_and_answers_before_the_healthcheck_gives_up() {
        use crate::store::postgres::{CHECKOUT_TIMEOUT, CONNECT_TIMEOUT};
        assert!(HEALTH_TIMEOUT > CONNECT_TIMEOUT.max(CHECKOUT_TIMEOUT));
        assert!(HEALTH_TIMEOUT < HEALTHCHECK_WAIT);
    }

    /// An unknown field is refused at its name: its value (here broken off, as it could be a
    /// megabyte of anything) is never read.
    #[test]
    fn a_body_is_refused_at_its_first_unknown_field() {
        let refused = |body: &str| from_object::<NewTag>(body.as_bytes()).map(|_| ()).unwrap_err();
        let unknown = refused(r#"{"name": "x", "p": [0, 0, 0, 0 ..."#);
        assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
        assert!(unknown.message().contains("unknown field `p`"), "{}", unknown.message());
        for not_an_object in [r#"["x"]"#, " \n 3", "null", r#""x""#] {
            let refused = refused(not_an_object);
            assert_eq!(refused.message(), "invalid request: expected a JSON object", "{not_an_object}");
        }
        for broken in ["", "{", "[1,", "nul", "{\"name\": }"] {
            assert!(refused(broken).message().starts_with("invalid JSON"), "{broken}");
        }
        let NewTag { name } =
            from_object(br#" {"name": "prod"}"#).map_err(|err| err.message().to_string()).unwrap();
        assert_eq!(name, "prod");
    }

    #[test]
    fn images_decode_from_encoded_and_plain_paths() {
        let expected = "docker.io/library/nginx:1.27";
        assert_eq!(decode_image("docker.io%2Flibrary%2Fnginx%3A1.27").unwrap(), expected);
        assert_eq!(decode_image("docker.io/library/nginx:1.27").unwrap(), expected);
        assert_eq!(decode_image("ghcr.io%2Fo%2Fapp%40sha256%3Aab").unwrap(), "ghcr.io/o/app@sha256:ab");
        assert_eq!(decode_image("reg.example%2Fcaf%C3%A9%3A1").unwrap(), "reg.example/café:1");
        assert_eq!(decode_image("a%2Bb+c").unwrap(), "a+b+c");
    }

    #[test]
    fn undecodable_images_are_refused() {
        assert_eq!(decode_image("").unwrap_err().status(), StatusCode::NOT_FOUND);
        assert_eq!(decode_image("bad%FF").unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert_eq!(decode_image("nul%00").unwrap_err().status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn tag_names_are_trimmed_and_bounded() {
        assert_eq!(valid_tag_name("  prod ").unwrap(), "prod");
        assert!(valid_tag_name("   ").is_err());
        assert!(valid_tag_name(&"x".repeat(100)).is_ok());
        assert!(valid_tag_name(&"é".repeat(100)).is_ok());
        assert!(valid_tag_name(&"x".repeat(101)).is_err());
        assert!(valid_tag_name("a\nb").is_err());
    }
}
