//! The two cookies of `/authorize`: the sign-in (who the person is, sealed, 12 hours) and the
//! CSRF token ([`super::csrf`]).
//!
//! On an `https` issuer they are `__Host-` cookies — `Secure`, `Path=/`, no `Domain` — which
//! no other host and no plain-http page can set or overwrite. On a loopback `http` issuer
//! (development) they cannot be `Secure`, and keep the plain names. Always `HttpOnly` (no
//! script reads them) and `SameSite=Lax` (sent on the top-level navigation from the client
//! to `/authorize`, never on another site's form post).

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use mcpgate_guard::Subject;

use crate::metadata::IssuerId;
use crate::sealed::Sealer;

/// How long a sign-in lasts.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Purpose of the sealed sign-in.
const SIGN_IN_PURPOSE: &str = "sign-in";

/// The cookies' names and attributes for one issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookies {
    secure: bool,
}

impl Cookies {
    /// The cookies of `issuer`: `__Host-` and `Secure` when it is `https`.
    pub fn of(issuer: &IssuerId) -> Cookies {
        Cookies {
            secure: issuer.as_str().starts_with("https://"),
        }
    }

    /// The sign-in cookie's name.
    pub fn sign_in_name(self) -> &'static str {
        if self.secure {
            "__Host-mcpgate-signin"
        } else {
            "mcpgate-signin"
        }
    }

    /// The CSRF cookie's name.
    pub fn csrf_name(self) -> &'static str {
        if self.secure {
            "__Host-mcpgate-csrf"
        } else {
            "mcpgate-csrf"
        }
    }

    /// The `Set-Cookie` value for `name=value`, lasting `max_age` (or the browser session).
    pub fn set(self, name: &str, value: &str, max_age: Option<Duration>) -> HeaderValue {
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        if self.secure {
            cookie.push_str("; Secure");
        }
        HeaderValue::from_str(&cookie).expect("cookie names and base64url values are header-safe")
    }

    /// The sign-in cookie for `subject`, sealed.
    pub fn sign_in(self, sealer: &Sealer, subject: &Subject) -> HeaderValue {
        let sealed = sealer.seal(SIGN_IN_PURPOSE, &subject.as_str(), SIGN_IN_TTL);
        self.set(self.sign_in_name(), &sealed, Some(SIGN_IN_TTL))
    }

    /// Who signed in, by the request's sign-in cookie, if it is there, unaltered and
    /// unexpired. (Whether that user may still sign in is the caller's to check.)
    pub fn signed_in(self, sealer: &Sealer, headers: &HeaderMap) -> Option<Subject> {
        let text = read(headers, self.sign_in_name())?;
        sealer
            .open::<String>(SIGN_IN_PURPOSE, text)
            .map(Subject::new)
    }
}

/// The value of cookie `name` in the request, when there is exactly one (two cookies of one
/// name are refused: one of them was planted).
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for header in headers.get_all(header::COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((n, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if n == name {
                if found.is_some() {
                    return None;
                }
                found = Some(v);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    #[test]
    fn an_https_issuer_uses_host_prefixed_secure_cookies() {
        let c = Cookies::of(&IssuerId::parse("https://auth.example").unwrap());
        assert_eq!(c.sign_in_name(), "__Host-mcpgate-signin");
        let set = c.set(c.csrf_name(), "v", None);
        assert_eq!(
            set,
            "__Host-mcpgate-csrf=v; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn a_loopback_http_issuer_uses_plain_cookies_without_secure() {
        let c = Cookies::of(&IssuerId::parse("http://127.0.0.1:8080").unwrap());
        assert_eq!(c.sign_in_name(), "mcpgate-signin");
        let set = c.set("mcpgate-signin", "v", Some(SIGN_IN_TTL));
        assert_eq!(
            set,
            "mcpgate-signin=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=43200"
        );
    }

    #[test]
    fn a_sign_in_opens_only_from_its_cookie() {
        let c = Cookies::of(&IssuerId::parse("http://127.0.0.1:8080").unwrap());
        let sealer = Sealer::random();
        let set = c.sign_in(&sealer, &Subject::new("alice"));
        let value = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        let h = headers(&format!("other=1; {value}"));
        assert_eq!(c.signed_in(&sealer, &h), Some(Subject::new("alice")));
        assert_eq!(c.signed_in(&Sealer::random(), &h), None);
        assert_eq!(
            c.signed_in(&sealer, &headers("mcpgate-signin=forged")),
            None
        );
    }

    #[test]
    fn a_cookie_sent_twice_is_not_read() {
        assert_eq!(read(&headers("a=1; b=2"), "b"), Some("2"));
        assert_eq!(read(&headers("a=1; a=2"), "a"), None);
        assert_eq!(read(&headers("ab=1"), "a"), None);
    }
}
