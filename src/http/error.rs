//! Errors as JSON replies, and the one handler for warp's own rejections.

use std::convert::Infallible;

use warp::http::{StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Rejection, reject};

use crate::store::StoreError;

/// An error answer: `{"error": "<message>"}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), allow: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 405 with the `Allow` header listing what the path accepts.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self::method_not_allowed_because(allow, format!("method not allowed; this path accepts {allow}"))
    }

    /// [`Self::method_not_allowed`] with a message of its own.
    pub fn method_not_allowed_because(allow: &'static str, message: impl Into<String>) -> Self {
        Self { allow: Some(allow), ..Self::new(StatusCode::METHOD_NOT_ALLOWED, message) }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What the client is told.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What a client is told of a database fault: the details are in the log only.
pub const INTERNAL_DATABASE_ERROR: &str = "internal database error; see the server log";

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::DuplicateTag => Self::new(StatusCode::CONFLICT, err.to_string()),
            StoreError::Unavailable(_) => {
                super::metrics::count_database_error();
                log::warn!("{err}");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
            }
            StoreError::Internal(_) => {
                super::metrics::count_database_error();
                log::error!("{err}");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_DATABASE_ERROR)
            }
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let body = warp::reply::json(&serde_json::json!({ "error": self.message }));
        let mut response = warp::reply::with_status(body, self.status).into_response();
        if let Some(allow) = self.allow {
            response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
        }
        response
    }
}

/// Turns a handler result into a response, error or not.
pub fn respond(result: Result<impl Reply, ApiError>) -> Response {
    match result {
        Ok(reply) => reply.into_response(),
        Err(err) => err.into_response(),
    }
}

/// Maps what warp rejects by itself (no route matched, bad headers) to the JSON error shape.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if rejection.find::<super::auth::Unauthorized>().is_some() {
        let mut response =
            ApiError::new(StatusCode::UNAUTHORIZED, "this dashboard needs a username and password")
                .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"diun-dashboard\", charset=\"UTF-8\""),
        );
        return Ok(response);
    }
    let error = if rejection.is_not_found() {
        ApiError::not_found("not found")
    } else if rejection.find::<reject::MethodNotAllowed>().is_some() {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else if rejection.find::<reject::PayloadTooLarge>().is_some() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
    } else if let Some(header) = rejection.find::<reject::InvalidHeader>() {
        ApiError::bad_request(format!("invalid header: {}", header.name()))
    } else if let Some(header) = rejection.find::<reject::MissingHeader>() {
        ApiError::bad_request(format!("missing header: {}", header.name()))
    } else {
        log::error!("unhandled rejection: {rejection:?}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    };
    Ok(error.into_response())
}
