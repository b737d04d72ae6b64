//! Small cryptographic helpers shared by services: hashing of opaque tokens, AES-256-GCM sealing of
//! credentials at rest, and constant-time comparison.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// SHA-256 of a token, hex. Opaque tokens are stored only as this.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `n` random bytes, URL-safe base64 without padding.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Seals secrets at rest with AES-256-GCM: `base64(nonce || ciphertext)`.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    /// From a base64-encoded 32-byte key.
    pub fn from_base64(key: &str) -> Result<Self, String> {
        let raw = STANDARD
            .decode(key.trim())
            .map_err(|_| "encryption key is not valid base64".to_string())?;
        if raw.len() != 32 {
            return Err(format!(
                "encryption key must be 32 bytes, got {}",
                raw.len()
            ));
        }
        Ok(Self {
            cipher: Aes256Gcm::new_from_slice(&raw).map_err(|e| e.to_string())?,
        })
    }

    /// A fresh random key, base64.
    pub fn generate_key() -> String {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        STANDARD.encode(k)
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<String, Error> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(&Nonce::from(nonce), plaintext)
            .map_err(|e| Error::internal("seal", e))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, Error> {
        let raw = STANDARD
            .decode(sealed)
            .map_err(|e| Error::internal("open", e))?;
        if raw.len() < 12 {
            return Err(Error::internal("open", "sealed value too short"));
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|e| Error::internal("open", e))?;
        self.cipher
            .decrypt(&Nonce::from(nonce), ct)
            .map_err(|e| Error::internal("open", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_tamper_detection() {
        let s = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let sealed = s.seal(b"shpat_secret").unwrap();
        assert!(!sealed.contains("shpat"));
        assert_eq!(s.open(&sealed).unwrap(), b"shpat_secret");
        let other = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
    }
}
