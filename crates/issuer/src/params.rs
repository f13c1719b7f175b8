//! Request parameters — an `application/x-www-form-urlencoded` body or a query string — read
//! strictly, as RFC 6749 §3.1 says: a parameter sent twice is refused (`invalid_request`), and
//! one sent without a value is treated as absent.
//!
//! ```
//! use mcpgate_issuer::params::Params;
//!
//! let p = Params::parse(b"grant_type=refresh_token&refresh_token=abc&scope=").unwrap();
//! assert_eq!(p.get("grant_type"), Some("refresh_token"));
//! assert_eq!(p.get("scope"), None);
//! assert!(Params::parse(b"code=a&code=b").is_err());
//! ```

use crate::error::OAuthError;

/// Largest parameter set read, in bytes (a form body or a query string). Real requests are a
/// few hundred bytes; a registration's JSON has its own limit.
pub const MAX_BYTES: usize = 16 * 1024;

/// Parameters, each name at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Reads `input`, refusing a repeated name and more than [`MAX_BYTES`].
    pub fn parse(input: &[u8]) -> Result<Params, OAuthError> {
        if input.len() > MAX_BYTES {
            return Err(OAuthError::invalid_request(format!(
                "the parameters are larger than {MAX_BYTES} bytes"
            )));
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(input) {
            if out.iter().any(|(n, _)| *n == name) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{}` is repeated",
                    printable(&name)
                )));
            }
            out.push((name.into_owned(), value.into_owned()));
        }
        Ok(Params(out))
    }

    /// The value of `name`, when it was sent with one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The value of `name`, or `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter `{name}` is missing")))
    }

    /// Every name sent, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
}

/// A parameter name as it may appear in an error description: short, without control
/// characters.
fn printable(name: &str) -> String {
    name.chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_decoded() {
        let p =
            Params::parse(b"redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcb&scope=a+b").unwrap();
        assert_eq!(p.get("redirect_uri"), Some("http://127.0.0.1:5000/cb"));
        assert_eq!(p.get("scope"), Some("a b"));
    }

    #[test]
    fn a_repeated_parameter_is_refused_even_with_the_same_value() {
        let e = Params::parse(b"state=x&state=x").unwrap_err();
        assert_eq!(e.code, crate::error::ErrorCode::InvalidRequest);
        assert!(e.description.contains("`state`"), "{e}");
    }

    #[test]
    fn a_repeated_parameter_is_refused_when_one_spelling_is_encoded() {
        assert!(Params::parse(b"code=a&%63ode=b").is_err());
    }

    #[test]
    fn an_empty_value_is_absent() {
        let p = Params::parse(b"state=&code").unwrap();
        assert_eq!(p.get("state"), None);
        assert_eq!(p.get("code"), None);
        assert!(p.require("state").is_err());
    }

    #[test]
    fn a_missing_parameter_is_named() {
        let e = Params::parse(b"a=1").unwrap_err_or_require("code");
        assert!(e.description.contains("`code`"), "{e}");
    }

    #[test]
    fn more_than_the_limit_is_refused() {
        let big = vec![b'a'; MAX_BYTES + 1];
        assert!(Params::parse(&big).is_err());
    }

    #[test]
    fn names_with_control_characters_are_not_echoed_raw() {
        let e = Params::parse(b"a%0Ab=1&a%0Ab=2").unwrap_err();
        assert!(!e.description.contains('\n'), "{e}");
    }

    trait RequireErr {
        fn unwrap_err_or_require(self, name: &str) -> OAuthError;
    }

    impl RequireErr for Result<Params, OAuthError> {
        fn unwrap_err_or_require(self, name: &str) -> OAuthError {
            match self {
                Ok(p) => p.require(name).unwrap_err(),
                Err(e) => e,
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Params::parse(&input);
        }
    }
}
