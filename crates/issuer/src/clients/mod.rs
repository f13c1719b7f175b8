//! Clients: what identifies them, what they may do and where they may be sent back to. One
//! validation path ([`metadata`]) serves dynamic registration, client ID metadata documents
//! and clients from the operator's configuration.

pub mod authentication;
pub mod configured;
pub mod metadata;
pub mod metadata_document;
pub mod presets;
pub mod redirect_uri;
pub mod registration;
pub mod registry;
