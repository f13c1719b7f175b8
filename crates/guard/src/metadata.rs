//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document MCP clients fetch to learn
//! which authorization server issues tokens for this server, and where it is served.
//!
//! ```
//! use mcpgate_guard::{ProtectedResource, ResourceUrl, Scope};
//!
//! let resource = ProtectedResource::new(ResourceUrl::parse("https://example.com/team-a/mcp").unwrap())
//!     .authorization_server("https://login.example.com")
//!     .scopes_supported([Scope::new("mcp")]);
//! assert_eq!(
//!     resource.metadata_url().as_str(),
//!     "https://example.com/.well-known/oauth-protected-resource/team-a/mcp"
//! );
//! let doc = resource.document();
//! assert_eq!(doc.resource, "https://example.com/team-a/mcp");
//! assert_eq!(doc.bearer_methods_supported, ["header"]);
//! ```

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::principal::Scope;
use crate::resource::{PRM_WELL_KNOWN, ResourceUrl};

/// The metadata document (RFC 9728 §2), as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    /// The resource identifier; equal to the URL the metadata location was derived from.
    pub resource: String,
    /// Issuers of tokens accepted here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// Scopes a client should ask for to use the server at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<Scope>,
    /// How a token is presented: only the `Authorization` header.
    pub bearer_methods_supported: Vec<String>,
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Where humans read about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
}

/// A protected resource: its identifier, its authorization servers and the scopes it
/// advertises. Both the metadata route and the `WWW-Authenticate` challenges are derived from
/// it, so they cannot disagree.
#[derive(Debug, Clone)]
pub struct ProtectedResource {
    resource: ResourceUrl,
    metadata_url: Url,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<Scope>,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
}

impl ProtectedResource {
    /// A resource whose metadata lives at the RFC 9728 well-known location.
    pub fn new(resource: ResourceUrl) -> Self {
        let metadata_url = resource.metadata_url();
        ProtectedResource {
            resource,
            metadata_url,
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            resource_name: None,
            resource_documentation: None,
        }
    }

    /// Adds an authorization server (its issuer identifier).
    #[must_use]
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// Sets the advertised scopes. Keep it to what basic use needs; never `offline_access`
    /// (the MCP authorization spec, 2026-07-28).
    #[must_use]
    pub fn scopes_supported(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.scopes_supported = scopes
            .into_iter()
            .filter(|s| s.as_str() != "offline_access")
            .collect();
        self
    }

    /// Sets the human-readable name.
    #[must_use]
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// Sets the documentation URL.
    #[must_use]
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// The resource identifier.
    pub fn resource(&self) -> &ResourceUrl {
        &self.resource
    }

    /// Where the metadata is published; what challenges point to.
    pub fn metadata_url(&self) -> &Url {
        &self.metadata_url
    }

    /// The document.
    pub fn document(&self) -> ProtectedResourceMetadata {
        ProtectedResourceMetadata {
            resource: self.resource.as_str().to_owned(),
            authorization_servers: self.authorization_servers.clone(),
            scopes_supported: self.scopes_supported.clone(),
            bearer_methods_supported: vec!["header".to_owned()],
            resource_name: self.resource_name.clone(),
            resource_documentation: self.resource_documentation.clone(),
        }
    }

    /// Request paths at which a server should answer with the document, seen from the
    /// server itself: the RFC 9728 path-suffixed form for the public path, the path-suffixed
    /// form for the resource's last segment (what a reverse proxy that strips a path prefix
    /// forwards), and the root form. Deduplicated, in that order.
    pub fn well_known_paths(&self) -> Vec<String> {
        let path = self.resource.path();
        let last = path
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .map(|s| format!("/{s}"))
            .unwrap_or_default();
        let mut paths = vec![
            format!("{PRM_WELL_KNOWN}{path}"),
            format!("{PRM_WELL_KNOWN}{last}"),
            PRM_WELL_KNOWN.to_owned(),
        ];
        let mut seen = std::collections::HashSet::new();
        paths.retain(|p| seen.insert(p.clone()));
        paths
    }

    /// The document as an HTTP response: `200`, JSON, cacheable for an hour, readable from
    /// browser-based clients (CORS).
    pub fn response(&self) -> http::Response<Bytes> {
        let body = serde_json::to_vec(&self.document()).unwrap_or_default();
        let mut response = http::Response::new(Bytes::from(body));
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, max-age=3600"),
        );
        headers.insert(
            http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            http::HeaderValue::from_static("*"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_never_advertises_offline_access() {
        let r = ProtectedResource::new(ResourceUrl::parse("https://a.example/mcp").unwrap())
            .scopes_supported([Scope::new("mcp"), Scope::new("offline_access")]);
        assert_eq!(r.document().scopes_supported, [Scope::new("mcp")]);
    }

    #[test]
    fn well_known_paths_cover_prefix_stripped_and_root_forms() {
        let r = ProtectedResource::new(ResourceUrl::parse("https://a.example/team-a/mcp").unwrap());
        assert_eq!(
            r.well_known_paths(),
            [
                "/.well-known/oauth-protected-resource/team-a/mcp",
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource"
            ]
        );
    }

    #[test]
    fn well_known_paths_without_prefix_are_not_repeated() {
        let r = ProtectedResource::new(ResourceUrl::parse("https://a.example/mcp").unwrap());
        assert_eq!(
            r.well_known_paths(),
            [
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource"
            ]
        );
    }

    #[test]
    fn empty_lists_are_left_out_of_the_document() {
        let r = ProtectedResource::new(ResourceUrl::parse("https://a.example/mcp").unwrap());
        let json = serde_json::to_value(r.document()).unwrap();
        assert!(json.get("authorization_servers").is_none());
        assert_eq!(
            json["bearer_methods_supported"],
            serde_json::json!(["header"])
        );
    }
}
