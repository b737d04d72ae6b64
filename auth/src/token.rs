//! Access tokens: EdDSA (Ed25519) JWTs. Verification is pinned to EdDSA and requires `exp`, `iss` and
//! `aud`; the key is chosen by the header's `kid` from the JWKS, never from anything else in the token.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use smb_core::Error;

use crate::keys::{KeyRing, PublicKey};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The tenant id.
    pub tid: String,
    /// The session id.
    pub sid: String,
    pub role: String,
    pub iat: i64,
    /// Not valid before (seconds); tokens we sign carry it, equal to `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
}

/// Signs claims with the ring's current key, naming it in `kid`.
pub fn sign(keys: &KeyRing, claims: &Claims) -> Result<String, Error> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keys.signing_kid().to_string());
    jsonwebtoken::encode(&header, claims, keys.signing_key())
        .map_err(|e| Error::internal("jwt sign", e))
}

/// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY: u64 = 5;

/// Verifies access tokens against a set of public keys (the JWKS).
#[derive(Clone)]
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(public: &[PublicKey], issuer: &str, audience: &str) -> Result<Self, Error> {
        let mut keys = HashMap::new();
        for k in public {
            let dk =
                DecodingKey::from_ed_components(&k.x).map_err(|e| Error::internal("jwks", e))?;
            keys.insert(k.kid.clone(), dk);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.leeway = LEEWAY;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Ok(Self { keys, validation })
    }

    /// Whether a token names a key this verifier does not know (the JWKS may have rotated).
    pub fn knows_kid(&self, token: &str) -> bool {
        jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|h| h.kid)
            .is_some_and(|k| self.keys.contains_key(&k))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        let bad = || {
            Error::unauthenticated("access token is invalid or expired; log in again or refresh it")
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad())?;
        if header.alg != Algorithm::EdDSA {
            return Err(bad());
        }
        let key = header
            .kid
            .as_ref()
            .and_then(|k| self.keys.get(k))
            .ok_or_else(bad)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
            tracing::debug!(error = %e, "access token rejected");
            bad()
        })?;
        // Issued in the future: a clock or a forger we do not trust.
        if data.claims.iat > chrono::Utc::now().timestamp() + LEEWAY as i64 {
            tracing::debug!("access token issued in the future");
            return Err(bad());
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn ring() -> (KeyRing, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("smb-tok-{}", uuid::Uuid::new_v4()));
        (KeyRing::load_or_create(&dir).unwrap(), dir)
    }

    fn claims(exp_in: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            iss: "iss".into(),
            aud: "aud".into(),
            sub: "u".into(),
            tid: "t".into(),
            sid: "s".into(),
            role: "owner".into(),
            iat: now,
            nbf: Some(now),
            exp: now + exp_in,
        }
    }

    #[test]
    fn accepts_its_own_tokens_and_rejects_attacks() {
        let (keys, dir) = ring();
        let v = TokenVerifier::new(keys.public_keys(), "iss", "aud").unwrap();
        let good = sign(&keys, &claims(60)).unwrap();
        assert_eq!(v.verify(&good).unwrap().tid, "t");

        // expired
        assert!(v.verify(&sign(&keys, &claims(-60)).unwrap()).is_err());
        // not yet valid, or issued in the future
        let mut c = claims(600);
        c.nbf = Some(c.iat + 300);
        assert!(v.verify(&sign(&keys, &c).unwrap()).is_err());
        let mut c = claims(600);
        c.iat += 300;
        c.nbf = None;
        assert!(v.verify(&sign(&keys, &c).unwrap()).is_err());
        // wrong audience / issuer
        let mut c = claims(60);
        c.aud = "other".into();
        assert!(v.verify(&sign(&keys, &c).unwrap()).is_err());
        let mut c = claims(60);
        c.iss = "other".into();
        assert!(v.verify(&sign(&keys, &c).unwrap()).is_err());
        // tampered payload
        let parts: Vec<&str> = good.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["tid"] = "other-tenant".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        );
        assert!(v.verify(&forged).is_err());
        // alg: none
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert!(v.verify(&format!("{none_header}.{}.", parts[1])).is_err());
        // HMAC signed with the public key as secret
        let x = &keys.public_keys()[0].x;
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(keys.signing_kid().into());
        let hmac = jsonwebtoken::encode(
            &h,
            &claims(60),
            &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
        )
        .unwrap();
        assert!(v.verify(&hmac).is_err());
        // string exp
        let mut p = serde_json::to_value(claims(60)).unwrap();
        p["exp"] = "9999999999".into();
        let h = Header {
            kid: Some(keys.signing_kid().into()),
            ..Header::new(Algorithm::EdDSA)
        };
        let s = jsonwebtoken::encode(&h, &p, keys.signing_key()).unwrap();
        assert!(v.verify(&s).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
