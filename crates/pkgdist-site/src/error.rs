//! Errors: the daemon's own ([`SiteError`]) and the API's ([`ApiError`]), which answers with a
//! non-zero `ReturnValue` and an `SMS_ExtendedStatus`-shaped body.

use std::path::Path;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pkgdist_core::errors::ErrorKind;
use pkgdist_proto::{ErrorBody, ExtendedStatus, ODataError};

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Db(#[from] pkgdist_db::DbError),
    #[error(transparent)]
    Content(#[from] pkgdist_content::ContentError),
    #[error("TLS: {0}")]
    Tls(#[from] pkgdist_node::tls::TlsError),
}

impl SiteError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// An API failure. Every constructor says what went wrong in words an administrator can act on.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub operation: String,
    pub parameter: String,
    pub object: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            operation: String::new(),
            parameter: String::new(),
            object: String::new(),
        }
    }

    pub fn param(mut self, p: impl Into<String>) -> Self {
        self.parameter = p.into();
        self
    }

    pub fn object(mut self, o: impl Into<String>) -> Self {
        self.object = o.into();
        self
    }

    pub fn op(mut self, o: impl Into<String>) -> Self {
        if self.operation.is_empty() {
            self.operation = o.into();
        }
        self
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            ErrorKind::Internal,
            format!("internal error: {e}. The request was not applied; see the site log"),
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            ReturnValue: self.kind.return_value(),
            error: ODataError {
                code: self.kind.name().into(),
                message: self.message.clone(),
            },
            ExtendedStatus: ExtendedStatus {
                class: "SMS_ExtendedStatus".into(),
                ErrorCode: self.kind.error_code(),
                Description: self.message.clone(),
                Operation: self.operation.clone(),
                ParameterInfo: self.parameter.clone(),
                ObjectInfo: self.object.clone(),
                ProviderName: "pkgdist".into(),
            },
        }
    }
}

impl From<pkgdist_db::DbError> for ApiError {
    fn from(e: pkgdist_db::DbError) -> Self {
        match e {
            pkgdist_db::DbError::Conflict(what) => {
                ApiError::new(ErrorKind::NameTaken, format!("{what}; choose another"))
            }
            pkgdist_db::DbError::Deleting(_) => ApiError::new(ErrorKind::InvalidState, e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // What a client may answer with: a bearer token, or the token as a Basic password.
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(r#"Bearer realm="pkgdist", Basic realm="pkgdist""#),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
