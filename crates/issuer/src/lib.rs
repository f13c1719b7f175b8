//! # mcpgate-issuer
//!
//! The OAuth 2.1 authorization server of [mcpgate], as a library. This is its foundation:
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
//!
//! Still to come: RFC 8414 metadata, client registration (RFC 7591, Client ID Metadata
//! Documents, static clients), `/authorize` with sign-in and consent, the token endpoint's
//! grants, introspection (RFC 7662), revocation (RFC 7009), and a PostgreSQL store.
//!
//! [mcpgate]: https://github.com/mcpgate/mcpgate

#![warn(missing_docs)]

pub mod keys;
pub mod secret;
pub mod store;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
