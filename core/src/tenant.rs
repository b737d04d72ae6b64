//! The authenticated caller. It reaches handlers as a typed value in the request's extensions, which only
//! code in the same process can set: the gateway after it verified the access token, a service's own
//! verifying layer (`smb serve`: the bearer token forwarded in the `authorization` metadata, verified
//! against the auth service's keys), or the platform itself for work it does on a tenant's behalf.
//! Nothing a client or another pod writes into headers becomes a caller.

use crate::error::Error;
use crate::ids::{TenantId, UserId};

/// Who is calling, as established from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub user: UserId,
    pub role: String,
}

/// The session of a verified access token, beside its [`Caller`] in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session(pub String);

impl Caller {
    /// The verified caller of a request; a request without one is unauthenticated.
    pub fn from_request<T>(req: &tonic::Request<T>) -> Result<Self, Error> {
        req.extensions().get::<Caller>().cloned().ok_or_else(|| {
            Error::unauthenticated(
                "this call needs a valid access token: send Authorization: Bearer <access_token>",
            )
        })
    }

    /// A request carrying this caller, for a service in the same process.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.extensions_mut().insert(self.clone());
        r
    }
}

/// The verified session of a request, if any.
pub fn session_of<T>(req: &tonic::Request<T>) -> Option<&str> {
    req.extensions().get::<Session>().map(|s| s.0.as_str())
}
