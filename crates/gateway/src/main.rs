//! `mcpgate`: OAuth 2.1 in front of Model Context Protocol servers.

mod auth;
mod cli;
mod config;
mod demo;
mod dns_rebinding;
mod health;
mod logging;
mod proxy;
mod quickstart;
mod server;
mod session;
mod upstream;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command, ServeArgs};

// The gateway allocates a little per request on many threads; mimalloc does that with less
// CPU than the system allocator (measured in docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::config::{AuthMode, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::CheckConfig(args) => check_config(args),
            Command::Quickstart(args) => quickstart::run(args).await,
            Command::ConfigReference { format } => {
                let text = match format.as_str() {
                    "toml" => config::toml_example(),
                    "env" => config::env_example(),
                    _ => config::reference_markdown(),
                };
                print!("{text}");
                ExitCode::SUCCESS
            }
        }
    })
}

fn load(args: &ServeArgs) -> Result<Config, ExitCode> {
    Config::load(args.config.as_deref(), args.overrides()).map_err(|e| {
        eprintln!("mcpgate: configuration error:\n{e}");
        ExitCode::from(2)
    })
}

fn check_config(args: ServeArgs) -> ExitCode {
    let config = match load(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match toml::to_string_pretty(&config) {
        Ok(text) => {
            println!("# effective configuration (secrets masked)\n{text}");
            for warning in warnings(&config) {
                eprintln!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcpgate: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Things that are allowed but deserve a word at start.
fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if config.dev {
        out.push("DEVELOPMENT MODE (dev = true): development-only settings are allowed. Never run this in production.".into());
    }
    match config.auth.mode {
        AuthMode::None => out.push("auth.mode = none: every request is let through without authentication (loopback only).".into()),
        AuthMode::Passthrough => out.push(
            "auth.mode = passthrough: the gateway only checks that a bearer token is present and forwards it; the upstream must validate it.".into(),
        ),
        AuthMode::Static => out.push("auth.mode = static: fixed development tokens are accepted. Never use this in production.".into()),
        _ => {}
    }
    if config.upstream.forward_token {
        out.push(
            "upstream.forward_token = true: clients' tokens are forwarded to the upstream.".into(),
        );
    }
    out
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match load(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    logging::init(&config.log);
    run(config).await
}

/// Runs the gateway for a validated configuration until it is told to stop.
pub async fn run(config: Config) -> ExitCode {
    for warning in warnings(&config) {
        tracing::warn!("{warning}");
    }
    let prepared = match server::prepare(&config) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("mcpgate: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(verifier) = &prepared.verifier
        && let Err(e) = verifier.warm_up().await
    {
        tracing::warn!("token keys not loaded yet ({e}); requests will be refused until they are");
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcpgate: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(1);
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(
        listen = %local,
        resource = %prepared.resource,
        upstream = %upstream_description(&config),
        auth = config.auth.mode.as_str(),
        "mcpgate listening"
    );
    let stdio = prepared.stdio.clone();
    let result = server::serve(
        listener,
        prepared.router,
        Duration::from_secs(10),
        stdio.clone(),
    )
    .await;
    if let Some(stdio) = stdio {
        // Requests are done (or out of time): the children go, gently first.
        stdio.shutdown().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpgate: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The upstream, for the start-up line (a command's arguments are shown; its environment is
/// not).
fn upstream_description(config: &Config) -> String {
    match (&config.upstream.url, &config.upstream.command) {
        (Some(url), _) => url.to_string(),
        // Arguments may carry credentials (a DSN, a key): only the program is shown.
        (None, Some(argv)) => format!(
            "stdio: {} ({} arguments)",
            argv.first().map(String::as_str).unwrap_or_default(),
            argv.len().saturating_sub(1)
        ),
        (None, None) => String::new(),
    }
}
