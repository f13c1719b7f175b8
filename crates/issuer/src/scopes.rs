//! The operator's scope catalogue: which scopes exist, what each means to a person (shown on
//! the consent page), and which are granted when a client asks for none.
//!
//! `offline_access` is always understood: refresh tokens are issued to MCP clients anyway, so
//! asking for it changes nothing, and clients that add it because the issuer lists it
//! (CL-06) must not be refused. It is listed in the issuer's metadata, never in the resource's
//! (RS-09).
//!
//! ```
//! use mcpgate_issuer::scopes::Catalogue;
//!
//! let catalogue = Catalogue::new([("mcp:read", "Read your files"), ("mcp:write", "Change your files")], ["mcp:read"]).unwrap();
//! assert_eq!(catalogue.requested(None).unwrap().to_space_delimited(), "mcp:read");
//! assert!(catalogue.requested(Some("mcp:admin")).is_err());
//! ```

use mcpgate_guard::{Scope, Scopes};

use crate::error::{ErrorCode, OAuthError};

/// The scope every client may add without effect.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// One scope and what it lets a client do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeInfo {
    /// The scope.
    pub scope: Scope,
    /// What it means, in words a person approving it understands.
    pub description: String,
}

/// The scopes that exist.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    entries: Vec<ScopeInfo>,
    default: Vec<Scope>,
}

impl Catalogue {
    /// A catalogue of `entries` (scope, description), granting `default` when a client asks
    /// for no scope. A malformed scope, a repeated one, or a default that is not in the
    /// catalogue is refused.
    pub fn new<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
        default: impl IntoIterator<Item = &'a str>,
    ) -> Result<Catalogue, String> {
        let mut out: Vec<ScopeInfo> = Vec::new();
        for (name, description) in entries {
            let scope = Scope::parse(name).map_err(|e| format!("`{name}`: {e}"))?;
            if out.iter().any(|e| e.scope == scope) {
                return Err(format!("`{name}` is listed twice"));
            }
            out.push(ScopeInfo {
                scope,
                description: description.to_owned(),
            });
        }
        let mut defaults = Vec::new();
        for name in default {
            let scope = Scope::parse(name).map_err(|e| format!("`{name}`: {e}"))?;
            if !out.iter().any(|e| e.scope == scope) {
                return Err(format!("default scope `{name}` is not in the catalogue"));
            }
            defaults.push(scope);
        }
        Ok(Catalogue {
            entries: out,
            default: defaults,
        })
    }

    /// The scopes of an authorization or token request's `scope` parameter: each known (or
    /// `offline_access`), or `invalid_scope` naming the first that is not. No parameter: the
    /// defaults.
    pub fn requested(&self, scope: Option<&str>) -> Result<Scopes, OAuthError> {
        let Some(scope) = scope else {
            return Ok(Scopes::from_iter(self.default.iter().cloned()));
        };
        let mut out = Vec::new();
        for name in scope.split(' ').filter(|s| !s.is_empty()) {
            let parsed = Scope::parse(name).map_err(|_| {
                OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("`{}` is not a valid scope", printable(name)),
                )
            })?;
            if name != OFFLINE_ACCESS && !self.entries.iter().any(|e| e.scope == parsed) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!(
                        "`{}` is not a scope of this server (it has: {})",
                        printable(name),
                        self.names().join(" ")
                    ),
                ));
            }
            if !out.contains(&parsed) {
                out.push(parsed);
            }
        }
        Ok(Scopes::from_iter(out))
    }

    /// What `scope` means, for the consent page.
    pub fn describe(&self, scope: &Scope) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| &e.scope == scope)
            .map(|e| e.description.as_str())
    }

    /// The scope names, as the issuer's metadata lists them (with `offline_access`).
    pub fn advertised(&self) -> Vec<String> {
        let mut names = self.names();
        names.push(OFFLINE_ACCESS.to_owned());
        names
    }

    fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| e.scope.as_str().to_owned())
            .collect()
    }
}

fn printable(text: &str) -> String {
    text.chars()
        .take(60)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Catalogue {
        Catalogue::new(
            [
                ("mcp", "Use the MCP server"),
                ("mcp:admin", "Administer it"),
            ],
            ["mcp"],
        )
        .unwrap()
    }

    #[test]
    fn no_scope_gets_the_defaults() {
        assert_eq!(
            catalogue().requested(None).unwrap().to_space_delimited(),
            "mcp"
        );
    }

    #[test]
    fn known_scopes_are_granted_once_each_and_offline_access_is_understood() {
        let s = catalogue()
            .requested(Some("mcp  mcp:admin mcp offline_access"))
            .unwrap();
        assert_eq!(s.to_space_delimited(), "mcp mcp:admin offline_access");
    }

    #[test]
    fn an_unknown_scope_is_invalid_scope_naming_it() {
        let e = catalogue().requested(Some("mcp files:delete")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert!(e.description.contains("`files:delete`"), "{e}");
    }

    #[test]
    fn a_malformed_scope_is_invalid_scope() {
        let e = catalogue().requested(Some("mcp \"x\"")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn the_catalogue_refuses_repeats_and_unknown_defaults() {
        assert!(Catalogue::new([("a", ""), ("a", "")], []).is_err());
        assert!(Catalogue::new([("a", "")], ["b"]).is_err());
        assert!(Catalogue::new([("a b", "")], []).is_err());
    }

    #[test]
    fn the_issuer_lists_offline_access_too() {
        assert_eq!(
            catalogue().advertised(),
            ["mcp", "mcp:admin", "offline_access"]
        );
        assert_eq!(
            catalogue().describe(&Scope::new("mcp:admin")),
            Some("Administer it")
        );
    }
}
