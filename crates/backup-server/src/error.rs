//! API errors: every failure is answered as JSON `{"error": {"code", "message"[, "field"]}}`
//! with a matching HTTP status. Messages name the object involved (a job id, a target, a
//! field) and never contain a secret.

use http::StatusCode;
use serde::Serialize;

/// An error answered to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`unauthorized`, `invalid_field`, `not_found`, ...).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The request field at fault (for 400 on a body or query field).
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// 400 naming the request field at fault.
    pub fn field(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        let field = field.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            message: format!("{field}: {message}"),
            field: Some(field),
        }
    }

    /// 400 without a single field to blame (malformed JSON, ...).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 for a missing object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 for a failure of the server or its storage.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(&Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        })
        .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"error"}}"#.to_string())
    }

    /// Maps a `backup-core` error to a status by its kind; `field` names the request field
    /// the failing value came from, when there is one.
    pub fn from_core(e: backup_core::Error, field: Option<&str>) -> Self {
        use backup_core::ErrorKind as K;
        let (status, code) = match e.kind() {
            K::InvalidInput | K::Target => (StatusCode::BAD_REQUEST, "invalid_field"),
            K::SnapshotNotFound => (StatusCode::NOT_FOUND, "not_found"),
            K::Locked => (StatusCode::CONFLICT, "locked"),
            K::Destination => (StatusCode::BAD_REQUEST, "invalid_field"),
            K::WrongPassword | K::RepositoryNotFound | K::RepositoryExists => {
                (StatusCode::SERVICE_UNAVAILABLE, "repository_unavailable")
            }
            K::Corrupt => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt"),
            K::Store | K::Io | K::Catalog => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            K::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            K::Conflict => (StatusCode::CONFLICT, "conflict"),
        };
        match field {
            Some(f) if status == StatusCode::BAD_REQUEST => ApiError::field(f, e),
            _ => ApiError::new(status, code, e.to_string()),
        }
    }
}

impl From<backup_core::Error> for ApiError {
    fn from(e: backup_core::Error) -> Self {
        ApiError::from_core(e, None)
    }
}
