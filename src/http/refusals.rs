//! The last webhook the service refused, for the dashboard. A DIUN set up with the wrong secret
//! or method otherwise leaves only "No image updates yet" where the person setting it up is
//! looking, and a secret changed on one side later loses every update DIUN sends meanwhile; the
//! reason is in DIUN's log and in ours.

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use warp::http::{Method, StatusCode};

use crate::logging::clipped;
use crate::time::Timestamp;

const CROSS_SITE: &str = "sent by a web browser from a page of another site";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub at: Timestamp,
    pub status: u16,
    /// What the sender was answered (at most 200 characters: it may quote what it sent).
    pub error: String,
    #[serde(skip)]
    posted: bool,
}

/// Kept in memory only: a restart forgets it, as it should a problem that may be fixed.
#[derive(Clone, Default)]
pub struct LastRefusal(Arc<Mutex<Option<Refusal>>>);

impl LastRefusal {
    /// A refusal of the sender's doing (4xx). A database that failed to store a webhook (5xx)
    /// is an outage, which `/healthz` and the error banners speak of.
    ///
    /// A refused POST, the method DIUN must use, is kept over a later refusal of another method:
    /// a scanner's `GET /webhook` a minute after DIUN's refused POST must not hide why DIUN's
    /// updates are missing. Before any POST, a GET is kept (DIUN's default method).
    pub fn record(&self, method: &Method, status: StatusCode, error: &str) {
        if !status.is_client_error() {
            return;
        }
        let posted = method == Method::POST;
        // A cross-site refusal quotes the request's Origin and Host, which anyone can set
        // without the secret: not text of theirs to put on the dashboard.
        let error = if status == StatusCode::FORBIDDEN { CROSS_SITE } else { clipped(error) };
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !posted && last.as_ref().is_some_and(|kept| kept.posted) {
            return;
        }
        *last =
            Some(Refusal { at: Timestamp::now(), status: status.as_u16(), error: error.to_string(), posted });
    }

    pub fn latest(&self) -> Option<Refusal> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_senders_refusals_are_kept_and_the_latest_wins() {
        let last = LastRefusal::default();
        assert_eq!(last.latest(), None);
        last.record(&Method::POST, StatusCode::SERVICE_UNAVAILABLE, "the database did not answer");
        assert_eq!(last.latest(), None, "an outage is not the sender's doing");
        last.record(&Method::POST, StatusCode::UNAUTHORIZED, "missing or wrong Authorization header");
        last.record(&Method::POST, StatusCode::BAD_REQUEST, &"x".repeat(5000));
        let latest = last.latest().expect("a refusal");
        assert_eq!(latest.status, 400);
        assert_eq!(latest.error.chars().count(), 200, "cut to 200 characters");
        last.record(
            &Method::POST,
            StatusCode::FORBIDDEN,
            "cross-origin request from \"http://click-here.example\"",
        );
        assert_eq!(last.latest().map(|refusal| refusal.error), Some(CROSS_SITE.to_string()));
    }

    #[test]
    fn a_refused_post_is_kept_over_a_later_refusal_of_another_method() {
        let last = LastRefusal::default();
        last.record(&Method::GET, StatusCode::METHOD_NOT_ALLOWED, "the webhook only accepts POST");
        assert_eq!(last.latest().map(|refusal| refusal.status), Some(405), "DIUN's default method");
        last.record(&Method::PUT, StatusCode::METHOD_NOT_ALLOWED, "only POST");
        assert_eq!(last.latest().map(|refusal| refusal.error), Some("only POST".to_string()));
        last.record(&Method::POST, StatusCode::UNAUTHORIZED, "missing or wrong Authorization header");
        last.record(&Method::GET, StatusCode::METHOD_NOT_ALLOWED, "the webhook only accepts POST");
        assert_eq!(last.latest().map(|refusal| refusal.status), Some(401), "a scanner's GET hid DIUN's POST");
        last.record(&Method::POST, StatusCode::BAD_REQUEST, "not JSON");
        assert_eq!(last.latest().map(|refusal| refusal.status), Some(400), "a later POST wins");
    }
}
