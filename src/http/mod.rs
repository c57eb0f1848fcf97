//! The whole HTTP surface on one screen. Path filters come first, so an unknown path is 404;
//! each handler then answers a wrong method with 405 itself, and every application error is a
//! reply rather than a rejection (warp#700), rendered as `{"error": …}`.

mod api;
mod assets;
mod auth;
mod body;
mod error;
mod guard;
pub(crate) mod gzip;
mod history;
mod live;
mod metrics;
mod refusals;
mod webhook;

pub use webhook::stored as webhook_stored;

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderMap, HeaderName, HeaderValue};
use warp::http::{Method, StatusCode};
use warp::reply::{Reply, Response};

pub use api::HEALTHCHECK_WAIT;
pub use body::MAX_BODY;
pub use error::ApiError;
pub use live::MAX_STREAMS;
pub use metrics::count_database_error;

use crate::config::Secret;
use crate::store::Store;

/// What every handler may need.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub webhook_secret: Option<Arc<Secret>>,
    /// The HTTP Basic token the dashboard and `/api` require, if any.
    pub dashboard_credentials: Option<Arc<Secret>>,
    /// Set when the server shuts down, so that endless responses (event streams) end.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// The last webhooks refused, which `/api/summary` tells the dashboard.
    refused_webhook: refusals::LastRefusal,
    /// Event streams that may be open at once (see [`live::MAX_STREAMS`]).
    streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(store: Arc<Store>, webhook_secret: Option<Secret>) -> Self {
        Self {
            store,
            webhook_secret: webhook_secret.map(Arc::new),
            dashboard_credentials: None,
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            refused_webhook: refusals::LastRefusal::default(),
            streams: Arc::new(tokio::sync::Semaphore::new(live::MAX_STREAMS)),
        }
    }

    /// Ends every event stream, so a graceful shutdown need not wait for them.
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }

    fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Requires HTTP Basic credentials for the dashboard and `/api`.
    pub fn with_dashboard_credentials(mut self, username: &str, password: &Secret) -> Self {
        self.dashboard_credentials = Some(Arc::new(auth::basic_token(username, password.expose())));
        self
    }
}

pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let credentials = auth::required(state.dashboard_credentials.clone());
    let state = warp::any().map(move || state.clone());
    let request = warp::method().and(warp::header::headers_cloned());

    let healthz = warp::path!("healthz").and(state.clone()).and(warp::method()).then(api::healthz);
    let webhook = warp::path!("webhook")
        .and(state.clone())
        .and(request)
        .and(warp::body::stream())
        .then(webhook::receive);
    let updates = warp::path!("api" / "updates").and(state.clone()).and(request).then(api::updates);
    let stream = warp::path!("api" / "stream").and(state.clone()).and(warp::method()).then(live::stream);
    let summary =
        warp::path!("api" / "summary").and(state.clone()).and(warp::method()).then(metrics::summary);
    let prometheus = warp::path!("metrics").and(state.clone()).and(warp::method()).then(metrics::metrics);
    let acknowledge_all = warp::path!("api" / "updates" / "acknowledge-all")
        .and(state.clone())
        .and(request)
        .and(warp::body::stream())
        .then(api::acknowledge_all);
    let acknowledge_by_tag = warp::path!("api" / "updates" / "acknowledge-by-tag")
        .and(state.clone())
        .and(request)
        .and(warp::body::stream())
        .then(api::acknowledge_by_tag);
    let history = warp::path!("api" / "updates" / ..)
        .and(warp::path::tail())
        .and_then(|tail: warp::path::Tail| async move {
            match api::without_trailing_slash(tail.as_str()).strip_suffix("/history") {
                Some(image) if !image.is_empty() => Ok(image.to_string()),
                _ => Err(warp::reject::not_found()),
            }
        })
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(state.clone())
        .and(warp::method())
        .then(history::history);
    let hosts = warp::path!("api" / "hosts").and(state.clone()).and(request).then(history::hosts);
    let update = warp::path!("api" / "updates" / ..)
        .and(warp::path::tail())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(state.clone())
        .and(request)
        .then(api::update);
    let tags =
        warp::path!("api" / "tags").and(state.clone()).and(request).and(warp::body::stream()).then(api::tags);
    let tag = warp::path!("api" / "tags" / String).and(state.clone()).and(request).then(api::tag);
    let tag_assignments = warp::path!("api" / "tag-assignments")
        .and(state)
        .and(request)
        .and(warp::body::stream())
        .then(api::tag_assignments);

    let api = updates
        .or(stream)
        .unify()
        .or(summary)
        .unify()
        .or(prometheus)
        .unify()
        .or(acknowledge_all)
        .unify()
        .or(acknowledge_by_tag)
        .unify()
        .or(history)
        .unify()
        .or(hosts)
        .unify()
        .or(update)
        .unify()
        .or(tags)
        .unify()
        .or(tag)
        .unify()
        .or(tag_assignments)
        .unify()
        .boxed();

    healthz
        .or(webhook)
        .unify()
        .or(credentials.and(api.or(assets::route()).unify()))
        .unify()
        .recover(error::recover)
        .unify()
        .with(warp::reply::with::headers(security_headers()))
        .with(warp::log::custom(|info| metrics::observe_request(info.path(), info.elapsed())))
        .map(Reply::into_response)
        .boxed()
}

/// Sent with every response: the page loads only its own assets and cannot be framed.
fn security_headers() -> HeaderMap {
    let pairs = [
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
    ];
    pairs
        .into_iter()
        .map(|(name, value)| (HeaderName::from_static(name), HeaderValue::from_static(value)))
        .collect()
}

/// GET, and HEAD wherever GET is allowed (hyper leaves the body out).
fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The 405 of a route that only reads.
fn only_reads(method: &Method) -> Result<(), ApiError> {
    if is_read(method) { Ok(()) } else { Err(ApiError::method_not_allowed("GET, HEAD")) }
}

/// The `key=value` pairs of a query string, in order, values percent-decoded.
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, std::borrow::Cow<'_, str>)> {
    query.split('&').filter(|pair| !pair.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key, percent_encoding::percent_decode_str(value).decode_utf8_lossy())
    })
}

/// `X-Change-Seq: <epoch>/<n>` on the reads a dashboard refreshes from: `mark` is
/// [`crate::changes::ChangeFeed::mark`], taken before the read began, so every change numbered
/// up to `n` is in the answer (see `changes`).
fn with_change_mark(mut response: Response, mark: String) -> Response {
    if let Ok(value) = HeaderValue::from_str(&mark) {
        response.headers_mut().insert(HeaderName::from_static("x-change-seq"), value);
    }
    response
}

fn json_reply(status: StatusCode, value: &impl serde::Serialize) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

/// A 200 with `value` as JSON, gzip-compressed when the request accepts it: for answers that
/// grow with the number of images (`/api/hosts` passes 1 MB at 5,000). Written off the reactor,
/// as the listing is: that many milliseconds there would hold up webhooks.
async fn json_reply_negotiated(
    headers: &HeaderMap,
    value: impl serde::Serialize + Send + 'static,
) -> Result<Response, ApiError> {
    let internal = |what: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, what);
    let compress = gzip::accepted(headers);
    let body = tokio::task::spawn_blocking(move || {
        let text = serde_json::to_vec(&value).map_err(|err| format!("cannot write the answer: {err}"))?;
        Ok::<_, String>(if compress { gzip::compress(&text, gzip::Effort::Fast) } else { text })
    })
    .await
    .map_err(|err| internal(format!("writing the answer failed: {err}")))?
    .map_err(internal)?;
    Ok(negotiated_json(body, compress))
}

/// A 200 with a JSON body whose encoding followed `Accept-Encoding`: gzip when `gzip`.
fn negotiated_json(body: Vec<u8>, gzip: bool) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(warp::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if gzip {
        gzip::mark_encoded(headers);
    } else {
        gzip::mark_negotiated(headers);
    }
    response
}

fn no_content() -> Response {
    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
}
