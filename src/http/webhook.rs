//! `POST /webhook`: DIUN's notifications come in here.

use bytes::Buf;
use futures_util::Stream;
use warp::http::{HeaderMap, Method, StatusCode, header};
use warp::reply::Response;

use super::AppState;
use super::auth::constant_time_eq;
use super::body::read_capped;
use super::error::{ApiError, respond};
use super::guard::{check_origin, sent_by_a_browser};
use super::metrics::{WebhookResult, WebhookStatus, count_webhook};
use crate::logging::Throttle;
use crate::model::DiunEvent;
use crate::store::{Received, UpdateStore};

pub async fn receive<S, B>(state: AppState, method: Method, headers: HeaderMap, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    // Any page the admin opens can make the browser post here unasked: its refusal (a wrong
    // secret, a foreign origin) must not stand on the dashboard as DIUN's, nor hide DIUN's own.
    // The log still says it.
    let from_a_browser = sent_by_a_browser(&headers);
    let received = receive_event(&state, &method, headers, body).await;
    if let Err(refused) = &received
        && !from_a_browser
    {
        let at = state.store.receipt_time();
        state.refused_webhook.record(&method, refused.status(), refused.message(), at);
    }
    respond(received)
}

async fn receive_event<S, B>(
    state: &AppState,
    method: &Method,
    headers: HeaderMap,
    body: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if *method != Method::POST {
        // Counted: DIUN left on its default method sends nothing else, and the counters are
        // where an alert would see that.
        count_webhook(WebhookStatus::of(""), WebhookResult::Rejected);
    }
    if *method == Method::GET {
        // DIUN's webhook notifier defaults to GET, which carries no event.
        return Err(ApiError::method_not_allowed_because(
            "POST",
            "the webhook only accepts POST: set `method: POST` under notif.webhook in DIUN's configuration",
        ));
    }
    if *method != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    match &state.webhook_secret {
        // The secret decides (SPEC §4.1): a web page cannot know it, and a relay that adds an
        // Origin header is a sender like DIUN.
        Some(secret) => {
            let given = headers.get(header::AUTHORIZATION).map(|value| value.as_bytes()).unwrap_or_default();
            if !constant_time_eq(given, secret.expose().as_bytes()) {
                static WRONG_SECRET: Throttle = Throttle::new();
                if let Some(unsaid) = WRONG_SECRET.say() {
                    log::warn!("webhook refused: missing or wrong Authorization header{unsaid}");
                }
                count_webhook(WebhookStatus::of(""), WebhookResult::Unauthorized);
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong Authorization header"));
            }
        }
        // Without a secret, DIUN sends no Origin and a browser always does on a POST: any web
        // page the admin opened could otherwise post events through the admin's browser to a
        // dashboard on the LAN (a text/plain body needs no preflight): fake cards, real ones
        // overwritten with another digest and registry link.
        None => check_origin(&headers)
            .inspect_err(|_| count_webhook(WebhookStatus::of(""), WebhookResult::Rejected))?,
    }
    let event = read_capped(&headers, body)
        .await
        .and_then(|body| DiunEvent::from_json(&body).map_err(ApiError::bad_request))
        .inspect_err(|_| count_webhook(WebhookStatus::of(""), WebhookResult::Rejected))?;
    let status = WebhookStatus::of(&event.status);
    // Formatted only when it will be logged: this is the busiest path of the service.
    let summary = log::log_enabled!(log::Level::Info).then(|| {
        // Each part is cut to 200 characters: a huge host name must not size the buffer.
        let quoted_len = |text: &str| text.len().min(200) + 2;
        let mut summary = String::with_capacity(
            quoted_len(&event.status)
                + quoted_len(&event.image)
                + quoted_len(&event.hostname)
                + " ".len()
                + " from ".len(),
        );
        push_quoted(&mut summary, &event.status);
        summary.push(' ');
        push_quoted(&mut summary, &event.image);
        summary.push_str(" from ");
        push_quoted(&mut summary, &event.hostname);
        summary
    });
    if let Err(err) = state.store.upsert_event(event, Received::Now).await {
        count_webhook(status, WebhookResult::Failed);
        return Err(err.into());
    }
    count_webhook(status, WebhookResult::Stored);
    if let Some(summary) = summary {
        log::info!("update received: {summary}");
    }
    Ok(stored())
}

/// `{"status":"ok"}`, from a constant: the busiest answer of the service (and the bench
/// floor's, so that the two answer alike).
pub fn stored() -> Response {
    let mut response = Response::new(warp::hyper::body::Bytes::from_static(br#"{"status":"ok"}"#).into());
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

/// At most 200 characters of sender-controlled text for a log line, quoted and escaped as
/// `{:?}` does, so that a crafted image name cannot forge log lines.
///
/// Written by hand for the usual text (printable ASCII, at most 200 bytes): this summary is
/// built once per webhook, and `format!` with three `{:?}` took 173 ns for it where this
/// takes 78 (BENCHMARKS.md section 25).
fn push_quoted(line: &mut String, text: &str) {
    use std::fmt::Write;
    if text.len() > 200 || !text.bytes().all(|byte| (b' '..=b'~').contains(&byte)) {
        // Writing into a String cannot fail.
        let _ = write!(line, "{:?}", crate::logging::clipped(text));
        return;
    }
    line.push('"');
    for piece in text.split_inclusive(['"', '\\']) {
        match piece.strip_suffix(['"', '\\']) {
            Some(before) => {
                line.push_str(before);
                line.push('\\');
                line.push_str(&piece[before.len()..]);
            }
            None => line.push_str(piece),
        }
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(text: &str) -> String {
        let mut line = String::new();
        push_quoted(&mut line, text);
        line
    }

    /// The hand-written path must read exactly as `{:?}`, which the rest falls back to.
    #[test]
    fn quoting_is_debugs_escaping() {
        for text in [
            "",
            "nginx:1.25",
            "a\nb",
            "say \"hi\"",
            "back\\slash\\",
            "\"",
            "\\\"\\",
            "tab\there",
            "\u{1b}[31mred",
            "del\u{7f}",
            "zero\u{200b}width",
            "caf\u{e9}",
            "~ !#$%&'()*+,-./:;<=>?@[]^_`{|}",
        ] {
            assert_eq!(quoted(text), format!("{text:?}"), "{text:?}");
        }
    }

    #[test]
    fn quoting_cuts_at_200_characters_whichever_path_it_takes() {
        let texts = [
            "a".repeat(200),
            "a".repeat(201),
            "\"".repeat(200),
            "\\".repeat(201),
            "a\"b".repeat(70),
            "é".repeat(300),
        ];
        for text in texts {
            let cut: String = text.chars().take(200).collect();
            assert_eq!(quoted(&text), format!("{cut:?}"), "{} characters", text.chars().count());
        }
    }
}
