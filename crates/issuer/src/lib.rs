//! # mcpgate-issuer
//!
//! An OAuth 2.1 authorization server for MCP clients, as a library: a Rust author mounts it
//! in their own axum app next to `mcpgate-guard`'s layer, and the `mcpgate` gateway mounts it
//! in `--auth issuer` mode.
//!
//! What exists so far are the parts every endpoint shares, each free of HTTP routing and
//! storage so that it can be read and tested alone:
//!
//! - [`error`]: every refusal as an OAuth error code and a description, delivered as JSON, as
//!   a redirect carrying `iss` (RFC 9207), or as a page before the redirect URI is trusted.
//! - [`params`]: form and query parameters read strictly (a repeated parameter is
//!   `invalid_request`, an empty one is absent).
//! - [`pkce`]: S256 code challenges and verifiers (RFC 7636; `plain` is refused).
//! - [`clients::redirect_uri`]: what a redirect URI may be, how a presented one matches a
//!   registered one (loopback ports are free, RFC 8252 §7.3), and the operator's allow-list.
//! - [`metadata`]: the RFC 8414 and OpenID discovery documents and where they are served.
//! - [`clients::metadata`], [`clients::metadata_document`], [`clients::authentication`]: client
//!   metadata checked once whatever its source, client ID metadata documents fetched safely,
//!   and the credentials a client presents.
//! - [`scopes`]: the operator's scope catalogue; [`resource`]: RFC 8707 resource indicators.
//! - [`authorize::request`]: an authorization request checked in one visible order, failing
//!   as a page until the redirect URI is trusted and as a redirect after.

pub mod authorize;
pub mod clients;
pub mod error;
pub mod metadata;
pub mod params;
pub mod pkce;
pub mod resource;
pub mod scopes;
