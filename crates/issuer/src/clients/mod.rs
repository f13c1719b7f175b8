//! Clients: what identifies them and where they may be sent back to.

pub mod redirect_uri;
