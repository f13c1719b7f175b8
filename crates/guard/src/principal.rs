//! Who a verified token speaks for: [`Principal`] and the small types it is made of.
//!
//! ```
//! use mcpgate_guard::{Principal, Scope, Subject};
//!
//! let alice = Principal::builder(Subject::new("alice"))
//!     .scopes(["mcp:read", "mcp:write"].map(Scope::new))
//!     .build();
//! assert!(alice.scopes.contains("mcp:read"));
//! assert!(!alice.scopes.contains("admin"));
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// The user (or client acting for itself) a token was issued to: the `sub` claim.
    Subject
);
string_newtype!(
    /// The OAuth client that obtained the token: `client_id`, `azp` or `cid`.
    ClientId
);
string_newtype!(
    /// One OAuth scope (RFC 6749 §3.3): a non-empty string of printable ASCII without spaces,
    /// double quotes or backslashes.
    Scope
);

impl Scope {
    /// Parses one scope token, refusing characters RFC 6749 §3.3 does not allow.
    pub fn parse(value: &str) -> Result<Self, InvalidScope> {
        let valid = !value.is_empty()
            && value
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidScope(value.escape_debug().to_string()))
        }
    }
}

/// A string that is not a valid OAuth scope token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid scope (printable ASCII without spaces, `\"` or `\\`)")]
pub struct InvalidScope(String);

/// A set of scopes, kept in the order they were granted.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// An empty set.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Splits a space-delimited `scope` string (RFC 6749 §3.3). Empty parts are skipped.
    pub fn from_space_delimited(value: &str) -> Self {
        value
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(Scope::new)
            .collect()
    }

    /// Adds `scope` unless it is there already.
    pub fn insert(&mut self, scope: Scope) {
        if !self.contains(scope.as_str()) {
            self.0.push(scope);
        }
    }

    /// Whether `scope` is granted.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s.as_str() == scope)
    }

    /// The scopes of `required` that are not granted, in the order given.
    pub fn missing<'a>(&self, required: &'a [Scope]) -> Vec<&'a Scope> {
        required
            .iter()
            .filter(|s| !self.contains(s.as_str()))
            .collect()
    }

    /// Iterates over the scopes.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// How many scopes there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes joined with single spaces, as in a `scope` claim or challenge parameter.
    pub fn to_space_delimited(&self) -> String {
        join_scopes(self.0.iter())
    }
}

/// Joins scopes with single spaces.
pub(crate) fn join_scopes<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> String {
    let mut out = String::new();
    for scope in scopes {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(scope.as_str());
    }
    out
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut out = Scopes::new();
        for scope in iter {
            if !out.contains(scope.as_str()) {
                out.0.push(scope);
            }
        }
        out
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

/// The verified identity behind a bearer token.
///
/// A [`TokenVerifier`](crate::TokenVerifier) produces it; [`BearerAuthLayer`](crate::BearerAuthLayer)
/// puts it into the request's extensions as `Arc<Principal>`.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct Principal {
    /// `sub`: who the token speaks for.
    pub subject: Subject,
    /// The OAuth client that obtained the token, when the token says.
    pub client_id: Option<ClientId>,
    /// Granted scopes (`scope` or `scp`).
    pub scopes: Scopes,
    /// `aud`, always as a list.
    pub audience: Vec<String>,
    /// `exp`, when the token has one.
    pub expires_at: Option<SystemTime>,
    /// `iss`, when the token has one.
    pub issuer: Option<String>,
    /// Every claim of the token (or introspection response), for policies and handlers.
    pub claims: Map<String, Value>,
    /// The claims and scopes as policy expressions see them, converted on first use.
    pub(crate) facts: PolicyFacts,
}

/// A principal's claims and scopes, converted once for policy expressions.
#[cfg(feature = "policy")]
#[derive(Clone, Default)]
pub(crate) struct PolicyFacts(pub(crate) std::sync::OnceLock<std::sync::Arc<crate::policy::Vals>>);

/// Without the policy engine there is nothing to convert (a field, so that every build
/// constructs it the same way).
#[cfg(not(feature = "policy"))]
#[derive(Clone, Default)]
pub(crate) struct PolicyFacts(());

impl PartialEq for PolicyFacts {
    /// A cache: it never makes two principals differ.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Principal {
    /// Starts a principal for `subject` with no scopes and no other claims.
    pub fn builder(subject: Subject) -> PrincipalBuilder {
        PrincipalBuilder(Principal {
            subject,
            client_id: None,
            scopes: Scopes::new(),
            audience: Vec::new(),
            expires_at: None,
            issuer: None,
            claims: Map::new(),
            facts: PolicyFacts::default(),
        })
    }

    /// Reads a principal out of a JWT claim set or an RFC 7662 introspection response.
    ///
    /// `sub` names the subject; a token without `sub` that names a client is taken as that
    /// client acting for itself. Scopes come from `scope` or `scp`, each either a space-delimited
    /// string or an array of strings; the client from `client_id`, `azp` or `cid`.
    pub fn from_claims(claims: Map<String, Value>) -> Result<Self, ClaimsError> {
        let client_id = ["client_id", "azp", "cid"]
            .iter()
            .find_map(|k| claims.get(*k).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(ClientId::new);
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => Subject::new(s.clone()),
            Some(Value::String(_)) | None => match &client_id {
                Some(client) => Subject::new(client.as_str()),
                None => return Err(ClaimsError::Missing("sub")),
            },
            Some(_) => return Err(ClaimsError::Invalid("sub", "not a string")),
        };
        // `scope` is a space-delimited string (RFC 8693 §4.2, RFC 9068), but Spring
        // Authorization Server and Duende issue an array; Entra's `scp` is a string, Okta's an
        // array. Either shape is read from either claim.
        let scopes = match (claims.get("scope"), claims.get("scp")) {
            (Some(v), _) => scopes_of(v).ok_or(ClaimsError::Invalid(
                "scope",
                "not a string or an array of strings",
            ))?,
            (None, Some(v)) => scopes_of(v).ok_or(ClaimsError::Invalid(
                "scp",
                "not a string or an array of strings",
            ))?,
            (None, None) => Scopes::new(),
        };
        let audience = match claims.get("aud") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(ClaimsError::Invalid(
                    "aud",
                    "not a string or an array of strings",
                ))?,
            Some(_) => {
                return Err(ClaimsError::Invalid(
                    "aud",
                    "not a string or an array of strings",
                ));
            }
        };
        let issuer = match claims.get("iss") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ClaimsError::Invalid("iss", "not a string")),
        };
        let expires_at = numeric_date(&claims, "exp")?.map(to_system_time);
        Ok(Principal {
            subject,
            client_id,
            scopes,
            audience,
            expires_at,
            issuer,
            claims,
            facts: PolicyFacts::default(),
        })
    }
}

/// Scopes from a space-delimited string or an array of strings (each of which may itself hold
/// several, space-delimited).
fn scopes_of(value: &Value) -> Option<Scopes> {
    match value {
        Value::String(s) => Some(Scopes::from_space_delimited(s)),
        Value::Array(items) => {
            let mut out = Scopes::new();
            for item in items {
                for scope in item.as_str()?.split_whitespace() {
                    out.insert(Scope::new(scope));
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// Reads a NumericDate claim (RFC 7519 §2): seconds since the epoch, integer or not.
pub(crate) fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, ClaimsError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
            _ => Err(ClaimsError::Invalid(name, "not a non-negative number")),
        },
        Some(_) => Err(ClaimsError::Invalid(name, "not a number")),
    }
}

fn to_system_time(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}

/// A claim set that cannot describe a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// A claim the principal needs is absent.
    #[error("claim `{0}` is missing")]
    Missing(&'static str),
    /// A claim has the wrong shape.
    #[error("claim `{0}` is {1}")]
    Invalid(&'static str, &'static str),
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claims are left out: they can be large and may hold personal data.
        f.debug_struct("Principal")
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Principal`] by hand (static tokens, tests, custom verifiers).
#[derive(Debug, Clone)]
pub struct PrincipalBuilder(Principal);

impl PrincipalBuilder {
    /// Sets the client id.
    pub fn client_id(mut self, client_id: ClientId) -> Self {
        self.0.client_id = Some(client_id);
        self
    }

    /// Sets the granted scopes.
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.0.scopes = scopes.into_iter().collect();
        self
    }

    /// Sets the audience.
    pub fn audience(mut self, audience: impl IntoIterator<Item = String>) -> Self {
        self.0.audience = audience.into_iter().collect();
        self
    }

    /// Sets the issuer.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.0.issuer = Some(issuer.into());
        self
    }

    /// Sets the expiry.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.0.expires_at = Some(at);
        self
    }

    /// Sets the full claim set.
    pub fn claims(mut self, claims: Map<String, Value>) -> Self {
        self.0.claims = claims;
        self
    }

    /// Finishes the principal.
    pub fn build(self) -> Principal {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn scope_claim_is_split_on_spaces() {
        let p = Principal::from_claims(claims(json!({"sub":"a","scope":"x  y z"}))).unwrap();
        assert_eq!(p.scopes.to_space_delimited(), "x y z");
    }

    #[test]
    fn scp_array_is_read_when_scope_is_absent() {
        let p = Principal::from_claims(claims(json!({"sub":"a","scp":["x","y"]}))).unwrap();
        assert!(p.scopes.contains("x") && p.scopes.contains("y"));
    }

    #[test]
    fn scp_with_non_strings_is_rejected() {
        let err = Principal::from_claims(claims(json!({"sub":"a","scp":["x",1]}))).unwrap_err();
        assert_eq!(
            err,
            ClaimsError::Invalid("scp", "not a string or an array of strings")
        );
    }

    #[test]
    fn scope_may_be_an_array_and_scp_a_string() {
        // Spring Authorization Server and Duende issue `scope` as an array; Entra issues `scp`
        // as a string.
        let spring =
            Principal::from_claims(claims(json!({"sub":"a","scope":["mcp","read write"]})))
                .unwrap();
        assert_eq!(spring.scopes.to_space_delimited(), "mcp read write");
        let entra = Principal::from_claims(claims(json!({"sub":"a","scp":"mcp read"}))).unwrap();
        assert_eq!(entra.scopes.to_space_delimited(), "mcp read");
        let err = Principal::from_claims(claims(json!({"sub":"a","scope":{"x":1}}))).unwrap_err();
        assert_eq!(
            err,
            ClaimsError::Invalid("scope", "not a string or an array of strings")
        );
    }

    #[test]
    fn audience_may_be_a_string_or_an_array() {
        let one = Principal::from_claims(claims(json!({"sub":"a","aud":"x"}))).unwrap();
        let many = Principal::from_claims(claims(json!({"sub":"a","aud":["x","y"]}))).unwrap();
        assert_eq!(one.audience, ["x"]);
        assert_eq!(many.audience, ["x", "y"]);
    }

    #[test]
    fn client_acting_for_itself_becomes_the_subject() {
        let p = Principal::from_claims(claims(json!({"client_id":"svc"}))).unwrap();
        assert_eq!(p.subject.as_str(), "svc");
        assert_eq!(p.client_id.unwrap().as_str(), "svc");
    }

    #[test]
    fn no_subject_and_no_client_is_rejected() {
        let err = Principal::from_claims(claims(json!({"scope":"x"}))).unwrap_err();
        assert_eq!(err, ClaimsError::Missing("sub"));
    }

    #[test]
    fn azp_names_the_client() {
        let p = Principal::from_claims(claims(json!({"sub":"u","azp":"app"}))).unwrap();
        assert_eq!(p.client_id.unwrap().as_str(), "app");
    }

    #[test]
    fn scope_parse_refuses_spaces_and_quotes() {
        assert!(Scope::parse("mcp:read").is_ok());
        assert!(Scope::parse("a b").is_err());
        assert!(Scope::parse("a\"b").is_err());
        assert!(Scope::parse("").is_err());
    }

    #[test]
    fn missing_lists_only_absent_scopes_in_order() {
        let granted = Scopes::from_space_delimited("a c");
        let required = [Scope::new("a"), Scope::new("b"), Scope::new("d")];
        let missing: Vec<_> = granted
            .missing(&required)
            .into_iter()
            .map(Scope::as_str)
            .collect();
        assert_eq!(missing, ["b", "d"]);
    }
}
