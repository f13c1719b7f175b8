//! `[session]`: how `Mcp-Session-Id` values are sealed. Built into [`SessionPlan`]: the key
//! decoded once.

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::settings::{Setting, s, secret};
use super::values::{self, Secret};
use super::{Config, Problems};

/// `Mcp-Session-Id` sealing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// 32-byte key, base64; shared by replicas. Generated at start when absent.
    pub key: Option<Secret>,
    /// Longest life of a session.
    #[serde(with = "values::duration")]
    pub max_age: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            key: None,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// This section's settings.
pub(super) const SETTINGS: &[Setting] = &[
    secret(
        "session.key",
        "base64, 32 bytes",
        "Key that seals `Mcp-Session-Id` values (owner and upstream session id, encrypted and authenticated). Replicas must share it. Generated at start when absent (sessions then end with the process). Make one with `openssl rand -base64 32`.",
    ),
    s(
        "session.max_age",
        None,
        "duration",
        "Longest life of a session; the client then starts a new one.",
    ),
];

/// Sessions, built.
pub struct SessionPlan {
    /// The sealing key; `None`: a random one is made at start.
    pub key: Option<[u8; 32]>,
    /// Longest life of a session.
    pub max_age: Duration,
}

impl std::fmt::Debug for SessionPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPlan")
            .field("key", &self.key.map(|_| "<set>"))
            .field("max_age", &self.max_age)
            .finish()
    }
}

pub(super) fn build(config: &Config, p: &mut Problems) -> Option<SessionPlan> {
    let session = &config.session;
    p.positive_duration("session.max_age", session.max_age);
    let key = match &session.key {
        Some(key) => match decode_key(key.expose()) {
            Ok(k) => Some(k),
            Err(problem) => {
                p.push("session.key", problem);
                return None;
            }
        },
        None => None,
    };
    (!session.max_age.is_zero()).then_some(SessionPlan {
        key,
        max_age: session.max_age,
    })
}

/// Decodes a session key: 32 bytes, base64 (standard or URL-safe).
pub fn decode_key(value: &str) -> Result<[u8; 32], String> {
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ];
    let bytes = engines
        .iter()
        .find_map(|e| e.decode(value.trim()).ok())
        .or_else(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value.trim())
                .ok()
        })
        .ok_or("is not base64; make one with `openssl rand -base64 32`")?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("is {} bytes; it must be exactly 32", b.len()))
}
