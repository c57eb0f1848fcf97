//! `GET /api/updates/{image}/history` and `GET /api/hosts`: what the history table knows.

use serde::Serialize;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

use super::error::{ApiError, respond};
use super::{AppState, json_reply, json_reply_negotiated, only_reads, query_pairs, with_change_mark};
use crate::model::{HistoryEntry, HostReport, decode_image_path};
use crate::store::UpdateStore;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

#[derive(Serialize)]
struct HistoryPage {
    image: String,
    events: Vec<HistoryEntry>,
    /// Pass as `before` to get the next (older) page; `null` on the last page.
    next_before: Option<i64>,
}

/// `raw_image` is the percent-encoded image of the path, `/history` already cut off.
pub async fn history(raw_image: String, query: String, state: AppState, method: Method) -> Response {
    respond(
        async {
            // The method first: a known path with the wrong method is a 405 whatever its image.
            only_reads(&method)?;
            let image = decode_image_path(&raw_image).map_err(ApiError::bad_request)?;
            let (before, limit) = page(&query)?;
            // One more than the page: a page that is exactly the last one says so (no cursor to
            // an empty page).
            let mut events = state
                .store
                .history(image.clone(), before, limit + 1)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no update for image {image:?}")))?;
            let more = events.len() > limit as usize;
            events.truncate(limit as usize);
            let next_before = more.then(|| events.last().map(|e| e.id)).flatten();
            Ok(json_reply(StatusCode::OK, &HistoryPage { image, events, next_before }))
        }
        .await,
    )
}

/// `limit` (1–500, default 50) and `before` (an event id) from the query string.
fn page(query: &str) -> Result<(Option<i64>, u32), ApiError> {
    let mut before = None;
    let mut limit = DEFAULT_PAGE;
    for (key, value) in query_pairs(query) {
        match key {
            "before" => {
                before = Some(value.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("`before` must be an event id, not {value:?}"))
                })?)
            }
            "limit" => {
                limit =
                    value.parse::<u32>().ok().filter(|limit| (1..=MAX_PAGE).contains(limit)).ok_or_else(
                        || ApiError::bad_request(format!("`limit` must be from 1 to {MAX_PAGE}")),
                    )?
            }
            _ => {}
        }
    }
    Ok((before, limit))
}

/// Every host that reported each image since it last became pending (an acknowledged image: the
/// reports its acknowledgement covered), so that a settled card still says where the image
/// runs: `{"<image>": [{"hostname": …, "last_seen": …, "metadata": …}]}`.
pub async fn hosts(state: AppState, method: Method, headers: HeaderMap) -> Response {
    respond(
        async {
            only_reads(&method)?;
            let mark = state.store.changes().mark();
            let reports = state.store.reporting_hosts().await?;
            Ok(with_change_mark(json_reply_negotiated(&headers, ByImage(reports)).await?, mark))
        }
        .await,
    )
}

/// Reports ordered by image, serialized as one array per image, without regrouping them.
struct ByImage(Vec<HostReport>);

impl Serialize for ByImage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer
            .collect_map(self.0.chunk_by(|a, b| a.image == b.image).map(|hosts| (&hosts[0].image, hosts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_and_validate() {
        assert_eq!(page("").unwrap(), (None, DEFAULT_PAGE));
        assert_eq!(page("limit=10&before=42").unwrap(), (Some(42), 10));
        assert_eq!(page("other=x&limit=500").unwrap(), (None, 500));
        for bad in ["limit=0", "limit=501", "limit=x", "before=abc", "before="] {
            assert_eq!(page(bad).unwrap_err().status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
