//! Ed25519 signing keys. Embedded: PKCS#8 PEM files in `<data_dir>/keys/`, created on first start and
//! kept; the newest signs, all are published in the JWKS. Distributed: from configuration, first signs.
//! Rotation adds a key with a new `kid`; tokens signed by older keys verify until they expire.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::EncodingKey;
use secrecy::ExposeSecret;
use smb_core::config::SigningKeyConfig;

/// A public key as published in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    /// The raw 32-byte Ed25519 public key, base64url (JWK `x`).
    pub x: String,
}

pub struct KeyRing {
    signing_kid: String,
    signing: EncodingKey,
    public: Vec<PublicKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("signing_kid", &self.signing_kid)
            .field("public", &self.public)
            .finish()
    }
}

impl KeyRing {
    fn from_pems(mut pems: Vec<(String, String)>) -> anyhow::Result<Self> {
        anyhow::ensure!(!pems.is_empty(), "no signing keys");
        let mut public = Vec::new();
        for (kid, pem) in &pems {
            let sk = SigningKey::from_pkcs8_pem(pem).map_err(|e| {
                anyhow::anyhow!("signing key {kid} is not an Ed25519 PKCS#8 PEM: {e}")
            })?;
            public.push(PublicKey {
                kid: kid.clone(),
                x: URL_SAFE_NO_PAD.encode(sk.verifying_key().as_bytes()),
            });
        }
        let (kid, pem) = pems.swap_remove(0);
        let signing = EncodingKey::from_ed_pem(pem.as_bytes())?;
        Ok(Self {
            signing_kid: kid,
            signing,
            public,
        })
    }

    /// Keys from configuration (distributed deployments).
    pub fn from_config(keys: &[SigningKeyConfig]) -> anyhow::Result<Self> {
        Self::from_pems(
            keys.iter()
                .map(|k| (k.kid.clone(), k.private_key_pem.expose_secret().to_string()))
                .collect(),
        )
    }

    /// Keys from `<dir>` (embedded), creating the first one if there is none.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        if Self::read_dir(dir)?.is_empty() {
            Self::rotate(dir)?;
        }
        Self::from_pems(Self::read_dir(dir)?)
    }

    /// Adds a new signing key to `dir`; returns its kid. The next load signs with it.
    pub fn rotate(dir: &Path) -> anyhow::Result<String> {
        std::fs::create_dir_all(dir)?;
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = sk
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encode key: {e}"))?;
        let kid = format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%d%H%M%S%3f"),
            &smb_core::crypto::random_token(6)
        );
        let path = dir.join(format!("{kid}.pem"));
        write_private(&path, pem.as_bytes())?;
        Ok(kid)
    }

    /// `(kid, pem)` newest first.
    fn read_dir(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "pem")
                && let Some(kid) = path.file_stem().and_then(|s| s.to_str())
            {
                out.push((kid.to_string(), std::fs::read_to_string(&path)?));
            }
        }
        out.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(out)
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }
    pub fn signing_key(&self) -> &EncodingKey {
        &self.signing
    }
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.public
    }
}

/// Creates `path` (it must not exist) readable by its owner only, from the first byte: no window in which
/// another user could read it.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_kept_and_rotated() {
        let dir = std::env::temp_dir().join(format!("smb-keys-{}", uuid::Uuid::new_v4()));
        let a = KeyRing::load_or_create(&dir).unwrap();
        let b = KeyRing::load_or_create(&dir).unwrap();
        assert_eq!(a.signing_kid(), b.signing_kid());
        std::thread::sleep(std::time::Duration::from_millis(5));
        let new = KeyRing::rotate(&dir).unwrap();
        let c = KeyRing::load_or_create(&dir).unwrap();
        assert_eq!(c.signing_kid(), new);
        assert_eq!(c.public_keys().len(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
