//! `GET /api/stream`: Server-Sent Events announcing every data change, so dashboards update at
//! once instead of waiting for their next poll.

use std::convert::Infallible;
use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};
use tokio::sync::broadcast::error::RecvError;
use warp::http::{HeaderValue, Method, StatusCode};
use warp::reply::{Reply, Response};
use warp::sse::Event;

use super::error::ApiError;
use super::{AppState, only_reads};
use crate::changes::{ChangeKind, Numbered};

#[derive(serde::Serialize)]
struct ChangeEvent<'a> {
    kind: ChangeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    seq: u64,
}

/// A `ping` event after every quiet spell this long: proxies keep the stream open, and a
/// dashboard that hears nothing for a few of them knows its connection died without a word
/// (which fires no error in a browser). An event, not a comment: comments never reach the
/// page's script. Its interval is in `hello`, so the page need not guess it.
const PING_EVERY: Duration = Duration::from_secs(15);
/// How soon a browser reconnects after the stream breaks.
const RETRY: Duration = Duration::from_secs(3);
/// Streams open at once, at most. Each holds a connection, and a file descriptor, for as long
/// as its client reads: with no limit, a client on the network opening streams by the thousand
/// would use up the process's descriptors, and DIUN's webhooks (never sent again) would be
/// refused. A dashboard refused one polls instead.
pub const MAX_STREAMS: usize = 512;

pub async fn stream(state: AppState, method: Method) -> Response {
    if let Err(wrong_method) = only_reads(&method) {
        return wrong_method.into_response();
    }
    let Ok(open) = std::sync::Arc::clone(&state.streams).try_acquire_owned() else {
        warn_at_most_once_a_minute();
        let full = format!("{MAX_STREAMS} live dashboards are open already; this one polls instead");
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, full).into_response();
    };
    // Subscribed before `hello` is sent, so that nothing published after it is missed.
    let changes = changes(&state).map(move |event| {
        // Held for as long as the stream is, which ends when its client goes away.
        let _open = &open;
        event
    });
    // The epoch is hex digits and dashes: nothing in it needs escaping.
    let hello = Event::default().event("hello").retry(RETRY).data(format!(
        r#"{{"epoch":"{}","ping_ms":{}}}"#,
        state.store.changes().epoch(),
        PING_EVERY.as_millis()
    ));
    let events = stream::once(async { Ok::<_, Infallible>(hello) }).chain(changes);
    let mut response = warp::sse::reply(events).into_response();
    // nginx buffers responses by default, which would hold events back.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Says that streams were refused, once a minute at most: a client opening them in a loop must
/// not flood the log.
fn warn_at_most_once_a_minute() {
    static REFUSED: crate::logging::Throttle = crate::logging::Throttle::new();
    if let Some(unsaid) = REFUSED.say() {
        log::warn!(
            "event streams refused: {MAX_STREAMS} are open (the dashboards refused poll instead){unsaid}"
        );
    }
}

/// `change` events with `{"kind": …, "image": …, "seq": …}` (`seq` numbers changes within the
/// epoch `hello` named; see `changes`); `resync` when this stream fell behind and the client
/// should reload everything; `ping` after [`PING_EVERY`] without either. Ends when the server
/// shuts down.
fn changes(state: &AppState) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    let changes = state.store.changes().subscribe();
    let stopping = state.stopping();
    stream::unfold((changes, stopping), |(mut changes, mut stopping)| async move {
        let event = tokio::select! {
            _ = stopping.wait_for(|stopping| *stopping) => return None,
            () = tokio::time::sleep(PING_EVERY) => Event::default().event("ping").data("{}"),
            received = changes.recv() => match received {
                Ok(Numbered { seq, change }) => {
                    let data = ChangeEvent { kind: change.kind, image: change.image.as_deref(), seq };
                    Event::default().event("change").json_data(&data).ok()?
                }
                Err(RecvError::Lagged(missed)) => Event::default().event("resync").data(missed.to_string()),
                Err(RecvError::Closed) => return None,
            },
        };
        Some((Ok(event), (changes, stopping)))
    })
}
