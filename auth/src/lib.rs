//! Auth service (`smb.auth.v1.AuthService`): tenants and their users, Argon2id passwords, EdDSA access
//! tokens, rotating refresh tokens with reuse detection, and sessions that logout revokes at once.
//!
//! Invariants: passwords and refresh tokens are stored only as hashes; an unknown e-mail and a wrong
//! password get the same answer; a reused (already rotated) refresh token revokes its whole session.
//! Boundary: the only crate that writes `tenants`, `users`, `sessions` and `refresh_tokens`.

pub mod keys;
pub mod password;
pub mod service;
pub mod store;
pub mod token;

pub use keys::KeyRing;
pub use service::AuthServiceImpl;
pub use token::{Claims, TokenVerifier};
