//! Access-token authentication: verifies the bearer token against the auth service's JWKS (refetched when a
//! token names an unknown `kid`, at most once a minute) and checks that its session is still live, so a
//! logout takes effect before the token expires.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smb_auth::keys::PublicKey;
use smb_auth::{Claims, TokenVerifier};
use smb_core::Error;
use smb_core::tenant::Caller;
use smb_proto::auth::v1 as pb;
use smb_proto::auth::v1::auth_service_server::AuthService;
use tokio::sync::RwLock;

pub struct Authenticator {
    auth: Arc<dyn AuthService>,
    issuer: String,
    audience: String,
    verifier: RwLock<(TokenVerifier, Instant)>,
}

/// An authenticated request: the caller and its session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub caller: Caller,
    pub session_id: String,
}

impl Authenticator {
    pub async fn new(
        auth: Arc<dyn AuthService>,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, Error> {
        let verifier = Self::fetch(&auth, issuer, audience).await?;
        Ok(Self {
            auth,
            issuer: issuer.into(),
            audience: audience.into(),
            verifier: RwLock::new((verifier, Instant::now())),
        })
    }

    async fn fetch(
        auth: &Arc<dyn AuthService>,
        issuer: &str,
        audience: &str,
    ) -> Result<TokenVerifier, Error> {
        let jwks = auth
            .get_jwks(tonic::Request::new(pb::GetJwksRequest {}))
            .await?
            .into_inner();
        let keys: Vec<PublicKey> = jwks
            .keys
            .into_iter()
            .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
            .map(|k| PublicKey { kid: k.kid, x: k.x })
            .collect();
        TokenVerifier::new(&keys, issuer, audience)
    }

    /// The caller behind an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, Error> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::unauthenticated(
                    "missing bearer token: send Authorization: Bearer <access_token>",
                )
            })?;
        let claims = self.verify(token).await?;
        let caller = Caller {
            tenant: claims
                .tid
                .parse()
                .map_err(|_| Error::unauthenticated("access token is invalid"))?,
            user: claims
                .sub
                .parse()
                .map_err(|_| Error::unauthenticated("access token is invalid"))?,
            role: claims.role.clone(),
        };
        let live = self
            .auth
            .check_session(tonic::Request::new(pb::CheckSessionRequest {
                session_id: claims.sid.clone(),
            }))
            .await?
            .into_inner()
            .active;
        if !live {
            return Err(Error::unauthenticated(
                "this session has ended (logged out or revoked); log in again",
            ));
        }
        Ok(Authenticated {
            caller,
            session_id: claims.sid,
        })
    }

    async fn verify(&self, token: &str) -> Result<Claims, Error> {
        {
            let guard = self.verifier.read().await;
            if guard.0.knows_kid(token) || guard.1.elapsed() < Duration::from_secs(60) {
                return guard.0.verify(token);
            }
        }
        // Unknown key id and the JWKS is over a minute old: the auth service may have rotated keys.
        let fresh = Self::fetch(&self.auth, &self.issuer, &self.audience).await?;
        let mut guard = self.verifier.write().await;
        *guard = (fresh, Instant::now());
        guard.0.verify(token)
    }
}
