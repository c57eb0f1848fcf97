//! The last webhooks the service refused, for the dashboard. A DIUN set up with the wrong secret
//! or method otherwise leaves only "No image updates yet" where the person setting it up is
//! looking, and a secret changed on one side later loses every update DIUN sends meanwhile; the
//! reason is in DIUN's log and in ours.

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use warp::http::{Method, StatusCode};

use crate::logging::clipped;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub at: Timestamp,
    pub status: u16,
    /// What the sender was answered (at most 200 characters: it may quote what it sent).
    pub error: String,
}

/// The latest refusal, and the latest of a POST: DIUN's method once it is set up, which a
/// scanner's `GET /webhook` a minute later must not hide. Kept in memory only: a restart forgets
/// them, as it should a problem that may be fixed.
#[derive(Clone, Default)]
pub struct LastRefusal(Arc<Mutex<Latest>>);

/// Read together, so that the two never come from either side of another refusal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latest {
    /// Whatever its method: what the empty page shows while DIUN is set up.
    pub any: Option<Refusal>,
    /// Of a POST: what a dashboard with cards warns of.
    pub post: Option<Refusal>,
}

impl LastRefusal {
    /// A refusal of the sender's doing (4xx), at `at`. A database that failed to store a
    /// webhook (5xx) is an outage, which `/healthz` and the error banners speak of.
    pub fn record(&self, method: &Method, status: StatusCode, error: &str, at: Timestamp) {
        if !status.is_client_error() {
            return;
        }
        let refusal = Refusal { at, status: status.as_u16(), error: clipped(error).to_string() };
        let mut latest = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if method == Method::POST {
            latest.post = Some(refusal.clone());
        }
        latest.any = Some(refusal);
    }

    pub fn latest(&self) -> Latest {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(last: &LastRefusal, method: Method, status: StatusCode, error: &str) {
        last.record(&method, status, error, Timestamp::now());
    }

    #[test]
    fn only_the_senders_refusals_are_kept_and_the_latest_wins() {
        let last = LastRefusal::default();
        assert_eq!(last.latest().any, None);
        record(&last, Method::POST, StatusCode::SERVICE_UNAVAILABLE, "the database did not answer");
        assert_eq!(last.latest().any, None, "an outage is not the sender's doing");
        record(&last, Method::POST, StatusCode::UNAUTHORIZED, "missing or wrong Authorization header");
        record(&last, Method::POST, StatusCode::BAD_REQUEST, &"x".repeat(5000));
        let latest = last.latest().any.expect("a refusal");
        assert_eq!(latest.status, 400);
        assert_eq!(latest.error.chars().count(), 200, "cut to 200 characters");
    }

    #[test]
    fn a_refused_post_is_kept_apart_from_later_refusals_of_other_methods() {
        let last = LastRefusal::default();
        record(&last, Method::GET, StatusCode::METHOD_NOT_ALLOWED, "the webhook only accepts POST");
        assert_eq!(last.latest().post, None, "a GET is no refused POST");
        record(&last, Method::POST, StatusCode::UNAUTHORIZED, "missing or wrong Authorization header");
        record(&last, Method::GET, StatusCode::METHOD_NOT_ALLOWED, "the webhook only accepts POST");
        assert_eq!(last.latest().any.map(|refusal| refusal.status), Some(405), "the latest of all");
        assert_eq!(
            last.latest().post.map(|refusal| refusal.status),
            Some(401),
            "a scanner's GET hid DIUN's POST"
        );
        record(&last, Method::POST, StatusCode::BAD_REQUEST, "not JSON");
        let latest = last.latest();
        assert_eq!(latest.post, latest.any, "a later POST is both");
    }
}
