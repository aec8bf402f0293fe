//! The one mapping from Muster's errors to `tonic::Status`, and back for clients.

use tonic::{Code, Status};

/// What went wrong with a request, in terms a caller can act on. Services convert their own
/// errors into this and return it as a `Status`; the message is for people and never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    /// Details are logged where the error is handled; the caller sees only this text.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            ApiError::NotFound { .. } => Code::NotFound,
            ApiError::AlreadyExists { .. } => Code::AlreadyExists,
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let mut status = Status::new(error.code(), error.to_string());
        if matches!(error, ApiError::Unavailable(_)) {
            status.metadata_mut().insert(
                crate::daemon::RETRY_AFTER_MS,
                tonic::metadata::MetadataValue::from(UNAVAILABLE_RETRY_AFTER_MS),
            );
        }
        status
    }
}

/// The retry hint every `UNAVAILABLE` answer carries ([`crate::daemon::retry_hint`]): long enough
/// for an overload or a database failover to pass, short enough not to be noticed otherwise.
pub const UNAVAILABLE_RETRY_AFTER_MS: u64 = 1000;

impl From<crate::validate::Invalid> for ApiError {
    fn from(error: crate::validate::Invalid) -> Self {
        ApiError::InvalidArgument(error.to_string())
    }
}

impl From<crate::token::Malformed> for ApiError {
    fn from(error: crate::token::Malformed) -> Self {
        ApiError::InvalidArgument(error.to_string())
    }
}
