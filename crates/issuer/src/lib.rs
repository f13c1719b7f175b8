#![doc = include_str!("../README.md")]
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
pub mod users;
