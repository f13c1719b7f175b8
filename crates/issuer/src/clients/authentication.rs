//! How a client presents itself at the token, introspection and revocation endpoints (RFC
//! 6749 §2.3, RFC 7523 §2.2): read strictly, before anything is looked up.
//!
//! A request uses at most one method: HTTP Basic, `client_secret` in the body, or a
//! `client_assertion` JWT; two at once are `invalid_request` (RFC 6749 §2.3). Basic
//! credentials are form-encoded before base64 (RFC 6749 §2.3.1), so `%3A` in an identifier is
//! a colon. A `client_id` parameter next to Basic or an assertion must name the same client.
//!
//! ```
//! use http::HeaderMap;
//! use mcpgate_issuer::clients::authentication::Presented;
//! use mcpgate_issuer::params::Params;
//!
//! let params = Params::parse(b"grant_type=authorization_code&client_id=abc").unwrap();
//! let presented = Presented::read(&HeaderMap::new(), &params).unwrap();
//! assert_eq!(presented, Presented::None { client_id: "abc".into() });
//! ```

use base64::Engine as _;
use http::{HeaderMap, header};

use crate::error::OAuthError;
use crate::params::Params;

/// RFC 7523's assertion type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What the client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// A public client: its identifier alone.
    None {
        /// The client.
        client_id: String,
    },
    /// `Authorization: Basic`.
    Basic {
        /// The client.
        client_id: String,
        /// Its secret.
        secret: String,
    },
    /// `client_id` and `client_secret` in the body.
    Post {
        /// The client.
        client_id: String,
        /// Its secret.
        secret: String,
    },
    /// A signed JWT (`private_key_jwt`).
    Assertion {
        /// The `client_id` parameter, when sent (the assertion's `sub` names the client too).
        client_id: Option<String>,
        /// The JWT.
        assertion: String,
    },
}

impl Presented {
    /// Reads the client's credentials from the request.
    pub fn read(headers: &HeaderMap, params: &Params) -> Result<Presented, OAuthError> {
        let basic = basic(headers)?;
        let client_id = params.get("client_id");
        let secret = params.get("client_secret");
        let assertion = params.get("client_assertion");
        let assertion_type = params.get("client_assertion_type");
        let methods = [basic.is_some(), secret.is_some(), assertion.is_some()]
            .iter()
            .filter(|m| **m)
            .count();
        if methods > 1 {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not several (Basic, client_secret or client_assertion)",
            ));
        }
        if assertion_type.is_some() != assertion.is_some() {
            return Err(OAuthError::invalid_request(
                "client_assertion and client_assertion_type go together",
            ));
        }
        let same_client = |named: &str| match client_id {
            Some(id) if id != named => Err(OAuthError::invalid_request(
                "client_id does not name the client that authenticated",
            )),
            _ => Ok(()),
        };
        if let Some((id, secret)) = basic {
            same_client(&id).map_err(OAuthError::with_basic_challenge)?;
            return Ok(Presented::Basic {
                client_id: id,
                secret,
            });
        }
        if let Some(assertion) = assertion {
            if assertion_type != Some(JWT_BEARER) {
                return Err(OAuthError::invalid_client(format!(
                    "client_assertion_type must be {JWT_BEARER}"
                )));
            }
            return Ok(Presented::Assertion {
                client_id: client_id.map(str::to_owned),
                assertion: assertion.to_owned(),
            });
        }
        let client_id = client_id
            .ok_or_else(|| OAuthError::invalid_client("client_id is missing (or use HTTP Basic)"))?
            .to_owned();
        Ok(match secret {
            Some(secret) => Presented::Post {
                client_id,
                secret: secret.to_owned(),
            },
            None => Presented::None { client_id },
        })
    }

    /// The client named, when the method names one directly.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Presented::None { client_id }
            | Presented::Basic { client_id, .. }
            | Presented::Post { client_id, .. } => Some(client_id),
            Presented::Assertion { client_id, .. } => client_id.as_deref(),
        }
    }

    /// Whether a refusal should carry a `Basic` challenge.
    pub fn is_basic(&self) -> bool {
        matches!(self, Presented::Basic { .. })
    }
}

/// `Authorization: Basic`, decoded (`None` when the header is absent).
fn basic(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let malformed = || {
        OAuthError::invalid_client("the Authorization header is not valid HTTP Basic credentials")
            .with_basic_challenge()
    };
    if values.next().is_some() {
        return Err(OAuthError::invalid_request("Authorization is repeated"));
    }
    let text = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "client authentication here is HTTP Basic, client_secret or client_assertion",
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |s: &str| -> Result<String, OAuthError> {
        let bytes: Vec<u8> = form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap_or_default();
        String::from_utf8(bytes).map_err(|_| malformed())
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    if id.is_empty() {
        return Err(malformed());
    }
    Ok(Some((id, secret)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn basic_header(raw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
            .parse()
            .unwrap(),
        );
        h
    }

    fn params(text: &str) -> Params {
        Params::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let p = Presented::read(&basic_header("my%3Aclient:s%2Bcret"), &params("")).unwrap();
        assert_eq!(
            p,
            Presented::Basic {
                client_id: "my:client".into(),
                secret: "s+cret".into()
            }
        );
    }

    #[test]
    fn a_secret_in_the_body_is_client_secret_post() {
        let p = Presented::read(&HeaderMap::new(), &params("client_id=a&client_secret=b")).unwrap();
        assert!(matches!(p, Presented::Post { .. }));
    }

    #[test]
    fn two_methods_at_once_are_refused() {
        let e = Presented::read(&basic_header("a:b"), &params("client_secret=b")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let e = Presented::read(
            &HeaderMap::new(),
            &params(&format!(
                "client_id=a&client_secret=b&client_assertion=x&client_assertion_type={JWT_BEARER}"
            )),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn a_client_id_that_disagrees_with_basic_is_refused() {
        let e = Presented::read(&basic_header("a:b"), &params("client_id=other")).unwrap_err();
        assert!(e.basic_challenge);
    }

    #[test]
    fn malformed_basic_is_invalid_client_with_a_challenge() {
        for raw in ["no-colon", ":secret"] {
            let e = Presented::read(&basic_header(raw), &params("")).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClient, "{raw}");
            assert!(e.basic_challenge);
        }
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(
            Presented::read(&h, &params("")).unwrap_err().code,
            ErrorCode::InvalidClient
        );
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(
            Presented::read(&h, &params("")).unwrap_err().code,
            ErrorCode::InvalidClient
        );
    }

    #[test]
    fn an_assertion_needs_the_jwt_bearer_type() {
        let e = Presented::read(
            &HeaderMap::new(),
            &params("client_assertion=x&client_assertion_type=saml"),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        let e = Presented::read(&HeaderMap::new(), &params("client_assertion=x")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let p = Presented::read(
            &HeaderMap::new(),
            &params(&format!(
                "client_assertion=x&client_assertion_type={JWT_BEARER}"
            )),
        )
        .unwrap();
        assert_eq!(p.client_id(), None);
    }

    #[test]
    fn nothing_at_all_is_invalid_client() {
        let e = Presented::read(&HeaderMap::new(), &params("grant_type=x")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
    }
}

/// How long a client assertion may live: its `exp` at most this far ahead (so that the
/// replay store keeps its `jti` only briefly).
pub const MAX_ASSERTION_LIFE: std::time::Duration = std::time::Duration::from_secs(600);

/// Authenticates the client of a token, introspection or revocation request: the credentials
/// it presented, checked against how it registered.
pub async fn authenticate(
    issuer: &crate::issuer::Issuer,
    headers: &HeaderMap,
    params: &Params,
) -> Result<super::registry::KnownClient, OAuthError> {
    use super::metadata::AuthMethod;
    let presented = Presented::read(headers, params)?;
    let basic = presented.is_basic();
    let refuse = |description: &str| {
        let e = OAuthError::invalid_client(description.to_owned());
        if basic { e.with_basic_challenge() } else { e }
    };
    match presented {
        Presented::None { client_id } => {
            let mut client = super::registry::find(issuer, &client_id).await?;
            if !client.metadata.accepts(AuthMethod::None) {
                return Err(refuse(&format!(
                    "this client must authenticate ({})",
                    client.metadata.auth_method.as_str()
                )));
            }
            client.authenticated_by = AuthMethod::None;
            Ok(client)
        }
        Presented::Basic { client_id, secret } | Presented::Post { client_id, secret } => {
            let mut client = super::registry::find(issuer, &client_id)
                .await
                .map_err(|e| if basic { e.with_basic_challenge() } else { e })?;
            // Either secret method is accepted from a client that holds a secret: clients
            // mix them up, and both carry the same proof.
            let Some(stored) = &client.secret_hash else {
                return Err(refuse("this client has no secret"));
            };
            if !client.metadata.auth_methods.iter().any(|m| m.uses_secret())
                || !crate::secret::TokenHash::of(&secret).matches(stored)
            {
                tracing::info!(target: "mcpgate::issuer", client_id = %client.id, "client authentication failed: wrong secret");
                return Err(refuse("client authentication failed"));
            }
            client.authenticated_by = if basic {
                AuthMethod::ClientSecretBasic
            } else {
                AuthMethod::ClientSecretPost
            };
            Ok(client)
        }
        Presented::Assertion {
            client_id,
            assertion,
        } => assertion::verify(issuer, client_id.as_deref(), &assertion).await,
    }
}

/// `private_key_jwt` (RFC 7523 §3): a JWT the client signed with one of its keys.
mod assertion {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use base64::Engine as _;
    use mcpgate_guard::fetch::{Destinations, FetchRules, Fetcher};
    use mcpgate_guard::{
        Audience, ClaimRules, JwtVerifier, KeyRing, TokenVerifier, VerificationKey,
    };

    use super::MAX_ASSERTION_LIFE;
    use crate::clients::metadata::{AuthMethod, Jwks};
    use crate::clients::registry::{self, KnownClient};
    use crate::error::OAuthError;
    use crate::issuer::Issuer;

    /// Algorithms a client may sign assertions with (never `none` or HMAC).
    const ALGORITHMS: [mcpgate_guard::Algorithm; 8] = [
        mcpgate_guard::Algorithm::ES256,
        mcpgate_guard::Algorithm::ES384,
        mcpgate_guard::Algorithm::RS256,
        mcpgate_guard::Algorithm::RS384,
        mcpgate_guard::Algorithm::RS512,
        mcpgate_guard::Algorithm::PS256,
        mcpgate_guard::Algorithm::PS384,
        mcpgate_guard::Algorithm::EdDSA,
    ];

    /// The unverified `sub` of a JWT (to find the client whose keys verify it).
    fn unverified_subject(jwt: &str) -> Option<String> {
        let payload = jwt.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        claims.get("sub")?.as_str().map(str::to_owned)
    }

    pub(super) async fn verify(
        issuer: &Issuer,
        client_id: Option<&str>,
        jwt: &str,
    ) -> Result<KnownClient, OAuthError> {
        let bad = |why: &str| OAuthError::invalid_client(format!("client assertion {why}"));
        if jwt.len() > 8 * 1024 {
            return Err(bad("is too large"));
        }
        let named = match client_id {
            Some(id) => id.to_owned(),
            None => unverified_subject(jwt).ok_or_else(|| bad("has no `sub`"))?,
        };
        let mut client = registry::find(issuer, &named).await?;
        if !client.metadata.accepts(AuthMethod::PrivateKeyJwt) {
            return Err(bad("is not how this client authenticates"));
        }
        let keys = match &client.metadata.jwks {
            Some(Jwks::Inline(set)) => set.clone(),
            Some(Jwks::Uri(url)) => {
                let fetcher = Fetcher::new(FetchRules {
                    destinations: if issuer.settings.allow_loopback_fetch {
                        Destinations::PublicAndLoopback
                    } else {
                        Destinations::Public
                    },
                    max_bytes: 64 * 1024,
                    timeout: Duration::from_secs(5),
                    max_redirects: 0,
                })
                .map_err(|_| OAuthError::server_error())?;
                let body = fetcher
                    .get(url, "application/json")
                    .await
                    .map_err(|e| bad(&format!("keys could not be fetched from jwks_uri ({e})")))?;
                serde_json::from_slice(&body).map_err(|_| bad("keys at jwks_uri are not JSON"))?
            }
            None => return Err(bad("cannot be checked: the client has no keys")),
        };
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(keys).map_err(|_| bad("keys are not a JWK Set"))?;
        let keys: Vec<VerificationKey> = set
            .keys
            .iter()
            .filter_map(|jwk| VerificationKey::from_jwk(jwk, &ALGORITHMS).ok())
            .collect();
        if keys.is_empty() {
            return Err(bad(
                "cannot be checked: none of the client's keys is usable",
            ));
        }
        let rules = ClaimRules {
            issuer: Some(client.id.as_str().to_owned()),
            audiences: vec![
                Audience::new(issuer.settings.issuer.as_str()),
                Audience::new(issuer.settings.issuer.endpoint("token")),
            ],
            leeway: Duration::from_secs(30),
            require_exp: true,
            require_iss: true,
        };
        let verifier = JwtVerifier::builder(rules)
            .algorithms(ALGORITHMS)
            .key_ring(Arc::new(KeyRing::new(keys)))
            .cache(0, Duration::ZERO)
            .build()
            .map_err(|_| OAuthError::server_error())?;
        let principal = verifier.verify(jwt).await.map_err(|e| {
            tracing::info!(target: "mcpgate::issuer", client_id = %client.id, reason = %e.reason, "client assertion refused");
            bad(&format!("was refused: {}", e.reason))
        })?;
        if principal.subject.as_str() != client.id.as_str() {
            return Err(bad("`sub` must be the client_id"));
        }
        let expires = principal.expires_at.ok_or_else(|| bad("has no `exp`"))?;
        let now = SystemTime::now();
        if expires > now + MAX_ASSERTION_LIFE {
            return Err(bad("expires too far ahead (at most 10 minutes)"));
        }
        if principal
            .claims
            .get("iat")
            .and_then(|v| v.as_u64())
            .is_some_and(|iat| {
                let now_s = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                iat > now_s + 60
            })
        {
            return Err(bad("was issued in the future (`iat`)"));
        }
        let jti = principal
            .claims
            .get("jti")
            .and_then(|v| v.as_str())
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| bad("has no `jti`"))?;
        let fresh = issuer
            .store
            .remember_jti(client.id.as_str(), jti, expires, now)
            .await
            .map_err(|_| OAuthError::server_error())?;
        if !fresh {
            tracing::warn!(target: "mcpgate::issuer", client_id = %client.id, "client assertion replayed");
            return Err(bad("was already used (replayed `jti`)"));
        }
        client.authenticated_by = AuthMethod::PrivateKeyJwt;
        Ok(client)
    }
}
