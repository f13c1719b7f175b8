//! Cross-site request forgery protection for the sign-in and consent forms: a double-submit
//! token, bound to the pending request.
//!
//! The browser holds a random token in the CSRF cookie ([`super::cookies`]); every form
//! carries the same token in a hidden field, and the sealed pending request
//! ([`super::pending`]) carries it too. A POST is accepted only when all three agree
//! (compared in constant time). Another site can make a browser post a form, but cannot read
//! or set this cookie, so it cannot know the token; and a sealed request taken from one
//! browser (an attacker's own `/authorize` page) does not work in another, whose cookie
//! differs.
//!
//! The token is made once per browser and kept (a session cookie), so opening `/authorize`
//! in a second tab, a reload, or a client's prefetch never invalidates a form already shown.
//! Only a browser that has no token yet can end up with two: two tabs (or a tab and a
//! prefetch) that open `/authorize` at the same moment are each given a new one, and the
//! browser keeps whichever answer it took in last. The form of the other tab is then *stale*
//! ([`super::flow`] shows it again, bound to the token the browser kept, and acts on nothing).

use http::{HeaderMap, HeaderValue};
use subtle::ConstantTimeEq as _;

use super::cookies::{self, Cookies};
use crate::secret::generate_token;

/// The browser's CSRF token.
#[derive(Clone, PartialEq, Eq)]
pub struct CsrfToken(String);

impl std::fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfToken(…)")
    }
}

impl CsrfToken {
    /// The token of the request's CSRF cookie, when it has a well-formed one.
    pub fn from_cookie(cookies: Cookies, headers: &HeaderMap) -> Option<CsrfToken> {
        let value = cookies::read(headers, cookies.csrf_name())?;
        let well_formed = value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| CsrfToken(value.to_owned()))
    }

    /// The request's token, or a new one with the `Set-Cookie` that gives it to the browser.
    pub fn for_page(cookies: Cookies, headers: &HeaderMap) -> (CsrfToken, Option<HeaderValue>) {
        match CsrfToken::from_cookie(cookies, headers) {
            Some(token) => (token, None),
            None => {
                let token = CsrfToken(generate_token());
                let set = cookies.set(cookies.csrf_name(), &token.0, None);
                (token, Some(set))
            }
        }
    }

    /// The token, for the hidden field and the sealed request.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        same(&self.0, presented)
    }
}

/// Whether two tokens are the same, in constant time.
pub fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::IssuerId;
    use http::header;

    fn cookies() -> Cookies {
        Cookies::of(&IssuerId::parse("http://127.0.0.1:1").unwrap())
    }

    #[test]
    fn a_page_reuses_the_browsers_token() {
        let token = generate_token();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("mcpgate-csrf={token}")).unwrap(),
        );
        let (t, set) = CsrfToken::for_page(cookies(), &h);
        assert!(set.is_none());
        assert!(t.matches(&token));
        assert!(!t.matches(&token[1..]));
        assert!(!t.matches(""));
    }

    #[test]
    fn a_missing_or_malformed_token_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("mcpgate-csrf=short"),
        );
        let (t, set) = CsrfToken::for_page(cookies(), &h);
        let set = set.unwrap();
        assert!(
            set.to_str()
                .unwrap()
                .starts_with(&format!("mcpgate-csrf={}", t.as_str()))
        );
        assert!(
            CsrfToken::for_page(cookies(), &HeaderMap::new())
                .1
                .is_some()
        );
    }
}
