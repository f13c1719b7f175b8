//! Command-line interface. Flags override `MCPGATE_*` variables, which override the
//! configuration file, which overrides the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use figment::value::Value;

use crate::config::Overrides;

/// mcpgate: OAuth 2.1 in front of MCP servers.
#[derive(Debug, Parser)]
#[command(name = "mcpgate", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: put the upstream MCP server behind authentication.
    Serve(ServeArgs),
    /// Print the effective configuration (secrets masked); exit non-zero naming every problem.
    CheckConfig(ServeArgs),
    /// Run a demo MCP server behind the gateway, with the gateway as its OAuth authorization server.
    Quickstart(QuickstartArgs),
    /// Authorization policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// `issuer` mode: local users of the sign-in page.
    Users {
        /// What to do.
        #[command(subcommand)]
        command: UsersCommand,
        /// Where the store lives.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// `issuer` mode: registered and configured clients.
    Clients {
        /// What to do.
        #[command(subcommand)]
        command: ClientsCommand,
        /// Where the store lives.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// `issuer` mode: signing keys.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: KeysCommand,
        /// Where the store lives.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// `issuer` mode: what users gave clients.
    Grants {
        /// What to do.
        #[command(subcommand)]
        command: GrantsCommand,
        /// Where the store lives.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Print the configuration reference: `markdown` (docs/configuration.md), `toml`
    /// (mcpgate.example.toml) or `env` (.env.example).
    #[command(hide = true)]
    ConfigReference {
        /// Which form.
        #[arg(value_parser = ["markdown", "toml", "env"], default_value = "markdown")]
        format: String,
    },
}

/// Where the store of `issuer` mode lives.
#[derive(Debug, Args)]
pub struct DataDirArgs {
    /// The data directory [env: MCPGATE_DATA_DIR] [default: ./mcpgate-data].
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    /// The directory: the flag, else `MCPGATE_DATA_DIR`, else `./mcpgate-data`.
    pub fn dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .or_else(|| std::env::var_os("MCPGATE_DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("./mcpgate-data"))
    }
}

/// `mcpgate users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a local user; the password is read from standard input.
    Add {
        /// The login name.
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Print the argon2id hash of a password read from standard input, for a
    /// `[[issuer.users]]` entry's `password_hash` (nothing is stored).
    Hash {
        /// Read the password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List the users.
    List,
    /// Disable a user: they can no longer sign in, and their grants are revoked.
    Disable {
        /// The login name.
        name: String,
    },
}

/// `mcpgate clients …`.
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Add a client by name: from a preset (claude, claude-code, chatgpt, cursor, vscode) or
    /// its own metadata. A confidential client's secret is printed once.
    #[command(after_help = PRESETS_HELP)]
    Add {
        /// Its `client_id` (letters, digits, - . _ ~); default: the preset's name.
        #[arg(long)]
        client_id: Option<String>,
        /// Start from a known client's callbacks.
        #[arg(long)]
        preset: Option<String>,
        /// The name shown on the consent page.
        #[arg(long)]
        name: Option<String>,
        /// A redirect URI (repeatable; added to a preset's).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// `none`, `client_secret_basic`, `client_secret_post` or `private_key_jwt`.
        #[arg(long)]
        auth_method: Option<String>,
        /// A grant type (repeatable): authorization_code, refresh_token, client_credentials.
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// Its keys, for `private_key_jwt`.
        #[arg(long)]
        jwks_uri: Option<String>,
    },
    /// List the clients.
    List,
    /// Remove a client; its grants are revoked.
    Remove {
        /// Its `client_id`.
        client_id: String,
    },
}

/// The presets, for `clients add --help`.
const PRESETS_HELP: &str = "Presets:\n  claude       Claude (claude.ai, Desktop, mobile): https://claude.ai/api/mcp/auth_callback, https://claude.com/api/mcp/auth_callback\n  claude-code  Claude Code: http://localhost/callback, http://127.0.0.1/callback (any port)\n  chatgpt      ChatGPT, with a secret: https://chatgpt.com/connector_platform_oauth_redirect; add the connector's https://chatgpt.com/connector/oauth/<id> with --redirect-uri\n  cursor       Cursor: cursor://anysphere.cursor-mcp/oauth/callback, https://www.cursor.com/agents/mcp/oauth/callback, http://localhost/callback\n  vscode       VS Code: http://127.0.0.1:33418/, https://vscode.dev/redirect";

/// `mcpgate keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key; the previous one keeps verifying until its tokens expire.
    Rotate,
    /// List the keys.
    List,
}

/// `mcpgate grants …`.
#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// List the grants in force.
    List {
        /// Only this user's.
        #[arg(long)]
        subject: Option<String>,
        /// Only this client's.
        #[arg(long)]
        client: Option<String>,
    },
    /// Revoke a user's grants (all, or one client's): their tokens stop working.
    Revoke {
        /// The user.
        #[arg(long)]
        subject: String,
        /// Only this client's.
        #[arg(long)]
        client: Option<String>,
    },
}

/// `mcpgate policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show which rule decides for a token's claims and a target, and what every rule did.
    Explain(ExplainArgs),
}

/// `mcpgate policy explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The configuration, as for `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// A JSON file with the token's claims (`sub`, `scope`, and any others the rules use).
    #[arg(long, value_name = "FILE")]
    pub subject_claims: PathBuf,
    /// A tool name.
    #[arg(long, value_name = "NAME", group = "target")]
    pub tool: Option<String>,
    /// A resource URI.
    #[arg(long, value_name = "URI", group = "target")]
    pub resource: Option<String>,
    /// A resource template (its URI template).
    #[arg(long, value_name = "TEMPLATE", group = "target")]
    pub resource_template: Option<String>,
    /// A prompt name.
    #[arg(long, value_name = "NAME", group = "target")]
    pub prompt: Option<String>,
    /// The tool's annotations as JSON, e.g. '{"readOnlyHint":true}' (default: not known yet).
    #[arg(long, value_name = "JSON")]
    pub annotations: Option<String>,
    /// The target's `_meta` tags (comma-separated).
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// The MCP method (default: the one that uses the target: tools/call, resources/read,
    /// prompts/get).
    #[arg(long, value_name = "METHOD")]
    pub method: Option<String>,
}

/// Settings shared by `serve` and `check-config`. Each has an `MCPGATE_*` variable and a
/// configuration-file key; see docs/configuration.md.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Configuration file (default: ./mcpgate.toml if present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to bind [env: MCPGATE_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The URL clients use; the protected resource is <public-url>/mcp [env: MCPGATE_PUBLIC_URL].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Upstream Streamable HTTP endpoint [env: MCPGATE_UPSTREAM_URL].
    #[arg(long, value_name = "URL")]
    pub upstream_url: Option<String>,
    /// Upstream stdio command line, run without a shell (e.g. "npx -y @modelcontextprotocol/server-everything") [env: MCPGATE_UPSTREAM_CMD].
    #[arg(long, value_name = "COMMAND")]
    pub upstream_cmd: Option<String>,
    /// none | passthrough | static | jwt | introspection | issuer [env: MCPGATE_AUTH_MODE] [default: jwt].
    #[arg(long = "auth", value_name = "MODE")]
    pub auth_mode: Option<String>,
    /// Authorization server issuer: advertised and checked as `iss` [env: MCPGATE_AUTH_ISSUER_URL].
    #[arg(long, value_name = "URL")]
    pub issuer_url: Option<String>,
    /// JWKS location for `jwt` mode; default: discovered from the issuer's metadata [env: MCPGATE_AUTH_JWKS_URI].
    #[arg(long, value_name = "URL")]
    pub jwks_uri: Option<String>,
    /// PEM file with a static verification key for `jwt` mode [env: MCPGATE_AUTH_JWT_PUBLIC_KEY].
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key: Option<String>,
    /// Accepted `aud` (comma-separated); default the resource URL [env: MCPGATE_AUTH_AUDIENCE].
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,
    /// Comma-separated scopes every request needs [env: MCPGATE_AUTH_REQUIRED_SCOPES].
    #[arg(long, value_name = "SCOPES")]
    pub required_scopes: Option<String>,
    /// RFC 7662 endpoint for `introspection` mode [env: MCPGATE_AUTH_INTROSPECTION_URL].
    #[arg(long, value_name = "URL")]
    pub introspection_url: Option<String>,
    /// Where the embedded store and keys live [env: MCPGATE_DATA_DIR].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Allow development-only settings (static tokens); loud warning [env: MCPGATE_DEV].
    #[arg(long)]
    pub dev: bool,
    /// `issuer` mode, with --dev on loopback: sign a fixed user in and approve every request [env: MCPGATE_DEV_AUTO_APPROVE].
    #[arg(long)]
    pub dev_auto_approve: bool,
    /// With --dev on loopback: fetch client metadata documents from loopback over http [env: MCPGATE_DEV_ALLOW_LOOPBACK_FETCH].
    #[arg(long)]
    pub dev_allow_loopback_fetch: bool,
}

impl ServeArgs {
    /// The flags that were given, as configuration keys.
    pub fn overrides(&self) -> Overrides {
        let mut out: Overrides = Vec::new();
        let mut put = |key: &'static str, value: &Option<String>| {
            if let Some(v) = value {
                out.push((key, Value::from(v.clone())));
            }
        };
        put("listen", &self.listen);
        put("public_url", &self.public_url);
        put("upstream.url", &self.upstream_url);
        put("upstream.command", &self.upstream_cmd);
        put("auth.mode", &self.auth_mode);
        put("auth.issuer_url", &self.issuer_url);
        put("auth.jwks_uri", &self.jwks_uri);
        put("auth.jwt_public_key", &self.jwt_public_key);
        put("auth.audience", &self.audience);
        put("auth.required_scopes", &self.required_scopes);
        put("auth.introspection_url", &self.introspection_url);
        put("data_dir", &self.data_dir);
        for (key, on) in [
            ("dev", self.dev),
            ("dev_auto_approve", self.dev_auto_approve),
            ("dev_allow_loopback_fetch", self.dev_allow_loopback_fetch),
        ] {
            if on {
                out.push((key, Value::from(true)));
            }
        }
        out
    }
}

/// `quickstart` options.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The URL clients use (default: http://<listen>).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<url::Url>,
    /// Where clients, users, grants and keys are kept.
    #[arg(long, value_name = "DIR", default_value = "./mcpgate-data")]
    pub data_dir: PathBuf,
    /// Sign the quickstart user in and approve every request at once (scripts, CI).
    #[arg(long)]
    pub dev_auto_approve: bool,
}
