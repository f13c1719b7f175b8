//! # mcpgate-issuer
//!
//! The OAuth 2.1 authorization server of [mcpgate] for MCP clients, as a library: a Rust
//! author mounts it in their own axum app next to `mcpgate-guard`'s layer, and the `mcpgate`
//! gateway mounts it in `--auth issuer` mode. Being built; what exists:
//!
//! - [`store`]: storage traits named by role (clients, authorization codes, grants, refresh
//!   tokens, consents, users, signing keys, assertion replay), with atomic single-use codes and
//!   refresh-token rotation with reuse detection; [`store::sqlite::SqliteStore`], the embedded
//!   backend; a conformance suite every backend runs (feature `conformance`); and
//!   [`store::Revocations`], which lets `mcpgate-guard` refuse tokens of revoked grants in
//!   process.
//! - [`keys`]: signing keys — generated on first start, encrypted at rest when given a key,
//!   rotated with an overlap, published as a JWK Set and handed to `mcpgate-guard` as a
//!   [`KeyRing`](mcpgate_guard::KeyRing) so the gateway verifies the issuer's tokens with no
//!   HTTP round trip.
//! - [`secret`]: random tokens and the SHA-256 hashes the store keeps instead of them.
//! - [`error`]: every refusal as an OAuth error code and a description, delivered as JSON, as
//!   a redirect carrying `iss` (RFC 9207), or as a page before the redirect URI is trusted.
//! - [`params`]: form and query parameters read strictly (a repeated parameter is
//!   `invalid_request`, an empty one is absent).
//! - [`pkce`]: S256 code challenges and verifiers (RFC 7636; `plain` is refused).
//! - [`metadata`]: the RFC 8414 and OpenID discovery documents and where they are served.
//! - [`clients`]: redirect URI rules ([`clients::redirect_uri`]: loopback ports are free, RFC
//!   8252 §7.3; the operator's allow-list), client metadata checked once whatever its source
//!   ([`clients::metadata`]), client ID metadata documents fetched safely
//!   ([`clients::metadata_document`]) and the credentials a client presents
//!   ([`clients::authentication`]).
//! - [`scopes`]: the operator's scope catalogue; [`resource`]: RFC 8707 resource indicators.
//! - [`authorize::request`]: an authorization request checked in one visible order, failing
//!   as a page until the redirect URI is trusted and as a redirect after.
//! - [`authorize::flow`]: the interactive `/authorize` — [`sign_in`] (local users, argon2id
//!   off the runtime, throttled), [`consent`] (what is asked, what was approved), [`pages`]
//!   (askama templates with a strict CSP), CSRF tokens and the code issued
//!   ([`authorize::code`]).
//!
//! Still to come: the endpoints (registration, `/authorize` with sign-in and consent,
//! `/token`'s grants, introspection, revocation), the `Issuer` builder, a PostgreSQL store.
//!
//! [mcpgate]: https://github.com/mcpgate/mcpgate

#![warn(missing_docs)]

pub mod authorize;
pub mod clients;
pub mod consent;
pub mod error;
pub mod form;
pub mod introspection;
pub mod issuer;
pub mod keys;
pub mod metadata;
pub mod pages;
pub mod params;
pub mod pkce;
pub mod resource;
pub mod revocation;
pub mod routes;
pub mod scopes;
pub mod sealed;
pub mod secret;
pub mod sign_in;
pub mod store;
pub mod token;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
