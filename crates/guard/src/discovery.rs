//! Authorization server discovery: from an issuer identifier to its metadata document
//! (RFC 8414, or OpenID Connect Discovery 1.0), and from there to its `jwks_uri`.
//!
//! The locations tried, in order, are the ones MCP clients try (MCP authorization, "Authorization
//! Server Metadata Discovery"): for an issuer with a path (`https://idp.example/realms/acme`),
//! the OAuth path-insertion form `https://idp.example/.well-known/oauth-authorization-server/realms/acme`,
//! the OpenID path-insertion form `https://idp.example/.well-known/openid-configuration/realms/acme`
//! and the OpenID appended form `https://idp.example/realms/acme/.well-known/openid-configuration`;
//! for an issuer without one, the two root documents.
//!
//! A document counts only when its `issuer` is the configured issuer exactly (RFC 8414 §3.3):
//! tokens carry that string in `iss`, and a document for another issuer names keys that are
//! not this issuer's. The most common misconfiguration — the two differ only by a trailing
//! slash — is named as such.

use serde::Deserialize;
use url::Url;

use crate::fetch::Fetcher;

/// Why an issuer's metadata could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The issuer identifier is not an `https` (or `http`) URL without query or fragment.
    #[error("the issuer `{0}` is not an http(s) URL without query or fragment (RFC 8414 §2)")]
    BadIssuer(String),
    /// No location answered with a metadata document.
    #[error("no metadata document for issuer `{issuer}` ({tried})")]
    NotFound {
        /// The configured issuer.
        issuer: String,
        /// Each location and what it answered.
        tried: String,
    },
    /// The document names another issuer.
    #[error(
        "the metadata at {location} names issuer `{found}`, but the configured issuer is `{expected}`{hint}"
    )]
    IssuerMismatch {
        /// Where the document was found.
        location: String,
        /// The configured issuer.
        expected: String,
        /// What the document says.
        found: String,
        /// A hint for the trailing-slash case (empty otherwise).
        hint: String,
    },
    /// The document has no usable `jwks_uri`.
    #[error("the metadata at {location} has no usable jwks_uri: {why}")]
    NoJwksUri {
        /// Where the document was found.
        location: String,
        /// What is wrong with it.
        why: String,
    },
}

/// What discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerMetadata {
    /// Where the document was read.
    pub location: Url,
    /// The issuer's JWKS URL.
    pub jwks_uri: Url,
}

#[derive(Deserialize)]
struct Document {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// The locations to try for `issuer`, in order.
pub fn metadata_locations(issuer: &str) -> Result<Vec<Url>, DiscoveryError> {
    let bad = || DiscoveryError::BadIssuer(issuer.to_owned());
    let url = Url::parse(issuer).map_err(|_| bad())?;
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || issuer.contains('#')
        || issuer.contains('?')
    {
        return Err(bad());
    }
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let at = |s: String| Url::parse(&s).map_err(|_| bad());
    if path.is_empty() {
        Ok(vec![
            at(format!("{origin}/.well-known/oauth-authorization-server"))?,
            at(format!("{origin}/.well-known/openid-configuration"))?,
        ])
    } else {
        Ok(vec![
            at(format!(
                "{origin}/.well-known/oauth-authorization-server{path}"
            ))?,
            at(format!("{origin}/.well-known/openid-configuration{path}"))?,
            at(format!("{origin}{path}/.well-known/openid-configuration"))?,
        ])
    }
}

/// Fetches `issuer`'s metadata with `fetcher` (its rules bound size, time and redirects) and
/// reads its `jwks_uri`.
pub async fn discover(fetcher: &Fetcher, issuer: &str) -> Result<IssuerMetadata, DiscoveryError> {
    let mut tried = Vec::new();
    for location in metadata_locations(issuer)? {
        let document = match fetcher.get(&location, "application/json").await {
            Ok(body) => serde_json::from_slice::<Document>(&body)
                .map_err(|e| format!("not JSON metadata: {e}")),
            Err(e) => Err(e.to_string()),
        };
        match document {
            Ok(d) => return read(d, location, issuer),
            Err(e) => tried.push(format!("{location}: {e}")),
        }
    }
    Err(DiscoveryError::NotFound {
        issuer: issuer.to_owned(),
        tried: tried.join("; "),
    })
}

fn read(document: Document, location: Url, issuer: &str) -> Result<IssuerMetadata, DiscoveryError> {
    let found = document.issuer.unwrap_or_default();
    if found != issuer {
        let hint = if found.trim_end_matches('/') == issuer.trim_end_matches('/') {
            format!(
                " — they differ only by a trailing slash; set the issuer to exactly `{found}`, the string the provider puts in `iss`"
            )
        } else {
            String::new()
        };
        return Err(DiscoveryError::IssuerMismatch {
            location: location.to_string(),
            expected: issuer.to_owned(),
            found,
            hint,
        });
    }
    let no = |why: &str| DiscoveryError::NoJwksUri {
        location: location.to_string(),
        why: why.to_owned(),
    };
    let raw = document.jwks_uri.ok_or_else(|| no("it is missing"))?;
    let jwks_uri = Url::parse(&raw).map_err(|_| no("it is not a URL"))?;
    // Credentials in the URL would be sent, and logged with the URL: refused.
    if !jwks_uri.username().is_empty() || jwks_uri.password().is_some() {
        return Err(no("it carries user information"));
    }
    // Keys over plain http only from an issuer that is itself plain http (a test or a
    // development provider); an https issuer's keys come over https.
    let allowed = match location.scheme() {
        "https" => jwks_uri.scheme() == "https",
        _ => matches!(jwks_uri.scheme(), "https" | "http"),
    };
    if !allowed {
        return Err(no(if location.scheme() == "https" {
            "an https issuer's keys must be fetched over https"
        } else {
            "its scheme must be http or https"
        }));
    }
    Ok(IssuerMetadata { location, jwks_uri })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(issuer: &str) -> Vec<String> {
        metadata_locations(issuer)
            .unwrap()
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn an_issuer_without_a_path_is_looked_up_at_the_root() {
        assert_eq!(
            strings("https://idp.example"),
            [
                "https://idp.example/.well-known/oauth-authorization-server",
                "https://idp.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            strings("https://idp.example/"),
            strings("https://idp.example")
        );
    }

    #[test]
    fn an_issuer_with_a_path_is_looked_up_by_path_insertion_first() {
        assert_eq!(
            strings("https://idp.example/realms/acme"),
            [
                "https://idp.example/.well-known/oauth-authorization-server/realms/acme",
                "https://idp.example/.well-known/openid-configuration/realms/acme",
                "https://idp.example/realms/acme/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn issuers_with_query_fragment_or_another_scheme_are_refused() {
        for bad in [
            "https://idp.example/?x=1",
            "https://idp.example/#f",
            "ftp://idp.example",
            "idp.example",
            "",
        ] {
            assert!(metadata_locations(bad).is_err(), "{bad}");
        }
    }

    fn doc(issuer: &str, jwks: Option<&str>) -> Document {
        Document {
            issuer: Some(issuer.into()),
            jwks_uri: jwks.map(Into::into),
        }
    }

    #[test]
    fn the_document_must_name_the_configured_issuer_exactly() {
        let at = Url::parse("https://idp.example/.well-known/openid-configuration").unwrap();
        let ok = read(
            doc("https://idp.example/", Some("https://idp.example/keys")),
            at.clone(),
            "https://idp.example/",
        )
        .unwrap();
        assert_eq!(ok.jwks_uri.as_str(), "https://idp.example/keys");
        let err = read(
            doc("https://idp.example/", Some("https://idp.example/keys")),
            at.clone(),
            "https://idp.example",
        )
        .unwrap_err();
        assert!(err.to_string().contains("trailing slash"), "{err}");
        let err = read(
            doc("https://other.example", Some("https://idp.example/keys")),
            at,
            "https://idp.example",
        )
        .unwrap_err();
        assert!(matches!(err, DiscoveryError::IssuerMismatch { .. }));
        assert!(!err.to_string().contains("trailing slash"), "{err}");
    }

    #[test]
    fn an_https_issuer_keys_come_over_https() {
        let at = Url::parse("https://idp.example/.well-known/openid-configuration").unwrap();
        for bad in [
            None,
            Some("not a url"),
            Some("http://idp.example/keys"),
            Some("https://user:secret@idp.example/keys"),
        ] {
            let e = read(
                doc("https://idp.example", bad),
                at.clone(),
                "https://idp.example",
            );
            assert!(
                matches!(e, Err(DiscoveryError::NoJwksUri { .. })),
                "{bad:?}"
            );
        }
    }
}
