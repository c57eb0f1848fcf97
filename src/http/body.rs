//! Request bodies, read with a size cap that also holds for chunked uploads.
//!
//! warp's `content_length_limit` answers 411 when there is no `Content-Length` (warp#1140),
//! and webhook senders do send chunked bodies, so the cap is enforced while streaming.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::http::{HeaderMap, StatusCode, header};

use super::error::ApiError;

/// Every body this service accepts fits in 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;

/// How much of an oversized body is read and thrown away before answering 413. A client that
/// is still sending when the connection closes sees a reset instead of the answer; reading a
/// moderate excess lets ordinary clients get their 413, and the limits bound what a hostile
/// one can make us read.
const DRAIN_LIMIT: usize = 16 * MAX_BODY;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// How long a whole body may take to arrive.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {MAX_BODY} bytes"))
}

/// Reads the whole body, or answers 413 as soon as it exceeds [`MAX_BODY`].
pub async fn read_capped<S, B>(headers: &HeaderMap, body: S) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let mut body = std::pin::pin!(body);
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        // A client waiting for `100 Continue` has sent nothing yet: answer at once.
        let waiting =
            headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !waiting && declared.is_some_and(|length| length <= DRAIN_LIMIT as u64) {
            drain(&mut body, 0).await;
        }
        return Err(too_large());
    }
    let reading = async {
        let mut collected = BytesMut::with_capacity(declared.map_or(0, |length| length as usize));
        while let Some(chunk) = body.next().await {
            let mut chunk =
                chunk.map_err(|err| ApiError::bad_request(format!("cannot read the request body: {err}")))?;
            if collected.len() + chunk.remaining() > MAX_BODY {
                drain(&mut body, collected.len() + chunk.remaining()).await;
                return Err(too_large());
            }
            while chunk.has_remaining() {
                let piece = chunk.chunk();
                collected.extend_from_slice(piece);
                let read = piece.len();
                chunk.advance(read);
            }
        }
        Ok(collected.freeze())
    };
    // A client trickling its body must not hold a connection and a task forever.
    tokio::time::timeout(BODY_READ_TIMEOUT, reading).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs()),
        ))
    })
}

/// Reads and discards the rest of a body, within [`DRAIN_LIMIT`] and [`DRAIN_TIME`].
async fn drain<S, B>(body: &mut std::pin::Pin<&mut S>, mut read: usize)
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let discard = async {
        while read <= DRAIN_LIMIT {
            match body.next().await {
                Some(Ok(chunk)) => read += chunk.remaining(),
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}
