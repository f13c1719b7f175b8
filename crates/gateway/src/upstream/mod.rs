//! The MCP servers the gateway fronts.

pub mod http;
