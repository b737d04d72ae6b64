//! The gRPC implementation of `smb.auth.v1.AuthService`.

use std::sync::Arc;
use std::time::Duration;

use smb_core::Error;
use smb_core::cache::{DynCache, keys};
use smb_core::config::AuthConfig;
use smb_core::crypto::{random_token, sha256_hex};
use smb_core::ids::{Currency, Email, SessionId, TenantId, TimeZone, UserId, truncate};
use smb_core::store::{Db, now_ms};
use smb_proto::auth::v1 as pb;
use smb_proto::auth::v1::auth_service_server::AuthService;
use tonic::{Request, Response, Status};

use crate::keys::KeyRing;
use crate::token::{Claims, sign};
use crate::{password, store};

/// How long a live session stays in the cache before it is checked against the store again.
const SESSION_CACHE_TTL: Duration = Duration::from_secs(3600);

pub struct AuthServiceImpl {
    db: Db,
    cache: DynCache,
    keys: Arc<KeyRing>,
    cfg: AuthConfig,
}

/// A signup, parsed: nothing invalid gets past this.
struct Signup {
    tenant_name: String,
    email: Email,
    password: String,
    timezone: TimeZone,
    currency: Currency,
}

impl TryFrom<pb::SignupRequest> for Signup {
    type Error = Error;
    fn try_from(r: pb::SignupRequest) -> Result<Self, Error> {
        let pb::SignupRequest {
            tenant_name,
            email,
            password,
            timezone,
            currency,
        } = r;
        let tenant_name = tenant_name.trim().to_string();
        if tenant_name.is_empty() || tenant_name.chars().count() > 200 {
            return Err(Error::invalid(
                "tenant_name must be 1 to 200 characters: the name of your business",
            ));
        }
        if tenant_name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "tenant_name must not contain control characters",
            ));
        }
        password::check_policy(&password)?;
        Ok(Self {
            tenant_name,
            email: Email::parse(&email)?,
            password,
            timezone: TimeZone::parse(&timezone)?,
            currency: Currency::parse(&currency)?,
        })
    }
}

fn bad_credentials() -> Error {
    Error::unauthenticated("email or password is incorrect")
}

fn role_enum(role: &str) -> i32 {
    match role {
        "owner" => pb::Role::Owner as i32,
        _ => pb::Role::Member as i32,
    }
}

impl AuthServiceImpl {
    pub fn new(db: Db, cache: DynCache, keys: Arc<KeyRing>, cfg: AuthConfig) -> Self {
        Self {
            db,
            cache,
            keys,
            cfg,
        }
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    async fn hash_password(pw: String) -> Result<String, Error> {
        tokio::task::spawn_blocking(move || password::hash(&pw))
            .await
            .map_err(|e| Error::internal("argon2 task", e))?
    }

    async fn issue(
        &self,
        tenant: &str,
        user: &str,
        role: &str,
        session: &SessionId,
        refresh: String,
    ) -> Result<pb::TokenPair, Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.cfg.issuer.clone(),
            aud: self.cfg.audience.clone(),
            sub: user.to_string(),
            tid: tenant.to_string(),
            sid: session.to_string(),
            role: role.to_string(),
            iat: now,
            nbf: Some(now),
            exp: now + self.cfg.access_ttl_secs as i64,
        };
        let access = sign(&self.keys, &claims)?;
        self.cache
            .set(&keys::session(session), "active", SESSION_CACHE_TTL)
            .await?;
        Ok(pb::TokenPair {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer".into(),
            expires_in: self.cfg.access_ttl_secs as i64,
            tenant_id: tenant.to_string(),
            user_id: user.to_string(),
            role: role_enum(role),
        })
    }

    fn refresh_ttl_ms(&self) -> i64 {
        (self.cfg.refresh_ttl_days * 86_400_000) as i64
    }

    /// Refuses a login attempt when the account or the address has failed too often in the window.
    async fn check_lockout(&self, account_key: &str, addr_key: Option<&str>) -> Result<(), Error> {
        let count = |v: Option<String>| v.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let window = self.cfg.lockout_window_secs;
        if count(self.cache.get(account_key).await?) >= self.cfg.max_failures_per_account {
            return Err(Error {
                message: "too many failed logins for this account; wait and try again, or reset your password".into(),
                ..Error::rate_limited(window)
            });
        }
        if let Some(k) = addr_key
            && count(self.cache.get(k).await?) >= self.cfg.max_failures_per_addr
        {
            return Err(Error {
                message: "too many failed logins from this address; wait and try again".into(),
                ..Error::rate_limited(window)
            });
        }
        Ok(())
    }

    async fn signup(&self, req: pb::SignupRequest) -> Result<pb::SignupResponse, Error> {
        let s = Signup::try_from(req)?;
        let hash = Self::hash_password(s.password).await?;
        let tenant = TenantId::generate();
        let user = UserId::generate();
        let created = store::create_tenant(
            &self.db,
            store::NewTenant {
                tenant: &tenant,
                user: &user,
                name: &s.tenant_name,
                timezone: s.timezone.name(),
                currency: s.currency.as_str(),
                email: s.email.as_str(),
                password_hash: &hash,
                now: now_ms(),
            },
        )
        .await?;
        if !created {
            return Err(Error::new(
                smb_core::ErrorCode::AlreadyExists,
                "an account with this email already exists; log in instead",
            ));
        }
        tracing::info!(tenant_id = %tenant, "tenant created");
        Ok(pb::SignupResponse {
            tenant_id: tenant.to_string(),
            user_id: user.to_string(),
        })
    }

    /// An owner adds a user to their own tenant.
    pub async fn add_user(
        &self,
        caller: &smb_core::tenant::Caller,
        req: pb::AddUserRequest,
    ) -> Result<pb::AddUserResponse, Error> {
        if caller.role != "owner" {
            return Err(Error::new(
                smb_core::ErrorCode::PermissionDenied,
                "only an owner can add users; ask an owner of this business",
            ));
        }
        let role = match pb::Role::try_from(req.role) {
            Ok(pb::Role::Owner) => "owner",
            Ok(pb::Role::Member) => "member",
            _ => return Err(Error::invalid("role must be \"owner\" or \"member\"")),
        };
        password::check_policy(&req.password)?;
        let email = Email::parse(&req.email)?;
        let hash = Self::hash_password(req.password).await?;
        let user = UserId::generate();
        if !store::add_user(
            &self.db,
            &caller.tenant,
            &user,
            email.as_str(),
            &hash,
            role,
            now_ms(),
        )
        .await?
        {
            return Err(Error::new(
                smb_core::ErrorCode::AlreadyExists,
                "an account with this email already exists",
            ));
        }
        tracing::info!(tenant_id = %caller.tenant, role, "user added");
        Ok(pb::AddUserResponse {
            user_id: user.to_string(),
        })
    }

    async fn login(&self, req: pb::LoginRequest) -> Result<pb::TokenPair, Error> {
        let pb::LoginRequest {
            email,
            password,
            client_addr,
        } = req;
        if password.chars().count() > password::MAX_LEN {
            return Err(bad_credentials());
        }
        let email = Email::parse(&email).map_err(|_| bad_credentials())?;
        let account_key = keys::login_failures_account(&sha256_hex(email.as_str().as_bytes()));
        let addr_key = (!client_addr.is_empty())
            .then(|| keys::login_failures_addr(&truncate(&client_addr, 64)));
        self.check_lockout(&account_key, addr_key.as_deref())
            .await?;

        let user = store::user_by_email(&self.db, email.as_str()).await?;
        let stored = user.as_ref().map_or_else(
            || password::dummy_hash().to_string(),
            |u| u.password_hash.clone(),
        );
        let ok = tokio::task::spawn_blocking(move || password::verify(&password, &stored))
            .await
            .map_err(|e| Error::internal("argon2 task", e))?;
        let user = match (ok, user) {
            (true, Some(u)) => u,
            _ => {
                let window = Duration::from_secs(self.cfg.lockout_window_secs);
                self.cache.incr_window(&account_key, window).await?;
                if let Some(k) = &addr_key {
                    self.cache.incr_window(k, window).await?;
                }
                return Err(bad_credentials());
            }
        };
        self.cache.del(&account_key).await?;
        let session = SessionId::generate();
        let refresh = random_token(32);
        let now = now_ms();
        store::create_session(
            &self.db,
            &session,
            &user.tenant_id,
            &user.id,
            &sha256_hex(refresh.as_bytes()),
            now,
            now + self.refresh_ttl_ms(),
        )
        .await?;
        self.issue(&user.tenant_id, &user.id, &user.role, &session, refresh)
            .await
    }

    async fn refresh(&self, req: pb::RefreshRequest) -> Result<pb::TokenPair, Error> {
        let invalid =
            || Error::unauthenticated("refresh token is invalid or expired; log in again");
        if req.refresh_token.is_empty() || req.refresh_token.len() > 256 {
            return Err(invalid());
        }
        let new = random_token(32);
        let rotation = store::rotate_refresh(
            &self.db,
            &sha256_hex(req.refresh_token.as_bytes()),
            &sha256_hex(new.as_bytes()),
            now_ms(),
            self.refresh_ttl_ms(),
        )
        .await?;
        match rotation {
            store::Rotation::Rotated {
                tenant_id,
                user_id,
                role,
                session_id,
            } => {
                let session: SessionId = session_id.parse()?;
                self.issue(&tenant_id, &user_id, &role, &session, new).await
            }
            store::Rotation::Reused { session_id } => {
                tracing::warn!(session_id = %session_id, "refresh token reuse detected; session revoked");
                if let Ok(session) = session_id.parse::<SessionId>() {
                    self.cache.del(&keys::session(&session)).await?;
                }
                Err(Error::unauthenticated(
                    "this refresh token was already used, so the session has been ended for safety; log in again",
                ))
            }
            store::Rotation::Invalid => Err(invalid()),
        }
    }

    async fn logout(&self, req: pb::LogoutRequest) -> Result<(), Error> {
        let session: SessionId = req.session_id.parse()?;
        let tenant: TenantId = req.tenant_id.parse()?;
        store::revoke_session(&self.db, &session, &tenant, now_ms(), "logout").await?;
        self.cache.del(&keys::session(&session)).await?;
        Ok(())
    }

    async fn check_session(&self, session: &str) -> Result<bool, Error> {
        let Ok(session) = session.parse::<SessionId>() else {
            return Ok(false);
        };
        let key = keys::session(&session);
        if self.cache.get(&key).await?.is_some() {
            return Ok(true);
        }
        let active = store::session_active(&self.db, &session, now_ms()).await?;
        if active {
            self.cache.set(&key, "active", SESSION_CACHE_TTL).await?;
        }
        Ok(active)
    }
}

#[tonic::async_trait]
impl AuthService for AuthServiceImpl {
    async fn signup(
        &self,
        request: Request<pb::SignupRequest>,
    ) -> Result<Response<pb::SignupResponse>, Status> {
        Ok(Response::new(
            AuthServiceImpl::signup(self, request.into_inner()).await?,
        ))
    }

    async fn add_user(
        &self,
        request: Request<pb::AddUserRequest>,
    ) -> Result<Response<pb::AddUserResponse>, Status> {
        let caller = smb_core::tenant::Caller::from_request(&request)?;
        Ok(Response::new(
            AuthServiceImpl::add_user(self, &caller, request.into_inner()).await?,
        ))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::TokenPair>, Status> {
        Ok(Response::new(
            AuthServiceImpl::login(self, request.into_inner()).await?,
        ))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::TokenPair>, Status> {
        Ok(Response::new(
            AuthServiceImpl::refresh(self, request.into_inner()).await?,
        ))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let own = smb_core::tenant::session_of(&request).map(str::to_string);
        let req = request.into_inner();
        if own.as_deref() != Some(req.session_id.as_str()) {
            return Err(Error::unauthenticated(
                "logout needs the access token of the session it ends",
            )
            .into());
        }
        AuthServiceImpl::logout(self, req).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn get_jwks(
        &self,
        _: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        let keys = self
            .keys
            .public_keys()
            .iter()
            .map(|k| pb::Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: k.x.clone(),
                kid: k.kid.clone(),
                alg: "EdDSA".into(),
                r#use: "sig".into(),
            })
            .collect();
        Ok(Response::new(pb::GetJwksResponse { keys }))
    }

    async fn check_session(
        &self,
        request: Request<pb::CheckSessionRequest>,
    ) -> Result<Response<pb::CheckSessionResponse>, Status> {
        // Only the holder of a session's valid access token may ask about it.
        let own = smb_core::tenant::session_of(&request).map(str::to_string);
        let session = request.into_inner().session_id;
        if own.as_deref() != Some(session.as_str()) {
            return Err(Error::unauthenticated(
                "CheckSession needs the access token of the session it asks about",
            )
            .into());
        }
        let active = AuthServiceImpl::check_session(self, &session).await?;
        Ok(Response::new(pb::CheckSessionResponse { active }))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let caller = smb_core::tenant::Caller::from_request(&request)?;
        let tenant: TenantId = request.into_inner().tenant_id.parse()?;
        if tenant != caller.tenant {
            return Err(Error::not_found("tenant not found").into());
        }
        let t = store::tenant(&self.db, &tenant)
            .await?
            .ok_or_else(|| Error::not_found("tenant not found"))?;
        Ok(Response::new(pb::Tenant {
            id: t.id,
            name: t.name,
            timezone: t.timezone,
            currency: t.currency,
        }))
    }
}
