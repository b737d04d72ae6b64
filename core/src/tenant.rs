//! The authenticated caller, as the gateway established it. It travels to services in gRPC metadata and
//! reaches handlers as a typed value, never re-parsed from a token.

use crate::error::Error;
use crate::ids::{TenantId, UserId};

pub const TENANT_HEADER: &str = "x-smb-tenant-id";
pub const USER_HEADER: &str = "x-smb-user-id";

/// Who is calling: set by the gateway after it validated the access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub user: UserId,
    pub role: String,
}

impl Caller {
    /// Reads the caller from a request's metadata; a request without one is unauthenticated.
    pub fn from_metadata(md: &tonic::metadata::MetadataMap) -> Result<Self, Error> {
        let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let missing =
            || Error::unauthenticated("this call needs an authenticated tenant; log in and retry");
        let tenant = get(TENANT_HEADER)
            .ok_or_else(missing)?
            .parse()
            .map_err(|_| missing())?;
        let user = get(USER_HEADER)
            .ok_or_else(missing)?
            .parse()
            .map_err(|_| missing())?;
        let role = get("x-smb-role").unwrap_or_else(|| "member".into());
        Ok(Self { tenant, user, role })
    }

    /// Puts the caller into outgoing metadata.
    pub fn to_metadata(&self, md: &mut tonic::metadata::MetadataMap) {
        for (k, v) in [
            (TENANT_HEADER, self.tenant.as_str()),
            (USER_HEADER, self.user.as_str()),
            ("x-smb-role", &self.role),
        ] {
            if let Ok(v) = v.parse() {
                md.insert(k, v);
            }
        }
    }

    /// A request carrying this caller.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        self.to_metadata(r.metadata_mut());
        r
    }
}
