//! `[issuer]`: the built-in authorization server of `--auth issuer` mode. Built into
//! [`IssuerPlan`]: the issuer's settings, typed, with the gateway's public URL as the issuer
//! identifier and `<public_url>/mcp` as the resource its tokens are for.

use std::collections::BTreeMap;
use std::time::Duration;

use mcpgate_issuer::clients::configured::StaticClient;
use mcpgate_issuer::clients::redirect_uri::AllowList;
use mcpgate_issuer::issuer::Settings;
use mcpgate_issuer::scopes::Catalogue;
use mcpgate_issuer::store::SigningAlgorithm;
use serde::{Deserialize, Serialize};

use super::settings::{Setting, s, secret};
use super::values::{self, Secret};
use super::{AuthMode, Config, Problems};

/// The built-in authorization server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationServerConfig {
    /// Anyone may register a client at `/register` (RFC 7591).
    pub open_registration: bool,
    /// Redirect URI patterns every client must match (empty: any well-formed one).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub redirect_uris: Vec<String>,
    /// Scope → what it lets a client do (shown on the consent page).
    pub scopes: BTreeMap<String, String>,
    /// Life of an access token.
    #[serde(with = "values::duration")]
    pub access_token_ttl: Duration,
    /// Life of a refresh token.
    #[serde(with = "values::duration")]
    pub refresh_token_ttl: Duration,
    /// How long a just-rotated refresh token is still answered for its client.
    #[serde(with = "values::duration")]
    pub refresh_grace: Duration,
    /// Life of an authorization code.
    #[serde(with = "values::duration")]
    pub code_ttl: Duration,
    /// Registrations unused for this long are removed.
    #[serde(with = "values::duration")]
    pub unused_client_ttl: Duration,
    /// `iss` in authorization responses (RFC 9207).
    pub iss_parameter: bool,
    /// `ES256` or `EdDSA`.
    pub signing_algorithm: String,
    /// 32-byte key, base64, that seals signing keys at rest.
    pub key_encryption_key: Option<Secret>,
    /// Clients the operator admits by name (`[[issuer.clients]]`).
    pub clients: Vec<ClientConfig>,
    /// Local users for the sign-in page (`[[issuer.users]]`).
    pub users: Vec<UserConfig>,
}

/// One `[[issuer.users]]` entry: a local user who signs in with a password, given as its
/// argon2id hash (`mcpgate users hash --password-stdin` prints one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// The login name.
    pub name: String,
    /// The argon2id hash of the password; `${VAR}` reads the environment.
    pub password_hash: Option<Secret>,
    /// Declared but not allowed to sign in (their grants are revoked).
    pub disabled: bool,
}

/// One `[[issuer.clients]]` entry: a preset, or metadata of its own, or a preset with
/// changes. Members are those of RFC 7591 client metadata.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Its `client_id`, which the client is configured with.
    pub client_id: String,
    /// A known client to start from (`claude`, `claude-code`, `chatgpt`, `cursor`, `vscode`).
    pub preset: Option<String>,
    /// Its secret, for `client_secret_basic` / `client_secret_post`; `${VAR}` reads the
    /// environment.
    pub client_secret: Option<Secret>,
    /// Shown on the consent page.
    pub client_name: Option<String>,
    /// Its callbacks (added to a preset's).
    pub redirect_uris: Option<Vec<String>>,
    /// `none`, `client_secret_basic`, `client_secret_post` or `private_key_jwt`.
    pub token_endpoint_auth_method: Option<String>,
    /// `authorization_code`, `refresh_token`, `client_credentials`.
    pub grant_types: Option<Vec<String>>,
    /// `native` or `web`.
    pub application_type: Option<String>,
    /// Its keys, for `private_key_jwt`.
    pub jwks_uri: Option<String>,
    /// Its home page.
    pub client_uri: Option<String>,
}

impl ClientConfig {
    fn members(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let mut put = |key: &str, value: Option<serde_json::Value>| {
            if let Some(v) = value {
                m.insert(key.into(), v);
            }
        };
        put("client_name", self.client_name.clone().map(Into::into));
        put("redirect_uris", self.redirect_uris.clone().map(Into::into));
        put(
            "token_endpoint_auth_method",
            self.token_endpoint_auth_method.clone().map(Into::into),
        );
        put("grant_types", self.grant_types.clone().map(Into::into));
        put(
            "application_type",
            self.application_type.clone().map(Into::into),
        );
        put("jwks_uri", self.jwks_uri.clone().map(Into::into));
        put("client_uri", self.client_uri.clone().map(Into::into));
        m
    }
}

impl Default for AuthorizationServerConfig {
    fn default() -> Self {
        AuthorizationServerConfig {
            open_registration: true,
            redirect_uris: Vec::new(),
            scopes: BTreeMap::new(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_grace: Duration::from_secs(30),
            code_ttl: Duration::from_secs(60),
            unused_client_ttl: Duration::from_secs(30 * 24 * 3600),
            iss_parameter: true,
            signing_algorithm: "ES256".into(),
            key_encryption_key: None,
            clients: Vec::new(),
            users: Vec::new(),
        }
    }
}

/// This section's settings.
pub(super) const SETTINGS: &[Setting] = &[
    s(
        "issuer.open_registration",
        None,
        "bool",
        "`issuer` mode: anyone may register a client at `/register` (RFC 7591). Off: only clients with a metadata document (https `client_id`) or configured ones; `registration_endpoint` is then not advertised.",
    ),
    s(
        "issuer.redirect_uris",
        None,
        "list",
        "`issuer` mode: redirect URI patterns (globs: in the host a `*` stands for one label, as in `https://*.example.com/cb`, or a port; in the path and query it also crosses `/`) that every client's redirect URIs must match, at registration and at `/authorize`, e.g. `https://chatgpt.com/connector/oauth/*, http://127.0.0.1:*/callback`. Empty: any https, loopback or private-use redirect URI.",
    ),
    s(
        "issuer.scopes",
        None,
        "table",
        "`issuer` mode: the scopes clients may ask for, each with what it lets a client do (shown on the consent page), as a table of scope name and description, for example `mcp` with \"Use the tools of this server\". Default: `auth.required_scopes` and `auth.scopes_supported`, described by name.",
    ),
    s(
        "issuer.access_token_ttl",
        None,
        "duration",
        "`issuer` mode: life of an access token (a JWT the gateway verifies in process).",
    ),
    s(
        "issuer.refresh_token_ttl",
        None,
        "duration",
        "`issuer` mode: life of a refresh token; each use rotates it and starts a new one.",
    ),
    s(
        "issuer.refresh_grace",
        None,
        "duration",
        "`issuer` mode: for this long after a rotation the same client may present the previous refresh token and still be answered (two refreshes racing); outside it, reuse revokes the whole grant. At most `5m`; `0s`: never.",
    ),
    s(
        "issuer.code_ttl",
        None,
        "duration",
        "`issuer` mode: life of an authorization code (single use).",
    ),
    s(
        "issuer.unused_client_ttl",
        None,
        "duration",
        "`issuer` mode: dynamically registered clients that obtained no token for this long are removed (they register again).",
    ),
    s(
        "issuer.iss_parameter",
        None,
        "bool",
        "`issuer` mode: `iss` in every authorization response, errors included (RFC 9207). Turn off only for a client known to break on it.",
    ),
    s(
        "issuer.signing_algorithm",
        None,
        "`ES256`, `EdDSA`",
        "`issuer` mode: the algorithm of new signing keys (keys already made keep theirs).",
    ),
    s(
        "issuer.clients",
        None,
        "array of tables",
        "`issuer` mode: clients admitted by name, kept in the store at every start (one removed here is removed there, its grants revoked; one changed here keeps its users signed in). Each `[[issuer.clients]]` has a `client_id` and either a `preset` (`claude`, `claude-code`, `chatgpt`, `cursor`, `vscode`: their fixed callbacks) or its own RFC 7591 members: `client_name`, `redirect_uris` (added to a preset's), `token_endpoint_auth_method`, `grant_types`, `application_type`, `jwks_uri`, `client_uri`; `client_secret` (at least 32 characters, `${VAR}` reads the environment) for the secret methods. E.g. `[[issuer.clients]]` `client_id = \"chatgpt\"`, `preset = \"chatgpt\"`, `redirect_uris = [\"https://chatgpt.com/connector/oauth/abc123\"]`, `client_secret = \"${CHATGPT_CLIENT_SECRET}\"`.",
    ),
    s(
        "issuer.users",
        None,
        "array of tables",
        "`issuer` mode: local users for the sign-in page, kept in the store at every start beside those `mcpgate users add` made (one removed here is disabled and their grants revoked; a new hash applies at once). Each `[[issuer.users]]` has a `name`, a `password_hash` (argon2id, from `mcpgate users hash --password-stdin`; `${VAR}` reads the environment) and optionally `disabled = true`. E.g. `[[issuer.users]]` `name = \"alice\"`, `password_hash = \"${ALICE_PASSWORD_HASH}\"`.",
    ),
    secret(
        "issuer.key_encryption_key",
        "string",
        "`issuer` mode: 32-byte key, base64 (`openssl rand -base64 32`), that seals signing keys at rest in the data directory. Unset: keys are stored unencrypted (a warning says so). Give it through the environment, not the data directory.",
    ),
];

/// The built-in issuer, built.
#[derive(Debug)]
pub struct IssuerPlan {
    /// Its settings.
    pub settings: Settings,
}

pub(super) fn build(config: &Config, p: &mut Problems) -> Option<Option<IssuerPlan>> {
    if config.auth.mode != AuthMode::Issuer {
        if config.dev_auto_approve {
            p.push("dev_auto_approve", "applies to `issuer` mode only");
        }
        return Some(None);
    }
    let before = p.len();
    let section = &config.issuer;
    for (key, value) in [
        ("issuer.access_token_ttl", section.access_token_ttl),
        ("issuer.refresh_token_ttl", section.refresh_token_ttl),
        ("issuer.code_ttl", section.code_ttl),
        ("issuer.unused_client_ttl", section.unused_client_ttl),
    ] {
        p.positive_duration(key, value);
    }
    if section.access_token_ttl > Duration::from_secs(24 * 3600) {
        p.push(
            "issuer.access_token_ttl",
            "must be at most a day (use refresh tokens)",
        );
    }
    if section.refresh_grace > Duration::from_secs(300) {
        p.push(
            "issuer.refresh_grace",
            "must be at most 5 minutes (a longer window lets a stolen refresh token be used without detection)",
        );
    }
    if section.code_ttl > Duration::from_secs(600) {
        p.push(
            "issuer.code_ttl",
            "must be at most 10 minutes (RFC 6749 §4.1.2)",
        );
    }
    let algorithm = match section.signing_algorithm.as_str() {
        "ES256" => Some(SigningAlgorithm::Es256),
        "EdDSA" => Some(SigningAlgorithm::EdDsa),
        other => {
            p.push(
                "issuer.signing_algorithm",
                format!("`{other}` is neither ES256 nor EdDSA"),
            );
            None
        }
    };
    let encryption_key = match &section.key_encryption_key {
        Some(key) => match super::session::decode_key(key.expose()) {
            Ok(k) => Some(k),
            Err(problem) => {
                p.push("issuer.key_encryption_key", problem);
                None
            }
        },
        None => None,
    };
    let redirect_uris = AllowList::new(&section.redirect_uris)
        .map_err(|e| p.push("issuer.redirect_uris", e))
        .ok();
    let mut clients = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in section.clients.iter().enumerate() {
        let key = format!("issuer.clients[{i}]");
        if !seen.insert(c.client_id.as_str()) {
            p.push(
                &key,
                format!("client_id `{}` is configured twice", c.client_id),
            );
            continue;
        }
        let secret = match c
            .client_secret
            .as_ref()
            .map(|s| super::interpolate(s.expose()))
        {
            Some(Err(problem)) => {
                p.push(&format!("{key}.client_secret"), problem);
                continue;
            }
            Some(Ok(s)) => Some(s),
            None => None,
        };
        let allow = redirect_uris.clone().unwrap_or_default();
        match StaticClient::new(
            &c.client_id,
            c.preset.as_deref(),
            c.members(),
            secret.as_deref(),
            &allow,
        ) {
            Ok(client) => clients.push(client),
            Err(problem) => p.push(&key, format!("client `{}`: {problem}", c.client_id)),
        }
    }
    let mut users = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, u) in section.users.iter().enumerate() {
        let key = format!("issuer.users[{i}]");
        if !names.insert(u.name.as_str()) {
            p.push(&key, format!("user `{}` is declared twice", u.name));
            continue;
        }
        let hash = match u
            .password_hash
            .as_ref()
            .map(|h| super::interpolate(h.expose()))
        {
            None => {
                p.push(
                    &format!("{key}.password_hash"),
                    "missing: make one with `mcpgate users hash --password-stdin`",
                );
                continue;
            }
            Some(Err(problem)) => {
                p.push(&format!("{key}.password_hash"), problem);
                continue;
            }
            Some(Ok(h)) => h,
        };
        match mcpgate_issuer::users::ConfiguredUser::new(&u.name, hash.trim(), u.disabled) {
            Ok(user) => users.push(user),
            Err(problem) => p.push(&key, format!("user `{}`: {problem}", u.name)),
        }
    }
    let entries: Vec<(String, String)> = if section.scopes.is_empty() {
        config
            .auth
            .required_scopes
            .iter()
            .chain(config.auth.scopes_supported.iter().flatten())
            .fold(Vec::new(), |mut all, s| {
                if !all.iter().any(|(n, _)| n == s) {
                    all.push((s.clone(), format!("Use this server with the `{s}` scope")));
                }
                all
            })
    } else {
        section
            .scopes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let scopes = Catalogue::new(
        entries.iter().map(|(n, d)| (n.as_str(), d.as_str())),
        config.auth.required_scopes.iter().map(String::as_str),
    )
    .map_err(|e| p.push("issuer.scopes", e))
    .ok();
    // Loopback both ways: a listener on loopback can still be published by a reverse proxy.
    let local = config.dev
        && config.listen.ip().is_loopback()
        && config
            .public_url()
            .host_str()
            .is_some_and(crate::dns_rebinding::is_loopback_name);
    if config.dev_auto_approve && !local {
        p.push(
            "dev_auto_approve",
            "needs --dev, a loopback listener and a loopback public_url: it signs a fixed user in and approves every request",
        );
    }
    if config.dev_allow_loopback_fetch && !local {
        p.push(
            "dev_allow_loopback_fetch",
            "needs --dev, a loopback listener and a loopback public_url",
        );
    }
    let public = config.public_url();
    let issuer = public.as_str().trim_end_matches('/').to_owned();
    let resource = format!("{issuer}/mcp");
    let settings = match Settings::new(&issuer, &resource) {
        Ok(s) => Some(s),
        Err(e) => {
            p.push("public_url", format!("as the issuer identifier: {e}"));
            None
        }
    };
    if p.len() > before {
        return None;
    }
    let mut settings = settings?;
    settings.scopes = scopes?;
    settings.redirect_uris = redirect_uris?;
    settings.open_registration = section.open_registration;
    settings.unused_client_ttl = section.unused_client_ttl;
    settings.access_token_ttl = section.access_token_ttl;
    settings.refresh_token_ttl = section.refresh_token_ttl;
    settings.refresh_grace = section.refresh_grace;
    settings.code_ttl = section.code_ttl;
    settings.iss_parameter = section.iss_parameter;
    settings.auto_approve = config.dev_auto_approve.then(|| "dev-user".to_owned());
    settings.allow_loopback_fetch = config.dev_allow_loopback_fetch;
    settings.keys.algorithm = algorithm?;
    settings.keys.encryption_key = encryption_key;
    settings.clients = clients;
    settings.users = users;
    Some(Some(IssuerPlan { settings }))
}
