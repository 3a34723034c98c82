//! Errors of the runtime: [`ApiError`] for requests, [`RuntimeError`] for
//! starting and running a node.

use huddle_actors::RoomError;
use huddle_core::RoomStatus;
use huddle_storage::StorageError;

use crate::config::ConfigError;

/// Why a request failed. Each variant maps to one gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid {field}: {message}")]
    InvalidArgument { field: &'static str, message: String },
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("{what} `{value}` already exists")]
    AlreadyExists { what: &'static str, value: String },
    #[error("missing or invalid API key: send `authorization: Bearer <key>`")]
    Unauthenticated,
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("room cannot go from {from} to {to}")]
    InvalidTransition { from: RoomStatus, to: RoomStatus },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::InvalidArgument { field, message: message.into() }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound { what, id } => ApiError::NotFound { what, id },
            StorageError::AlreadyExists { what, value } => ApiError::AlreadyExists { what, value },
            e @ StorageError::Claimed { .. } => ApiError::PermissionDenied(e.to_string()),
            StorageError::Precondition(m) => ApiError::FailedPrecondition(m),
            StorageError::InvalidPageToken => ApiError::invalid("page_token", "not a token this server issued"),
            StorageError::Conflict { room_id, .. } => {
                ApiError::Aborted(format!("room `{room_id}` changed concurrently: retry the request"))
            }
            // The database's own words (sqlx's text: hosts, SQL, constraint names) stay in
            // the log, under a request id the caller is given.
            e if e.is_unavailable() => {
                let request_id = request_id();
                tracing::warn!(%request_id, error = %e, "database unavailable");
                ApiError::Unavailable(format!("database unavailable (request id {request_id}): retry shortly"))
            }
            e => {
                let request_id = request_id();
                tracing::error!(%request_id, error = %e, "storage error");
                ApiError::Internal(format!("storage failed (request id {request_id}): see the server log"))
            }
        }
    }
}

/// An id naming one failure in the log and in the answer to the caller.
fn request_id() -> String {
    huddle_core::new_id()
}

impl From<RoomError> for ApiError {
    fn from(e: RoomError) -> Self {
        match e {
            RoomError::NotFound { what, id } => ApiError::NotFound { what, id },
            RoomError::InvalidTransition { from, to } => ApiError::InvalidTransition { from, to },
            e @ (RoomError::Ended { .. }
            | RoomError::EntityInactive { .. }
            | RoomError::AlreadyLeft { .. }
            | RoomError::NotActive { .. }) => ApiError::FailedPrecondition(e.to_string()),
            e @ RoomError::Full { .. } => ApiError::ResourceExhausted(e.to_string()),
            RoomError::AlreadyJoined { identity } => {
                ApiError::AlreadyExists { what: "participant identity", value: identity }
            }
            e @ RoomError::Conflict { .. } => ApiError::Aborted(e.to_string()),
            e @ (RoomError::Restarting { .. } | RoomError::Unavailable(_) | RoomError::ShuttingDown) => {
                ApiError::Unavailable(e.to_string())
            }
            RoomError::Storage(s) => s.into(),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        use tonic::Status;
        let msg = e.to_string();
        match e {
            ApiError::InvalidArgument { .. } => Status::invalid_argument(msg),
            ApiError::NotFound { .. } => Status::not_found(msg),
            ApiError::AlreadyExists { .. } => Status::already_exists(msg),
            ApiError::Unauthenticated => Status::unauthenticated(msg),
            ApiError::PermissionDenied(_) => Status::permission_denied(msg),
            ApiError::InvalidTransition { .. } | ApiError::FailedPrecondition(_) => Status::failed_precondition(msg),
            ApiError::ResourceExhausted(_) => Status::resource_exhausted(msg),
            ApiError::Aborted(_) => Status::aborted(msg),
            ApiError::Unavailable(_) => Status::unavailable(msg),
            ApiError::DeadlineExceeded(_) => Status::deadline_exceeded(msg),
            ApiError::Internal(_) => Status::internal(msg),
        }
    }
}

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open database: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot start the actor system: {0}")]
    Actors(String),
    #[error("cannot listen on {addr}: {source} (is another huddle running? pick another port)")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("admin key file {path}: {source}")]
    AdminKeyFile { path: String, source: std::io::Error },
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
}
