//! Private keys at rest: AES-256-GCM under an operator-supplied 32-byte key, a random 96-bit
//! nonce per key, and the `kid` as associated data so that a sealed key moved to another row
//! fails to open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};

use crate::store::Kid;

/// Associated data: a fixed label and the key's `kid`.
fn aad(kid: &Kid) -> Vec<u8> {
    let mut aad = b"mcpgate signing key v1\0".to_vec();
    aad.extend_from_slice(kid.as_str().as_bytes());
    aad
}

/// Seals and opens private keys.
pub(crate) struct Sealer(RandomizedNonceKey);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(AES-256-GCM, …)")
    }
}

impl Sealer {
    /// A sealer under `key`.
    pub(crate) fn new(key: &[u8; 32]) -> Result<Self, &'static str> {
        RandomizedNonceKey::new(&AES_256_GCM, key)
            .map(Sealer)
            .map_err(|_| "AES-256-GCM key setup failed")
    }

    /// `nonce || ciphertext || tag`.
    pub(crate) fn seal(&self, kid: &Kid, plaintext: &[u8]) -> Result<Vec<u8>, &'static str> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(aad(kid)), &mut in_out)
            .map_err(|_| "AES-256-GCM sealing failed")?;
        let mut sealed = nonce.as_ref().to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// The plaintext, or `None` when the key is wrong or the bytes (or the `kid`) were altered.
    pub(crate) fn open(&self, kid: &Kid, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .0
            .open_in_place(nonce, Aad::from(aad(kid)), &mut in_out)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_with_the_same_key_and_kid_only() {
        let sealer = Sealer::new(&[7; 32]).unwrap();
        let kid = Kid::new("k1");
        let sealed = sealer.seal(&kid, b"private").unwrap();
        assert_eq!(sealer.open(&kid, &sealed).as_deref(), Some(&b"private"[..]));
        assert_eq!(
            sealer.open(&Kid::new("k2"), &sealed),
            None,
            "moved to another kid"
        );
        assert_eq!(Sealer::new(&[8; 32]).unwrap().open(&kid, &sealed), None);
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(sealer.open(&kid, &altered), None);
        assert_eq!(
            sealer.open(&kid, &sealed[..5]),
            None,
            "too short for a nonce"
        );
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let sealer = Sealer::new(&[7; 32]).unwrap();
        let kid = Kid::new("k1");
        assert_ne!(
            sealer.seal(&kid, b"x").unwrap(),
            sealer.seal(&kid, b"x").unwrap()
        );
    }
}
