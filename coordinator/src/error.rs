//! One mapping from the store's errors to what a caller of either service is told
//! ([`ApiError`], which becomes a `tonic::Status`): both services use it, neither owns it.

use muster_proto::ApiError;

use crate::store::StoreError;

/// So a handler writes `self.store.get_host(name).await?`.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        api_error(error)
    }
}

impl From<StoreError> for tonic::Status {
    fn from(error: StoreError) -> Self {
        api_error(error).into()
    }
}

/// Maps a store error for the caller; database failures are logged here with their whole chain.
pub fn api_error(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound { kind, name } => ApiError::NotFound { kind, name },
        StoreError::AlreadyExists { kind, name } => ApiError::AlreadyExists { kind, name },
        StoreError::TokenRefused { .. } => ApiError::PermissionDenied(error.to_string()),
        StoreError::Conflict(message) => ApiError::FailedPrecondition(message),
        StoreError::Invalid(message) => ApiError::InvalidArgument(message),
        StoreError::InvalidUrl { .. } => ApiError::InvalidArgument(error.to_string()),
        StoreError::Connect { .. } | StoreError::Migrate { .. } | StoreError::Database { .. } => {
            tracing::error!(error = %crate::error_chain(&error), "database failure");
            ApiError::Unavailable("the coordinator's database is unavailable; retry later".into())
        }
        StoreError::Corrupt(_) | StoreError::Secret(_) => {
            tracing::error!(error = %crate::error_chain(&error), "stored data cannot be read");
            ApiError::Internal("stored data cannot be read; see the coordinator's log".into())
        }
    }
}
