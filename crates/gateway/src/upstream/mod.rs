//! The MCP servers the gateway fronts: a Streamable HTTP endpoint, or a stdio command it runs.

pub mod http;
pub mod pool;
pub mod stdio;

use std::sync::Arc;

/// The upstream (one per gateway, so the size difference of the variants does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Upstream {
    /// A Streamable HTTP endpoint.
    Http(http::HttpUpstream),
    /// A command the gateway runs.
    Stdio(Arc<stdio::StdioUpstream>),
}

impl Upstream {
    /// Whether requests can be served now (for `/readyz`).
    pub async fn ready(&self) -> bool {
        match self {
            Upstream::Http(h) => h.reachable().await,
            Upstream::Stdio(s) => s.ready(),
        }
    }
}
