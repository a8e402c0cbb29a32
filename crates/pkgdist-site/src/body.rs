//! The JSON body of a request to the site's node and link routes: a field given twice is
//! refused (the management API's own bodies, which are maps, go through `strict_value`), and
//! every failure — too large, not JSON, not the expected shape — answers in the API's one
//! error shape, not axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use pkgdist_core::errors::ErrorKind;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The most an enrollment (DP or child site) may send: a token, a credential, a URL, a code.
pub const ENROLL_BODY_MAX: usize = 16 << 10;

/// A request body of type `T`, read strictly (see the module documentation).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T> std::ops::Deref for JsonBody<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The body as a JSON value with no repeated key, or the API's error for it.
pub fn strict_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    pkgdist_proto::json::from_slice_strict(bytes)
        .map_err(|e| ApiError::new(ErrorKind::MalformedBody, format!("the body is not valid JSON: {e}")))
}

/// The API's error for a body that could not be read: too large, or cut off.
pub fn unreadable(e: &BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorKind::BodyTooLarge,
            "the request body is larger than the site accepts (max-body-bytes in site.toml)",
        )
    } else {
        ApiError::new(ErrorKind::MalformedBody, format!("cannot read the request body: {e}"))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| unreadable(&e))?;
        // Typed directly, with no JSON tree in between (a large report would cost several
        // times its size): a struct refuses a field given twice by itself.
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::new(
                ErrorKind::MalformedBody,
                format!("the body is not what this route takes: {e}"),
            )
        })
    }
}
