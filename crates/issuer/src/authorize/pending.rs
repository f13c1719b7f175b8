//! The pending authorization request, carried through the sign-in and consent forms sealed
//! (so the person's browser can neither read nor change it) for ten minutes.
//!
//! What is sealed is the request's query exactly as the client sent it, and the browser's
//! CSRF token ([`super::csrf`]). Each form post checks the query again from the start
//! ([`super::request`]) rather than trusting an earlier result: a client deleted, or a
//! redirect URI removed, while the person was typing their password is refused then too.
//! Nothing is stored, so a reload, a second tab or a prefetch consumes nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::csrf::CsrfToken;
use crate::sealed::Sealer;

/// How long a form stays usable.
pub const PENDING_TTL: Duration = Duration::from_secs(10 * 60);

const PURPOSE: &str = "authorize";

/// A pending authorization request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The `/authorize` query, as sent.
    pub query: String,
    /// The CSRF token of the browser it was shown to.
    pub csrf: String,
    /// The user a consent form was shown to (none on a sign-in form): an answer counts only
    /// from that user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Pending {
    /// Seals `query` for the browser holding `csrf` (and, on a consent form, for `subject`).
    pub fn seal(sealer: &Sealer, query: &str, csrf: &CsrfToken, subject: Option<&str>) -> String {
        let pending = Pending {
            query: query.to_owned(),
            csrf: csrf.as_str().to_owned(),
            subject: subject.map(str::to_owned),
        };
        sealer.seal(PURPOSE, &pending, PENDING_TTL)
    }

    /// Opens a sealed request, unless it was altered, expired, or is not one.
    pub fn open(sealer: &Sealer, text: &str) -> Option<Pending> {
        sealer.open(PURPOSE, text)
    }
}
