//! The authorization server's metadata: the RFC 8414 document, the OpenID discovery document
//! built from the same facts, and the well-known paths each is served at (AS-02).
//!
//! The `issuer` in both documents is the issuer identifier exactly as configured — not a
//! re-serialised URL, which could gain or lose a trailing slash — because clients compare it
//! with the URL they built the well-known location from (AS-03, RFC 8414 §3.3). Only what is
//! supported is advertised: one response type (`code`), one PKCE method (`S256`), and the
//! grant types and client authentication methods that are turned on.
//!
//! ```
//! use mcpgate_issuer::metadata::{IssuerId, Metadata};
//!
//! let issuer = IssuerId::parse("https://mcp.example.com/team-a").unwrap();
//! assert_eq!(
//!     issuer.well_known_paths()[0],
//!     "/.well-known/oauth-authorization-server/team-a"
//! );
//! let doc = Metadata::new(issuer).document();
//! assert_eq!(doc["issuer"], "https://mcp.example.com/team-a");
//! assert_eq!(doc["token_endpoint"], "https://mcp.example.com/team-a/token");
//! assert_eq!(doc["code_challenge_methods_supported"][0], "S256");
//! ```

use serde_json::{Value, json};
use url::Url;

/// The issuer identifier: an `https` URL (or `http` on loopback, for development) with no
/// query or fragment, kept exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerId {
    text: String,
    url: Url,
}

/// Why an issuer identifier is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerIdError {
    /// Not an absolute URL.
    #[error("is not an absolute URL")]
    NotAUrl,
    /// Neither https nor http on loopback (RFC 8414 §2: the issuer uses https).
    #[error("must use https (http only on a loopback host, for development)")]
    Scheme,
    /// Has a query or fragment (RFC 8414 §2).
    #[error("must not have a query or fragment")]
    QueryOrFragment,
    /// Has user information.
    #[error("must not contain user information")]
    UserInfo,
}

impl IssuerId {
    /// Checks `text` as an issuer identifier. A trailing slash is removed (`https://a.example/`
    /// is `https://a.example`), so that the identifier and the well-known URLs agree.
    pub fn parse(text: &str) -> Result<IssuerId, IssuerIdError> {
        let text = text.strip_suffix('/').unwrap_or(text);
        let url = Url::parse(text).map_err(|_| IssuerIdError::NotAUrl)?;
        if url.query().is_some() || url.fragment().is_some() || text.contains(['?', '#']) {
            return Err(IssuerIdError::QueryOrFragment);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(IssuerIdError::UserInfo);
        }
        let loopback = url
            .host_str()
            .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]");
        match url.scheme() {
            "https" if url.host_str().is_some() => {}
            "http" if loopback => {}
            _ => return Err(IssuerIdError::Scheme),
        }
        Ok(IssuerId {
            text: text.to_owned(),
            url,
        })
    }

    /// The identifier, exactly as advertised and put in `iss`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The path after the host, without a trailing slash (`""` for an issuer without one).
    pub fn path(&self) -> &str {
        self.url.path().trim_end_matches('/')
    }

    /// An endpoint of this issuer: `<issuer>/<name>`.
    pub fn endpoint(&self, name: &str) -> String {
        format!("{}/{name}", self.text)
    }

    /// Where the metadata is served, on this issuer's origin: the RFC 8414 location first,
    /// then the OpenID ones — for an issuer with a path, the path-insertion forms and the
    /// OpenID path-append form (AS-02).
    pub fn well_known_paths(&self) -> Vec<String> {
        let path = self.path();
        if path.is_empty() {
            vec![
                "/.well-known/oauth-authorization-server".into(),
                "/.well-known/openid-configuration".into(),
            ]
        } else {
            vec![
                format!("/.well-known/oauth-authorization-server{path}"),
                format!("/.well-known/openid-configuration{path}"),
                format!("{path}/.well-known/openid-configuration"),
            ]
        }
    }
}

impl std::fmt::Display for IssuerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What the metadata advertises.
#[derive(Debug, Clone)]
pub struct Metadata {
    issuer: IssuerId,
    /// Open dynamic registration (`registration_endpoint` is advertised only then).
    pub registration: bool,
    /// Scopes clients may request.
    pub scopes: Vec<String>,
    /// The `client_credentials` grant.
    pub client_credentials: bool,
    /// Algorithms of `private_key_jwt` assertions accepted.
    pub assertion_algorithms: Vec<String>,
    /// The algorithm access tokens are signed with.
    pub signing_algorithm: String,
    /// `iss` in authorization responses (RFC 9207).
    pub iss_parameter: bool,
}

impl Metadata {
    /// The metadata of `issuer` with everything on.
    pub fn new(issuer: IssuerId) -> Metadata {
        Metadata {
            issuer,
            registration: true,
            scopes: Vec::new(),
            client_credentials: true,
            assertion_algorithms: vec![
                "ES256".into(),
                "ES384".into(),
                "RS256".into(),
                "PS256".into(),
                "EdDSA".into(),
            ],
            signing_algorithm: "ES256".into(),
            iss_parameter: true,
        }
    }

    /// The issuer.
    pub fn issuer(&self) -> &IssuerId {
        &self.issuer
    }

    /// The RFC 8414 document.
    pub fn document(&self) -> Value {
        let issuer = &self.issuer;
        let mut grants = vec!["authorization_code", "refresh_token"];
        if self.client_credentials {
            grants.push("client_credentials");
        }
        let client_auth = [
            "none",
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ];
        let endpoint_auth = [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ];
        let mut doc = json!({
            "issuer": issuer.as_str(),
            "authorization_endpoint": issuer.endpoint("authorize"),
            "token_endpoint": issuer.endpoint("token"),
            "jwks_uri": issuer.endpoint("jwks.json"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": grants,
            "token_endpoint_auth_methods_supported": client_auth,
            "token_endpoint_auth_signing_alg_values_supported": self.assertion_algorithms,
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": self.scopes,
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": self.iss_parameter,
            "introspection_endpoint": issuer.endpoint("introspect"),
            "introspection_endpoint_auth_methods_supported": endpoint_auth,
            "introspection_endpoint_auth_signing_alg_values_supported": self.assertion_algorithms,
            "revocation_endpoint": issuer.endpoint("revoke"),
            "revocation_endpoint_auth_methods_supported": client_auth,
            "revocation_endpoint_auth_signing_alg_values_supported": self.assertion_algorithms,
        });
        if self.registration {
            doc["registration_endpoint"] = json!(issuer.endpoint("register"));
        }
        doc
    }

    /// The OpenID discovery document: the same facts, plus the members OpenID Connect
    /// Discovery requires.
    pub fn openid_document(&self) -> Value {
        let mut doc = self.document();
        doc["subject_types_supported"] = json!(["public"]);
        doc["id_token_signing_alg_values_supported"] = json!([self.signing_algorithm]);
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_kept_as_written_and_a_trailing_slash_dropped() {
        assert_eq!(
            IssuerId::parse("https://auth.example").unwrap().as_str(),
            "https://auth.example"
        );
        assert_eq!(
            IssuerId::parse("https://auth.example/").unwrap().as_str(),
            "https://auth.example"
        );
        assert_eq!(
            IssuerId::parse("https://auth.example/realms/acme/")
                .unwrap()
                .as_str(),
            "https://auth.example/realms/acme"
        );
    }

    #[test]
    fn bad_issuers_are_refused() {
        assert_eq!(IssuerId::parse("auth.example"), Err(IssuerIdError::NotAUrl));
        assert_eq!(
            IssuerId::parse("http://auth.example"),
            Err(IssuerIdError::Scheme)
        );
        assert_eq!(
            IssuerId::parse("https://auth.example?x=1"),
            Err(IssuerIdError::QueryOrFragment)
        );
        assert_eq!(
            IssuerId::parse("https://auth.example#x"),
            Err(IssuerIdError::QueryOrFragment)
        );
        assert_eq!(
            IssuerId::parse("https://u@auth.example"),
            Err(IssuerIdError::UserInfo)
        );
        assert!(IssuerId::parse("http://127.0.0.1:8080").is_ok());
        assert!(IssuerId::parse("http://localhost:8080").is_ok());
    }

    #[test]
    fn as_02_an_issuer_without_a_path_is_served_at_both_root_locations() {
        let issuer = IssuerId::parse("https://auth.example").unwrap();
        assert_eq!(
            issuer.well_known_paths(),
            [
                "/.well-known/oauth-authorization-server",
                "/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn as_02_an_issuer_with_a_path_is_served_at_the_path_insertion_forms() {
        let issuer = IssuerId::parse("https://auth.example/tenant1").unwrap();
        assert_eq!(
            issuer.well_known_paths(),
            [
                "/.well-known/oauth-authorization-server/tenant1",
                "/.well-known/openid-configuration/tenant1",
                "/tenant1/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn as_03_as_04_the_document_names_the_issuer_exactly_and_only_s256() {
        let doc = Metadata::new(IssuerId::parse("http://127.0.0.1:8080").unwrap()).document();
        assert_eq!(doc["issuer"], "http://127.0.0.1:8080");
        assert_eq!(
            doc["authorization_endpoint"],
            "http://127.0.0.1:8080/authorize"
        );
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(
            doc["registration_endpoint"],
            "http://127.0.0.1:8080/register"
        );
    }

    #[test]
    fn closed_registration_is_not_advertised() {
        let mut m = Metadata::new(IssuerId::parse("https://auth.example").unwrap());
        m.registration = false;
        m.client_credentials = false;
        let doc = m.document();
        assert!(doc.get("registration_endpoint").is_none());
        assert!(
            !doc["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("client_credentials"))
        );
    }

    #[test]
    fn the_openid_document_adds_what_openid_discovery_requires() {
        let m = Metadata::new(IssuerId::parse("https://auth.example").unwrap());
        let doc = m.openid_document();
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
        assert_eq!(doc["issuer"], m.document()["issuer"]);
        assert_eq!(doc["jwks_uri"], "https://auth.example/jwks.json");
    }
}
