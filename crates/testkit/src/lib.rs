//! Test fixtures for mcpgate: signing keys and tokens, a stand-in identity provider, and MCP
//! servers to put behind the gateway. Test-only; not published.

pub mod idp;
pub mod keys;
pub mod upstream;

pub use idp::FakeIdp;
pub use keys::TestKey;
pub use upstream::{Mode, TestUpstream};
