//! The protected resource's identifier and how token audiences are compared with it.
//!
//! MCP names a server by its canonical URI (`https://mcp.example.com/mcp`): lowercase scheme
//! and host, no fragment, no trailing slash. Tokens carry that URI in `aud` (RFC 8707), and
//! issuers are not always careful about case or a final slash, so [`Audience`] compares URLs
//! in canonical form and anything else byte for byte.
//!
//! ```
//! use mcpgate_guard::{Audience, ResourceUrl};
//!
//! let resource = ResourceUrl::parse("https://MCP.example.com/team-a/mcp/").unwrap();
//! assert_eq!(resource.as_str(), "https://mcp.example.com/team-a/mcp");
//! assert_eq!(
//!     resource.metadata_url().as_str(),
//!     "https://mcp.example.com/.well-known/oauth-protected-resource/team-a/mcp"
//! );
//! assert!(Audience::new("https://mcp.example.com/team-a/mcp").matches("HTTPS://mcp.example.com/team-a/mcp/"));
//! ```

use std::fmt;

use url::Url;

/// The well-known path prefix of RFC 9728 §3.
pub const PRM_WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// A protected resource identifier in canonical form (absolute, no fragment, no query, no
/// trailing slash).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResourceUrl(Url);

/// Why a string is not a usable resource identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidResourceUrl {
    /// Not an absolute URL.
    #[error("not an absolute URL: {0}")]
    NotAbsolute(String),
    /// Only `http` and `https` are resource identifiers here.
    #[error("scheme must be http or https, found `{0}`")]
    Scheme(String),
    /// RFC 8707 forbids a fragment.
    #[error("must not have a fragment")]
    Fragment,
    /// A query would make the identifier ambiguous.
    #[error("must not have a query")]
    Query,
}

impl ResourceUrl {
    /// Parses and canonicalizes a resource identifier.
    pub fn parse(value: &str) -> Result<Self, InvalidResourceUrl> {
        let url = Url::parse(value).map_err(|e| InvalidResourceUrl::NotAbsolute(e.to_string()))?;
        Self::from_url(url)
    }

    /// Canonicalizes an already parsed URL.
    pub fn from_url(mut url: Url) -> Result<Self, InvalidResourceUrl> {
        if url.cannot_be_a_base() || url.host_str().is_none() {
            return Err(InvalidResourceUrl::NotAbsolute(url.to_string()));
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(InvalidResourceUrl::Scheme(url.scheme().to_owned()));
        }
        if url.fragment().is_some() {
            return Err(InvalidResourceUrl::Fragment);
        }
        if url.query().is_some() {
            return Err(InvalidResourceUrl::Query);
        }
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        Ok(ResourceUrl(url))
    }

    /// The identifier as a string, e.g. `https://mcp.example.com/mcp`.
    pub fn as_str(&self) -> &str {
        // `Url` keeps a lone "/" path for an empty one; the identifier drops it.
        self.0.as_str().strip_suffix('/').unwrap_or(self.0.as_str())
    }

    /// The parsed URL.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The path, without a trailing slash (`""` for the origin itself).
    pub fn path(&self) -> &str {
        self.0.path().trim_end_matches('/')
    }

    /// Where RFC 9728 §3.1 puts this resource's metadata: the well-known prefix inserted
    /// between the host and the path.
    pub fn metadata_url(&self) -> Url {
        let mut url = self.0.clone();
        url.set_path(&format!("{PRM_WELL_KNOWN}{}", self.path()));
        url
    }
}

impl fmt::Display for ResourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ResourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One accepted `aud` value.
#[derive(Clone, PartialEq, Eq)]
pub struct Audience {
    raw: String,
    canonical: Option<String>,
}

impl Audience {
    /// An accepted audience. URLs are compared in canonical form (case of scheme and host,
    /// one trailing slash, fragment ignored); other strings exactly.
    pub fn new(value: impl Into<String>) -> Self {
        let raw = value.into();
        let canonical = canonical_url(&raw);
        Audience { raw, canonical }
    }

    /// The configured value.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether a token's `aud` value names this audience.
    pub fn matches(&self, presented: &str) -> bool {
        if presented == self.raw {
            return true;
        }
        match (&self.canonical, canonical_url(presented)) {
            (Some(mine), Some(theirs)) => *mine == theirs,
            _ => false,
        }
    }
}

impl From<&ResourceUrl> for Audience {
    fn from(resource: &ResourceUrl) -> Self {
        Audience::new(resource.as_str())
    }
}

impl fmt::Debug for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.raw, f)
    }
}

fn canonical_url(value: &str) -> Option<String> {
    // Only absolute http(s) URLs get URL semantics; `api://x` or `my-api` stay opaque.
    let starts = |prefix: &str| {
        value
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    if !(starts("http://") || starts("https://")) {
        return None;
    }
    let mut url = Url::parse(value).ok()?;
    url.set_fragment(None);
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    let s = url.as_str();
    Some(s.strip_suffix('/').unwrap_or(s).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_with_trailing_slash_is_canonicalized() {
        let r = ResourceUrl::parse("http://127.0.0.1:8080/mcp/").unwrap();
        assert_eq!(r.as_str(), "http://127.0.0.1:8080/mcp");
    }

    #[test]
    fn origin_only_resource_has_root_metadata_url() {
        let r = ResourceUrl::parse("https://mcp.example.com").unwrap();
        assert_eq!(r.as_str(), "https://mcp.example.com");
        assert_eq!(
            r.metadata_url().as_str(),
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn resource_with_fragment_is_refused() {
        assert_eq!(
            ResourceUrl::parse("https://a.example/mcp#x").unwrap_err(),
            InvalidResourceUrl::Fragment
        );
    }

    #[test]
    fn resource_without_scheme_is_refused() {
        assert!(ResourceUrl::parse("mcp.example.com").is_err());
    }

    #[test]
    fn audience_comparison_ignores_host_case_and_one_trailing_slash() {
        let aud = Audience::new("https://mcp.example.com/mcp");
        assert!(aud.matches("https://mcp.example.com/mcp"));
        assert!(aud.matches("https://MCP.EXAMPLE.COM/mcp/"));
        assert!(aud.matches("https://mcp.example.com/mcp#frag"));
    }

    #[test]
    fn audience_comparison_keeps_path_case_and_other_paths_apart() {
        let aud = Audience::new("https://mcp.example.com/mcp");
        assert!(!aud.matches("https://mcp.example.com/MCP"));
        assert!(!aud.matches("https://mcp.example.com/other"));
        assert!(!aud.matches("https://mcp.example.com"));
        assert!(!aud.matches("https://evil.example.com/mcp"));
    }

    #[test]
    fn non_ascii_audiences_do_not_panic() {
        let aud = Audience::new("https://mcp.example.com/mcp");
        assert!(!aud.matches("abcdef€x"));
        assert!(!aud.matches("€€€€€€€€€"));
        assert!(!Audience::new("ünïcode-aud").matches("https://x"));
        assert!(Audience::new("ünïcode-aud").matches("ünïcode-aud"));
    }

    #[test]
    fn opaque_audiences_compare_exactly() {
        let aud = Audience::new("api://mcp");
        assert!(aud.matches("api://mcp"));
        assert!(!aud.matches("API://mcp"));
    }
}
