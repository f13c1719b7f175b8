//! `Mcp-Session-Id` values that carry their own state.
//!
//! The id the gateway hands a client is the session's owner and the upstream's session id,
//! encrypted and authenticated with AES-256-GCM under a key from configuration. Any replica
//! that has the key can tell who owns a session and continue it, with no lookup table; the
//! client never sees the upstream's id; and a session opened by one subject is, for any other
//! subject, simply a session that does not exist.
//!
//! Layout before encryption: version (1 byte) · owner digest (16) · issued-at seconds (8, big
//! endian) · upstream session id. Wire form: base64url(nonce · ciphertext · tag), which is
//! visible ASCII as the transport spec requires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpgate_guard::Principal;
use subtle::ConstantTimeEq;

const VERSION: u8 = 1;
const AAD: &[u8] = b"mcpgate session v1";
const OWNER_LEN: usize = 16;
const HEADER_LEN: usize = 1 + OWNER_LEN + 8;
/// Upstream session ids longer than this are refused (the spec's ids are short).
const MAX_UPSTREAM_ID: usize = 512;

/// Who a session belongs to, as a digest of the principal's issuer and subject.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Owner([u8; OWNER_LEN]);

impl Owner {
    /// The whole digest, hex (an internal key that cannot collide in practice).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The owner for a verified principal.
    pub fn of(principal: &Principal) -> Self {
        let (issuer, kind, subject) = Self::identity(principal);
        Self::from_parts(issuer, kind, subject)
    }

    /// Who a principal is, as owners tell them apart: its issuer, whether it speaks for a user
    /// (`u`) or for its client (`c`: a token without `sub`, kept apart from users that happen
    /// to have the same name), and its subject.
    pub fn identity(principal: &Principal) -> (&str, u8, &str) {
        let kind = match principal.claims.get("sub").and_then(|v| v.as_str()) {
            Some(sub) if !sub.is_empty() => b'u',
            _ => b'c',
        };
        (
            principal.issuer.as_deref().unwrap_or(""),
            kind,
            principal.subject.as_str(),
        )
    }

    /// The owner of sessions opened without authentication (`none` and `passthrough` modes).
    pub fn anonymous() -> Self {
        Self::from_parts("", b'a', "")
    }

    fn from_parts(issuer: &str, kind: u8, subject: &str) -> Self {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(issuer.as_bytes());
        ctx.update(&[0, kind, 0]);
        ctx.update(subject.as_bytes());
        let digest = ctx.finish();
        let mut out = [0u8; OWNER_LEN];
        out.copy_from_slice(&digest.as_ref()[..OWNER_LEN]);
        Owner(out)
    }
}

/// Why a presented session id is not accepted. Callers answer all of them the same way
/// (404, as if the session did not exist); the variants are for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not something this gateway (with this key) issued.
    #[error("not a session id issued with this key")]
    Forged,
    /// Issued to another subject.
    #[error("session belongs to another subject")]
    WrongOwner,
    /// Older than `session.max_age`.
    #[error("session is older than session.max_age")]
    Expired,
}

/// Seals and opens session ids.
pub struct SessionSealer {
    key: LessSafeKey,
    rng: SystemRandom,
    max_age: Duration,
}

impl std::fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSealer")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl SessionSealer {
    /// A sealer with a 32-byte key.
    pub fn new(key: &[u8; 32], max_age: Duration) -> Self {
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, key).expect("32 bytes is an AES-256 key"),
        );
        SessionSealer {
            key,
            rng: SystemRandom::new(),
            max_age,
        }
    }

    /// A sealer with a fresh random key.
    pub fn random(max_age: Duration) -> Self {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("system randomness");
        Self::new(&key, max_age)
    }

    /// The id to hand the client for `upstream_id`, owned by `owner`.
    pub fn seal(&self, owner: Owner, upstream_id: &str) -> Option<String> {
        if upstream_id.len() > MAX_UPSTREAM_ID {
            return None;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut buf = Vec::with_capacity(NONCE_LEN + HEADER_LEN + upstream_id.len() + 16);
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        buf.extend_from_slice(&nonce);
        buf.push(VERSION);
        buf.extend_from_slice(&owner.0);
        buf.extend_from_slice(&now.to_be_bytes());
        buf.extend_from_slice(upstream_id.as_bytes());
        let (head, plaintext) = buf.split_at_mut(NONCE_LEN);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(head.try_into().ok()?),
                Aad::from(AAD),
                plaintext,
            )
            .ok()?;
        buf.extend_from_slice(tag.as_ref());
        Some(URL_SAFE_NO_PAD.encode(&buf))
    }

    /// The upstream session id inside `presented`, if `owner` may use it.
    pub fn open(&self, owner: Owner, presented: &str) -> Result<String, SessionError> {
        if presented.len() > 2 * (MAX_UPSTREAM_ID + 64) {
            return Err(SessionError::Forged);
        }
        let mut bytes = URL_SAFE_NO_PAD
            .decode(presented)
            .map_err(|_| SessionError::Forged)?;
        if bytes.len() < NONCE_LEN + HEADER_LEN + 16 {
            return Err(SessionError::Forged);
        }
        let (nonce, sealed) = bytes.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SessionError::Forged)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), sealed)
            .map_err(|_| SessionError::Forged)?;
        if plain[0] != VERSION {
            return Err(SessionError::Forged);
        }
        // The owner digest is not secret from the client's point of view (it is encrypted),
        // but compare in constant time anyway: it is cheap and removes a question.
        if !bool::from(plain[1..1 + OWNER_LEN].ct_eq(&owner.0)) {
            return Err(SessionError::WrongOwner);
        }
        let issued = u64::from_be_bytes(
            plain[1 + OWNER_LEN..HEADER_LEN]
                .try_into()
                .expect("8 bytes"),
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if now.saturating_sub(issued) > self.max_age.as_secs() {
            return Err(SessionError::Expired);
        }
        String::from_utf8(plain[HEADER_LEN..].to_vec()).map_err(|_| SessionError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_guard::Subject;

    fn owner(sub: &str) -> Owner {
        Owner::of(
            &Principal::builder(Subject::new(sub))
                .issuer("https://idp")
                .build(),
        )
    }

    #[test]
    fn sealed_id_opens_for_its_owner() {
        let s = SessionSealer::random(Duration::from_secs(60));
        let id = s.seal(owner("alice"), "upstream-123").unwrap();
        assert_eq!(s.open(owner("alice"), &id).unwrap(), "upstream-123");
    }

    #[test]
    fn sealed_id_is_visible_ascii_and_hides_the_upstream_id() {
        let s = SessionSealer::random(Duration::from_secs(60));
        let id = s.seal(owner("alice"), "upstream-123").unwrap();
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert!(!id.contains("upstream"));
    }

    #[test]
    fn another_subject_cannot_open_it() {
        let s = SessionSealer::random(Duration::from_secs(60));
        let id = s.seal(owner("alice"), "u").unwrap();
        assert_eq!(s.open(owner("mallory"), &id), Err(SessionError::WrongOwner));
    }

    #[test]
    fn same_subject_from_another_issuer_cannot_open_it() {
        let s = SessionSealer::random(Duration::from_secs(60));
        let id = s.seal(owner("alice"), "u").unwrap();
        let other = Owner::of(
            &Principal::builder(Subject::new("alice"))
                .issuer("https://other")
                .build(),
        );
        assert_eq!(s.open(other, &id), Err(SessionError::WrongOwner));
    }

    #[test]
    fn another_key_cannot_open_it() {
        let a = SessionSealer::random(Duration::from_secs(60));
        let b = SessionSealer::random(Duration::from_secs(60));
        let id = a.seal(owner("alice"), "u").unwrap();
        assert_eq!(b.open(owner("alice"), &id), Err(SessionError::Forged));
    }

    #[test]
    fn replicas_with_the_same_key_share_sessions() {
        let a = SessionSealer::new(&[7; 32], Duration::from_secs(60));
        let b = SessionSealer::new(&[7; 32], Duration::from_secs(60));
        let id = a.seal(owner("alice"), "u").unwrap();
        assert_eq!(b.open(owner("alice"), &id).unwrap(), "u");
    }

    #[test]
    fn tampered_or_garbage_ids_are_forged() {
        let s = SessionSealer::random(Duration::from_secs(60));
        let id = s.seal(owner("alice"), "u").unwrap();
        let mut tampered = id.clone().into_bytes();
        let last = tampered.len() - 5;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(s.open(owner("alice"), &tampered), Err(SessionError::Forged));
        assert_eq!(
            s.open(owner("alice"), "upstream-123"),
            Err(SessionError::Forged)
        );
        assert_eq!(s.open(owner("alice"), ""), Err(SessionError::Forged));
        assert_eq!(s.open(owner("alice"), "!!!"), Err(SessionError::Forged));
    }

    #[test]
    fn old_sessions_expire() {
        let s = SessionSealer::random(Duration::from_secs(0));
        let id = s.seal(owner("alice"), "u").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(s.open(owner("alice"), &id), Err(SessionError::Expired));
    }
}
