//! Request bodies, read with a size cap that also holds for chunked uploads.
//!
//! warp's `content_length_limit` answers 411 when there is no `Content-Length` (warp#1140),
//! and webhook senders do send chunked bodies, so the cap is enforced while streaming.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::http::{HeaderMap, StatusCode, header};

use super::error::ApiError;

/// Every body this service accepts fits in 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;

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
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut collected = BytesMut::with_capacity(declared.map_or(0, |length| length as usize));
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|err| ApiError::bad_request(format!("cannot read the request body: {err}")))?;
        if collected.len() + chunk.remaining() > MAX_BODY {
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
}
