//! Test fixtures for mcpgate: signing keys and tokens, a stand-in identity provider, MCP
//! servers to put behind the gateway, and documents served over https. Test-only; not
//! published.

pub mod idp;
pub mod keys;
pub mod spy;
pub mod tls;
pub mod upstream;

pub use idp::FakeIdp;
pub use keys::TestKey;
pub use spy::{Behaviour, Spy};
pub use upstream::{Mode, TestUpstream};

/// The path of one of this crate's fixture programs (`stdio-upstream`, `conformance-upstream`
/// …), next to `beside` (a test's `env!("CARGO_BIN_EXE_mcpgate")`). `cargo test` builds a
/// package's own programs, not its dependencies', so a missing fixture is built here, once per
/// test process, with the same profile.
pub fn fixture(beside: &str, name: &str) -> std::path::PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let path = std::path::Path::new(beside).with_file_name(name);
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if path.exists() {
        return path;
    }
    let release = std::path::Path::new(beside)
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|d| d == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "mcpgate-testkit", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cargo runs");
    assert!(
        status.success() && path.exists(),
        "could not build the test fixture {name}: cargo build -p mcpgate-testkit --bins"
    );
    path
}
