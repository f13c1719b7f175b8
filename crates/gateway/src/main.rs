//! `mcpgate`: OAuth 2.1 in front of Model Context Protocol servers.

use std::process::ExitCode;

use clap::Parser;
use mcpgate::cli::{self, Cli, Command};
use mcpgate::{commands, config};

// The gateway allocates a little per request on many threads; mimalloc does that with less
// CPU than the system allocator (measured in docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that print and exit behave as command-line tools do when their reader goes
    // away (`mcpgate policy explain … | head`): they stop, quietly. The servers keep Rust's
    // default (a write to a closed socket is an error, not a signal).
    if !matches!(cli.command, Command::Serve(_) | Command::Quickstart(_)) {
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // Read here, not by tokio (which panics on a bad value, and starts as many threads as
    // asked): connections are served by `threads::count()` threads of their own, so the main
    // runtime (accepting, background work) needs few.
    if let Some(Err(why)) = mcpgate::threads::configured() {
        eprintln!("error: {why}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(mcpgate::threads::count().min(2))
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => commands::serve(args).await,
            Command::CheckConfig(args) => commands::check_config(args),
            Command::Quickstart(args) => commands::quickstart::run(args).await,
            Command::Policy(cli::PolicyCommand::Explain(args)) => commands::explain(args),
            Command::Users { command, data } => commands::admin::users(command, data.dir()).await,
            Command::Clients { command, data } => {
                commands::admin::clients(command, data.dir()).await
            }
            Command::Keys { command, data } => commands::admin::keys(command, data.dir()).await,
            Command::Grants { command, data } => commands::admin::grants(command, data.dir()).await,
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
