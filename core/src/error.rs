//! The one table that maps error codes to gRPC and HTTP. Conversions have no side effects and never carry
//! internals to the caller: internal causes are logged where they happen and replaced by a generic message.

use std::fmt;

/// A deliberately small set of error codes, each with a gRPC code and an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    RateLimited,
    PayloadTooLarge,
    Unavailable,
    /// The work did not finish within its deadline.
    Timeout,
    Internal,
}

impl ErrorCode {
    pub const fn grpc(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::RateLimited => tonic::Code::ResourceExhausted,
            Self::PayloadTooLarge => tonic::Code::OutOfRange,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Timeout => tonic::Code::DeadlineExceeded,
            Self::Internal => tonic::Code::Internal,
        }
    }

    pub const fn http(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::InvalidArgument => S::BAD_REQUEST,
            Self::Unauthenticated => S::UNAUTHORIZED,
            Self::PermissionDenied => S::FORBIDDEN,
            Self::NotFound => S::NOT_FOUND,
            Self::AlreadyExists => S::CONFLICT,
            Self::FailedPrecondition => S::UNPROCESSABLE_ENTITY,
            Self::RateLimited => S::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            Self::Unavailable => S::SERVICE_UNAVAILABLE,
            Self::Timeout => S::GATEWAY_TIMEOUT,
            Self::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable string used in JSON error bodies.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::FailedPrecondition => "failed_precondition",
            Self::RateLimited => "rate_limited",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
        }
    }

    pub fn from_grpc(code: tonic::Code) -> Self {
        use tonic::Code as C;
        match code {
            C::InvalidArgument => Self::InvalidArgument,
            C::Unauthenticated => Self::Unauthenticated,
            C::PermissionDenied => Self::PermissionDenied,
            C::NotFound => Self::NotFound,
            C::AlreadyExists => Self::AlreadyExists,
            C::FailedPrecondition => Self::FailedPrecondition,
            C::ResourceExhausted => Self::RateLimited,
            C::OutOfRange => Self::PayloadTooLarge,
            C::Unavailable => Self::Unavailable,
            C::DeadlineExceeded => Self::Timeout,
            _ => Self::Internal,
        }
    }
}

/// An error fit to show a user: a code and a message saying what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds to wait before retrying, for rate limits.
    pub retry_after: Option<u64>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: format!("too many requests; retry in {retry_after} s"),
            retry_after: Some(retry_after),
        }
    }
    /// An internal failure. The cause is logged here, once; the caller sees a generic message.
    pub fn internal(context: &str, cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, context, "internal error");
        Self::new(
            ErrorCode::Internal,
            "an internal error occurred; please retry, and contact support if it persists",
        )
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::internal("database", e)
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let mut s = tonic::Status::new(e.code.grpc(), e.message);
        if let Some(secs) = e.retry_after
            && let Ok(v) = secs.to_string().parse()
        {
            s.metadata_mut().insert("retry-after", v);
        }
        s
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        let code = ErrorCode::from_grpc(s.code());
        let retry_after = s
            .metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let message = if code == ErrorCode::Internal && s.message().is_empty() {
            "an internal error occurred; please retry".to_string()
        } else {
            s.message().to_string()
        };
        Self {
            code,
            message,
            retry_after,
        }
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let body =
            serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}});
        let mut resp = (self.code.http(), axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_code_message_and_retry_after() {
        let e = Error::rate_limited(7);
        let s: tonic::Status = e.clone().into();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(Error::from(s), e);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = Error::internal("test", "password=hunter2 at db.internal:5432");
        assert!(!e.message.contains("hunter2"));
        assert_eq!(e.code.http(), http::StatusCode::INTERNAL_SERVER_ERROR);
    }
}
