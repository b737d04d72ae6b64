//! Access-token authentication: verifies the bearer token against the auth service's JWKS and checks that its
//! session is still live, so a logout takes effect before the token expires. The JWKS is re-read when it is
//! older than `auth.jwks_refresh_secs` (so a removed key stops being trusted) and when a token names an
//! unknown `kid` (at most once per [`UNKNOWN_KID_INTERVAL`]); refreshes are single-flighted: requests that
//! arrive while one is in progress wait for it and use its result.
//!
//! A token whose signature was checked is remembered (by its SHA-256, with its claims) until it expires, so
//! a client's next requests skip the Ed25519 verification. The memory belongs to the key set that verified
//! it: a JWKS refresh starts an empty one, so a token signed by a removed key is not trusted from memory.

use std::sync::{Arc, RwLock as StdRwLock};
use std::time::{Duration, Instant};

use smb_auth::keys::PublicKey;
use smb_auth::{Claims, TokenVerifier};
use smb_core::Error;
use smb_core::tenant::{Caller, Session};
use smb_proto::auth::v1 as pb;
use smb_proto::auth::v1::auth_service_server::AuthService;

/// A burst of tokens with unknown key ids causes at most one JWKS fetch per this interval.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(10);

struct Keys {
    verifier: TokenVerifier,
    fetched: Instant,
    /// Tokens these keys verified, by SHA-256: their claims, used while `exp` has not passed.
    verified: moka::sync::Cache<[u8; 32], Arc<Claims>>,
}

/// At most this many verified tokens are remembered (about 0.5 KB each).
const VERIFIED_CAPACITY: u64 = 100_000;
/// No verified token is remembered longer than this, whatever its `exp`.
const VERIFIED_TTL: Duration = Duration::from_secs(3600);

impl Keys {
    fn new(verifier: TokenVerifier) -> Self {
        Self {
            verifier,
            fetched: Instant::now(),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
        }
    }

    /// The token's claims: remembered if these keys verified it before and it has not expired, else
    /// verified (signature, issuer, audience, times) and remembered. Past `exp` the verifier decides again
    /// (with its clock-skew tolerance), as it would for a token never seen.
    fn verify(&self, token: &str) -> Result<Arc<Claims>, Error> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        if let Some(c) = self.verified.get(&key)
            && now < c.exp
        {
            return Ok(c);
        }
        let claims = Arc::new(self.verifier.verify(token)?);
        if now < claims.exp {
            self.verified.insert(key, claims.clone());
        }
        Ok(claims)
    }
}

pub struct Authenticator {
    auth: Arc<dyn AuthService>,
    issuer: String,
    audience: String,
    keys: StdRwLock<Arc<Keys>>,
    refreshing: tokio::sync::Mutex<()>,
    max_age: Duration,
}

/// An authenticated request: the caller, its session and the verified token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub caller: Caller,
    pub session_id: String,
    /// The access token as the client sent it, forwarded to the service that handles the call so that
    /// the service verifies it again (over the wire, a service trusts no header).
    pub token: String,
}

impl Authenticated {
    /// A request on this caller's behalf: the caller and session as extensions (read by a service in
    /// this process), the token as `authorization` metadata (verified by a service in another process).
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = self.caller.request(msg);
        r.extensions_mut().insert(Session(self.session_id.clone()));
        if let Ok(v) = format!("Bearer {}", self.token).parse() {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }
}

impl Authenticator {
    /// `max_age`: how long a fetched JWKS is used before it is read again.
    pub async fn new(
        auth: Arc<dyn AuthService>,
        issuer: &str,
        audience: &str,
        max_age: Duration,
    ) -> Result<Self, Error> {
        let verifier = Self::fetch(&auth, issuer, audience).await?;
        Ok(Self {
            auth,
            issuer: issuer.into(),
            audience: audience.into(),
            keys: StdRwLock::new(Arc::new(Keys::new(verifier))),
            refreshing: tokio::sync::Mutex::new(()),
            max_age,
        })
    }

    fn current(&self) -> Arc<Keys> {
        self.keys.read().expect("jwks lock").clone()
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

    /// The caller behind an `Authorization` header value: a valid token of a live session.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, Error> {
        let a = self.verify_header(authorization).await?;
        let live = self
            .auth
            .check_session(a.request(pb::CheckSessionRequest {
                session_id: a.session_id.clone(),
            }))
            .await?
            .into_inner()
            .active;
        if !live {
            return Err(Error::unauthenticated(
                "this session has ended (logged out or revoked); log in again",
            ));
        }
        Ok(a)
    }

    /// The caller behind an `Authorization` header value, from the token alone (signature, issuer,
    /// audience and times), without asking whether its session is still live.
    pub async fn verify_header(&self, authorization: Option<&str>) -> Result<Authenticated, Error> {
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
        let invalid = || Error::unauthenticated("access token is invalid");
        Ok(Authenticated {
            caller: Caller {
                tenant: claims.tid.parse().map_err(|_| invalid())?,
                user: claims.sub.parse().map_err(|_| invalid())?,
                role: claims.role.clone(),
            },
            session_id: claims.sid.clone(),
            token: token.to_string(),
        })
    }

    async fn verify(&self, token: &str) -> Result<Arc<Claims>, Error> {
        let cur = self.current();
        let unknown = !cur.verifier.knows_kid(token);
        let stale = cur.fetched.elapsed() >= self.max_age;
        if (unknown || stale)
            && let Some(fresh) = self.refresh(&cur, unknown, stale).await
        {
            return fresh.verify(token);
        }
        cur.verify(token)
    }

    /// Re-reads the JWKS, once for everyone waiting: a caller that waited for a refresh in progress uses
    /// its result. `None`: keep the keys we have (an unknown kid seen too recently, or the fetch failed).
    async fn refresh(&self, seen: &Arc<Keys>, unknown: bool, stale: bool) -> Option<Arc<Keys>> {
        let _one = self.refreshing.lock().await;
        let cur = self.current();
        if cur.fetched > seen.fetched {
            return Some(cur);
        }
        if !stale && unknown && cur.fetched.elapsed() < UNKNOWN_KID_INTERVAL {
            return None;
        }
        match Self::fetch(&self.auth, &self.issuer, &self.audience).await {
            Ok(verifier) => {
                let fresh = Arc::new(Keys::new(verifier));
                *self.keys.write().expect("jwks lock") = fresh.clone();
                Some(fresh)
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS not refreshed; keeping the keys we have");
                None
            }
        }
    }
}

/// The verifying layer of a service in the split deployment (`smb serve`): the bearer token in a request's
/// `authorization` metadata, checked by an [`Authenticator`], becomes the request's [`Caller`] and
/// [`Session`] extensions. A request without a valid token reaches the service without a caller, and every
/// handler that needs one refuses it as unauthenticated; headers such as `x-smb-tenant-id` mean nothing.
#[derive(Clone)]
pub struct VerifyCallers {
    authn: Arc<Authenticator>,
    /// Also require the session to be live (every service but auth, which answers that question itself).
    live_session: bool,
}

impl VerifyCallers {
    pub fn layer(
        authn: Arc<Authenticator>,
        live_session: bool,
    ) -> tower::filter::AsyncFilterLayer<Self> {
        tower::filter::AsyncFilterLayer::new(Self {
            authn,
            live_session,
        })
    }
}

impl<B: Send + 'static> tower::filter::AsyncPredicate<http::Request<B>> for VerifyCallers {
    type Future = futures::future::BoxFuture<'static, Result<http::Request<B>, tower::BoxError>>;
    type Request = http::Request<B>;

    fn check(&mut self, mut req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let ext = req.extensions_mut();
            ext.remove::<Caller>();
            ext.remove::<Session>();
            let header = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if let Some(h) = header {
                let verified = if this.live_session {
                    this.authn.authenticate(Some(&h)).await
                } else {
                    this.authn.verify_header(Some(&h)).await
                };
                match verified {
                    Ok(a) => {
                        req.extensions_mut().insert(a.caller);
                        req.extensions_mut().insert(Session(a.session_id));
                    }
                    Err(e) => tracing::debug!(error = %e, "call with an invalid token"),
                }
            }
            Ok(req)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use smb_auth::{AuthServiceImpl, KeyRing};
    use smb_core::cache::MemoryCache;
    use smb_core::config::AuthConfig;
    use smb_core::store::Db;
    use smb_proto::auth::v1::auth_service_server::AuthService;
    use tonic::{Request, Response, Status};

    use super::*;

    /// The real auth service behind a counter of JWKS reads; the service can be swapped (a key rotation
    /// that removes a key). Only the JWKS is read by verification.
    struct Counting {
        inner: Mutex<Arc<AuthServiceImpl>>,
        jwks: AtomicUsize,
    }

    #[tonic::async_trait]
    impl AuthService for Counting {
        async fn get_jwks(
            &self,
            r: Request<pb::GetJwksRequest>,
        ) -> Result<Response<pb::GetJwksResponse>, Status> {
            self.jwks.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let inner = self.inner.lock().unwrap().clone();
            inner.get_jwks(r).await
        }
        async fn signup(
            &self,
            _: Request<pb::SignupRequest>,
        ) -> Result<Response<pb::SignupResponse>, Status> {
            Err(Status::unimplemented("not used"))
        }
        async fn login(
            &self,
            _: Request<pb::LoginRequest>,
        ) -> Result<Response<pb::TokenPair>, Status> {
            Err(Status::unimplemented("not used"))
        }
        async fn refresh(
            &self,
            _: Request<pb::RefreshRequest>,
        ) -> Result<Response<pb::TokenPair>, Status> {
            Err(Status::unimplemented("not used"))
        }
        async fn logout(
            &self,
            _: Request<pb::LogoutRequest>,
        ) -> Result<Response<pb::LogoutResponse>, Status> {
            Err(Status::unimplemented("not used"))
        }
        async fn add_user(
            &self,
            _: Request<pb::AddUserRequest>,
        ) -> Result<Response<pb::AddUserResponse>, Status> {
            Err(Status::unimplemented("not used"))
        }
        async fn check_session(
            &self,
            _: Request<pb::CheckSessionRequest>,
        ) -> Result<Response<pb::CheckSessionResponse>, Status> {
            Err(Status::unimplemented("not used"))
        }
        async fn get_tenant(
            &self,
            _: Request<pb::GetTenantRequest>,
        ) -> Result<Response<pb::Tenant>, Status> {
            Err(Status::unimplemented("not used"))
        }
    }

    async fn service(dir: &std::path::Path, name: &str) -> (Arc<AuthServiceImpl>, Arc<KeyRing>) {
        let db = Db::open_sqlite(&dir.join(format!("{name}.db")), 1)
            .await
            .unwrap();
        let keys = Arc::new(KeyRing::load_or_create(&dir.join(name)).unwrap());
        let svc = AuthServiceImpl::new(
            db,
            Arc::new(MemoryCache::new("")),
            keys.clone(),
            AuthConfig::default(),
        );
        (Arc::new(svc), keys)
    }

    fn token(keys: &KeyRing, kid: Option<&str>) -> String {
        let now = chrono::Utc::now().timestamp();
        let cfg = AuthConfig::default();
        let claims = Claims {
            iss: cfg.issuer,
            aud: cfg.audience,
            sub: "u".into(),
            tid: "t".into(),
            sid: "s".into(),
            role: "owner".into(),
            iat: now,
            nbf: Some(now),
            exp: now + 60,
        };
        let t = smb_auth::token::sign(keys, &claims).unwrap();
        match kid {
            // Same signature, another kid in the header: what a forger would try.
            Some(k) => {
                use base64::Engine;
                let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let parts: Vec<&str> = t.split('.').collect();
                let header = format!("{{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"{k}\"}}");
                format!("{}.{}.{}", b.encode(header), parts[1], parts[2])
            }
            None => t,
        }
    }

    #[tokio::test]
    async fn unknown_kid_bursts_fetch_once_and_removed_keys_stop_being_trusted() {
        let dir = std::env::temp_dir().join(format!("smb-authn-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let (first, first_keys) = service(&dir, "a").await;
        let counting = Arc::new(Counting {
            inner: Mutex::new(first),
            jwks: AtomicUsize::new(0),
        });
        let authn = Arc::new(
            Authenticator::new(
                counting.clone(),
                &AuthConfig::default().issuer,
                &AuthConfig::default().audience,
                Duration::from_millis(300),
            )
            .await
            .unwrap(),
        );
        assert_eq!(counting.jwks.load(Ordering::SeqCst), 1);
        let good = token(&first_keys, None);
        assert!(authn.verify(&good).await.is_ok());

        // 200 concurrent tokens naming random unknown kids: one fetch at most.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (a, t) = (
                authn.clone(),
                token(&first_keys, Some(&format!("forged-{i}"))),
            );
            tasks.push(tokio::spawn(async move { a.verify(&t).await.is_err() }));
        }
        for t in tasks {
            assert!(t.await.unwrap(), "a forged kid is refused");
        }
        assert!(
            counting.jwks.load(Ordering::SeqCst) <= 2,
            "fetches: {}",
            counting.jwks.load(Ordering::SeqCst)
        );

        // The auth service rotates to a new ring without the old key: once the JWKS is older than its
        // max age, tokens of the removed key are refused.
        let (second, second_keys) = service(&dir, "b").await;
        *counting.inner.lock().unwrap() = second;
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(
            authn.verify(&good).await.is_err(),
            "removed key no longer trusted"
        );
        assert!(authn.verify(&token(&second_keys, None)).await.is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
