//! `mcpgate quickstart`: a demo MCP server behind the gateway with a development token,
//! running in one process, with the client configuration to paste printed at start.
//!
//! This is a development setup: the token is a fixed string accepted as-is (`static` mode).
//! For real deployments point `mcpgate serve` at your identity provider (docs/jwt.md).

use std::process::ExitCode;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use tokio_util::sync::CancellationToken;

use crate::cli::QuickstartArgs;
use crate::config::{AuthMode, Config, Plan, Secret, StaticTokenConfig};

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
    let token = dev_token();
    config.listen = args.listen;
    config.public_url = args.public_url;
    config.dev = true;
    config.upstream.url = Some(upstream.parse().expect("demo URL"));
    config.upstream.identity_headers.subject = Some(crate::demo::SUBJECT_HEADER.into());
    config.auth.mode = AuthMode::Static;
    config.auth.required_scopes = vec!["mcp".into()];
    config.auth.static_tokens = vec![StaticTokenConfig {
        token: Secret::new(token.clone()),
        subject: "dev-user".into(),
        client_id: Some("quickstart".into()),
        scopes: vec!["mcp".into()],
    }];
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
    let url = plan.auth.resource.resource().to_string();
    println!("{}", banner(&url, &token));
    let code = crate::commands::run(plan).await;
    stop.cancel();
    code
}

fn dev_token() -> String {
    let mut bytes = [0u8; 24];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("system randomness");
    format!(
        "mcpgate-dev-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn banner(url: &str, token: &str) -> String {
    format!(
        r#"
================================================================================
 mcpgate quickstart: DEVELOPMENT SETUP, NOT FOR PRODUCTION
 A demo MCP server runs behind the gateway. The token below is a fixed
 development token (auth mode `static`); it changes every start.
================================================================================

 MCP endpoint:  {url}
 Token:         {token}

 Try it:
   curl -s {url} -H 'Authorization: Bearer {token}' \
     -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
     -d '{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"curl","version":"1"}}}}}}'

 Without the token you get the 401 challenge real clients follow:
   curl -si {url} -X POST -H 'Content-Type: application/json' -d '{{}}' | grep -i www-authenticate

 VS Code (.vscode/mcp.json):
   {{ "servers": {{ "mcpgate-demo": {{ "type": "http", "url": "{url}",
       "headers": {{ "Authorization": "Bearer {token}" }} }} }} }}

 Cursor (~/.cursor/mcp.json):
   {{ "mcpServers": {{ "mcpgate-demo": {{ "url": "{url}",
       "headers": {{ "Authorization": "Bearer {token}" }} }} }} }}

 Claude Desktop (claude_desktop_config.json, through mcp-remote):
   {{ "mcpServers": {{ "mcpgate-demo": {{ "command": "npx",
       "args": ["-y", "mcp-remote", "{url}", "--header", "Authorization:${{AUTH}}"],
       "env": {{ "AUTH": "Bearer {token}" }} }} }} }}

 MCP Inspector:
   npx @modelcontextprotocol/inspector --cli {url} --transport http \
     --header "Authorization: Bearer {token}" --method tools/list

 Ctrl-C stops everything.
================================================================================
"#
    )
}
