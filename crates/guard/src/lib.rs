//! # mcpgate-guard
//!
//! The resource-server half of OAuth 2.1 for [Model Context Protocol] servers, as a library:
//!
//! - [`TokenVerifier`]: bearer string in, [`Principal`] or a typed [`Rejection`] out, with
//!   implementations for JWTs ([`JwtVerifier`]: JWKS URL, static PEM key or HMAC secret),
//!   RFC 7662 introspection ([`IntrospectionVerifier`]) and fixed development tokens
//!   ([`StaticTokens`]);
//! - [`ProtectedResource`]: the RFC 9728 metadata document and where it is served;
//! - [`BearerAuthLayer`]: a tower layer that answers with the `401`/`403` challenges MCP
//!   clients follow and hands the verified [`Principal`] to the service behind it.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Extension, Router, routing::{get, post}};
//! use mcpgate_guard::{BearerAuthLayer, Principal, ProtectedResource, ResourceUrl, Scope, StaticTokens, Subject};
//!
//! let resource = ProtectedResource::new(ResourceUrl::parse("http://127.0.0.1:8080/mcp").unwrap())
//!     .authorization_server("https://login.example.com")
//!     .scopes_supported([Scope::new("mcp")]);
//! let verifier = StaticTokens::new([("dev".to_string(), Principal::builder(Subject::new("alice")).build())]);
//!
//! let protected = Router::new()
//!     .route("/mcp", post(|Extension(who): Extension<Arc<Principal>>| async move { who.subject.to_string() }))
//!     .layer(BearerAuthLayer::new(verifier, &resource));
//! let metadata = resource.clone();
//! let app: Router = protected.route(
//!     "/.well-known/oauth-protected-resource/mcp",
//!     get(move || { let doc = metadata.response(); async move { doc.map(axum::body::Body::from) } }),
//! );
//! ```
//!
//! [Model Context Protocol]: https://modelcontextprotocol.io

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod bytes;
pub mod challenge;
mod claims;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod discovery;
mod error;
#[cfg(any(feature = "jwt", feature = "introspection"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "jwt", feature = "introspection"))))]
pub mod fetch;
#[cfg(feature = "introspection")]
mod introspection;
#[cfg(feature = "jwt")]
mod issuers;
#[cfg(feature = "jwt")]
mod jwks;
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "jwt")]
mod keys;
mod layer;
mod metadata;
#[cfg(feature = "policy")]
#[cfg_attr(docsrs, doc(cfg(feature = "policy")))]
pub mod policy;
mod principal;
mod resource;
mod static_tokens;
#[cfg(feature = "policy")]
#[cfg_attr(docsrs, doc(cfg(feature = "policy")))]
pub mod uri;
mod verifier;

pub use claims::ClaimRules;
pub use error::{Malformed, Rejection, TokenError};
#[cfg(feature = "introspection")]
#[cfg_attr(docsrs, doc(cfg(feature = "introspection")))]
pub use introspection::{
    ClientAuth, IntrospectionConfigError, IntrospectionVerifier, IntrospectionVerifierBuilder,
};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use issuers::{IssuerPattern, IssuerPatternError, Issuers};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jsonwebtoken::Algorithm;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jwks::{JwksError, JwksOptions, JwksSource};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use jwt::{JwtConfigError, JwtVerifier, JwtVerifierBuilder, KeyRing, RevocationCheck};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use keys::{ALL_ALGORITHMS, KeyError, VerificationKey};
pub use layer::{BearerAuth, BearerAuthLayer, bearer_token};
pub use metadata::{ProtectedResource, ProtectedResourceMetadata};
pub use principal::{
    ClaimsError, ClientId, InvalidScope, Principal, PrincipalBuilder, Scope, Scopes, Subject,
};
pub use resource::{Audience, InvalidResourceUrl, PRM_WELL_KNOWN, ResourceUrl};
pub use static_tokens::StaticTokens;
pub use verifier::{BoxFuture, DEFAULT_MAX_TOKEN_BYTES, TokenVerifier, VerifyResult, WarmUpError};

/// The README's examples, compiled as doctests.
#[cfg(all(doctest, feature = "jwt", feature = "policy"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
