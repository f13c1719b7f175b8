//! Values the issuer hands to the browser and reads back — a pending authorization request in
//! a form, a sign-in in a cookie, a CSRF token — sealed with AES-256-GCM so that they can be
//! neither read nor altered, each bound to its purpose (a sign-in cookie does not open as a
//! pending request) and to an expiry.
//!
//! The key is random per process: a restart forgets pending sign-ins (the person starts
//! again), never grants or tokens, which live in the store.
//!
//! ```
//! use std::time::Duration;
//! use mcpgate_issuer::sealed::Sealer;
//!
//! let sealer = Sealer::random();
//! let text = sealer.seal("csrf", &"value", Duration::from_secs(60));
//! assert_eq!(sealer.open::<String>("csrf", &text).as_deref(), Some("value"));
//! assert!(sealer.open::<String>("sign-in", &text).is_none());
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Longest sealed text opened (a form field or cookie).
pub const MAX_SEALED: usize = 16 * 1024;

/// Seals and opens values.
pub struct Sealer(RandomizedNonceKey);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(AES-256-GCM, …)")
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope<T> {
    /// Seconds since the epoch after which the value is refused.
    exp: u64,
    v: T,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Sealer {
    /// A sealer under a fresh random key.
    pub fn random() -> Sealer {
        let key: [u8; 32] = crate::secret::random_bytes();
        Sealer::new(&key)
    }

    /// A sealer under `key` (replicas that share sign-ins share the key).
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer(RandomizedNonceKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256-GCM key"))
    }

    /// `value`, sealed for `purpose`, valid for `ttl`: base64url text.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T, ttl: Duration) -> String {
        let envelope = Envelope {
            exp: now() + ttl.as_secs().max(1),
            v: value,
        };
        let mut in_out = serde_json::to_vec(&envelope).expect("serializable");
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(aad(purpose)), &mut in_out)
            .expect("AES-256-GCM sealing");
        let mut sealed = nonce.as_ref().to_vec();
        sealed.extend_from_slice(&in_out);
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The value sealed for `purpose` in `text`, unless it was altered, sealed for another
    /// purpose or by another key, or has expired.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, text: &str) -> Option<T> {
        if text.len() > MAX_SEALED {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(text).ok()?;
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad(purpose)), &mut in_out)
            .ok()?;
        let envelope: Envelope<T> = serde_json::from_slice(plain).ok()?;
        (envelope.exp > now()).then_some(envelope.v)
    }
}

fn aad(purpose: &str) -> Vec<u8> {
    let mut aad = b"mcpgate sealed v1\0".to_vec();
    aad.extend_from_slice(purpose.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_for_its_purpose_only() {
        let s = Sealer::random();
        let text = s.seal("a", &42u32, Duration::from_secs(60));
        assert_eq!(s.open::<u32>("a", &text), Some(42));
        assert_eq!(s.open::<u32>("b", &text), None);
        assert_eq!(Sealer::random().open::<u32>("a", &text), None);
    }

    #[test]
    fn an_altered_or_expired_value_does_not_open() {
        let s = Sealer::random();
        let text = s.seal("a", &"x", Duration::from_secs(60));
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(s.open::<String>("a", &URL_SAFE_NO_PAD.encode(bytes)), None);
        assert_eq!(s.open::<String>("a", "not base64!"), None);
        assert_eq!(s.open::<String>("a", ""), None);
        let expired = {
            let envelope = Envelope {
                exp: now() - 1,
                v: "x",
            };
            let mut in_out = serde_json::to_vec(&envelope).unwrap();
            let nonce =
                s.0.seal_in_place_append_tag(Aad::from(aad("a")), &mut in_out)
                    .unwrap();
            let mut sealed = nonce.as_ref().to_vec();
            sealed.extend_from_slice(&in_out);
            URL_SAFE_NO_PAD.encode(sealed)
        };
        assert_eq!(s.open::<String>("a", &expired), None);
    }
}
