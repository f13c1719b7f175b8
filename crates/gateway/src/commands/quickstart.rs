//! `mcpgate quickstart`: a demo MCP server behind the gateway, with the gateway as its
//! authorization server — real OAuth: clients discover it from the 401, register, send you to
//! a sign-in page, and get tokens. One local user is made on first start (its password
//! printed once, or taken from `MCPGATE_QUICKSTART_PASSWORD`); clients, users, grants and keys
//! live in SQLite in the data directory and survive a restart.
//!
//! `--dev-auto-approve` signs that user in and approves every request at once (scripts, CI).

use std::process::ExitCode;

use base64::Engine as _;
use tokio_util::sync::CancellationToken;

use crate::cli::QuickstartArgs;
use crate::config::{AuthMode, Config, Plan};

/// The local user the quickstart makes.
pub const USER: &str = "quickstart";

/// Runs the quickstart until Ctrl-C.
pub async fn run(args: QuickstartArgs) -> ExitCode {
    let mut config = Config::default();
    config.log.level = "warn,mcpgate=info".into();
    crate::logging::init(config.log.format, &config.log.level);

    let stop = CancellationToken::new();
    let upstream = match crate::demo::start(stop.clone()).await {
        Ok(url) => url,
        Err(e) => {
            eprintln!("mcpgate: cannot start the demo MCP server: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.listen = args.listen;
    config.public_url = args.public_url.clone();
    config.data_dir = args.data_dir.clone();
    config.upstream.url = Some(upstream.parse().expect("demo URL"));
    config.upstream.identity_headers.subject = Some(crate::demo::SUBJECT_HEADER.into());
    config.auth.mode = AuthMode::Issuer;
    config.auth.required_scopes = vec!["mcp".into()];
    config.issuer.scopes.insert(
        "mcp".into(),
        "Use the tools, resources and prompts of the demo MCP server".into(),
    );
    if args.dev_auto_approve {
        config.dev = true;
        config.dev_auto_approve = true;
    }
    let plan = match Plan::build(&config) {
        Ok(plan) => plan,
        Err(errors) => {
            for e in errors {
                eprintln!("mcpgate: {e}");
            }
            return ExitCode::from(2);
        }
    };
    // Probe the port first so that a busy port gets a helpful message, not a bare error.
    match std::net::TcpListener::bind(config.listen) {
        Ok(l) => drop(l),
        Err(e) => {
            eprintln!(
                "mcpgate: cannot listen on {}: {e}. Try `mcpgate quickstart --listen 127.0.0.1:8081`.",
                config.listen
            );
            return ExitCode::FAILURE;
        }
    }
    let password = match ensure_user(&args).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mcpgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = plan.auth.resource.resource().to_string();
    println!("{}", banner(&url, password.as_deref(), &args, plan.dev));
    let code = crate::server::run(plan).await;
    stop.cancel();
    code
}

/// Makes the quickstart's user unless the store has it; its password when it was made now.
async fn ensure_user(args: &QuickstartArgs) -> Result<Option<String>, String> {
    let store = mcpgate_issuer::store::sqlite::SqliteStore::open(&args.data_dir)
        .await
        .map_err(|e| {
            format!(
                "cannot open the store in `{}`: {e}",
                args.data_dir.display()
            )
        })?;
    use mcpgate_issuer::store::UserStore as _;
    let name = mcpgate_issuer::store::UserName::new(USER);
    if store
        .get_user(&name)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(None);
    }
    drop(store);
    let password = match std::env::var("MCPGATE_QUICKSTART_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => generated_password(),
    };
    super::admin::add_user(&args.data_dir, USER, &password).await?;
    Ok(Some(password))
}

fn generated_password() -> String {
    let mut bytes = [0u8; 15];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn banner(url: &str, password: Option<&str>, args: &QuickstartArgs, dev: bool) -> String {
    let password = match password {
        Some(p) => format!("{p}   (shown once; it is stored hashed)"),
        None => "(set when this data directory was first used)".into(),
    };
    let approve = if dev {
        "\n DEVELOPMENT: --dev-auto-approve signs `quickstart` in and approves every request.\n"
    } else {
        ""
    };
    format!(
        r#"
================================================================================
 mcpgate quickstart: a demo MCP server behind the gateway, which is also its
 OAuth 2.1 authorization server. Clients log in: no token to paste.
================================================================================
{approve}
 MCP endpoint:  {url}
 Sign in as:    {USER}
 Password:      {password}
 Data:          {data} (clients, users, grants and keys survive a restart)

 Without a token you get the 401 challenge real clients follow:
   curl -si {url} -X POST -H 'Content-Type: application/json' -d '{{}}' | grep -i www-authenticate

 Claude Code:
   claude mcp add --transport http mcpgate-demo {url}

 VS Code (.vscode/mcp.json):
   {{ "servers": {{ "mcpgate-demo": {{ "type": "http", "url": "{url}" }} }} }}

 Cursor (~/.cursor/mcp.json):
   {{ "mcpServers": {{ "mcpgate-demo": {{ "url": "{url}" }} }} }}

 Claude Desktop (claude_desktop_config.json, through mcp-remote):
   {{ "mcpServers": {{ "mcpgate-demo": {{ "command": "npx",
       "args": ["-y", "mcp-remote", "{url}"] }} }} }}

 MCP Inspector:
   npx @modelcontextprotocol/inspector   (Streamable HTTP, URL {url}, then
   "Open Auth Settings" → "Quick OAuth Flow")

 Ctrl-C stops everything.
================================================================================
"#,
        data = args.data_dir.display()
    )
}
