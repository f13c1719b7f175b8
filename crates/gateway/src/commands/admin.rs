//! The admin commands of `issuer` mode, working on the store in `--data-dir` (the gateway may
//! be running: SQLite in WAL mode lets both in, and a revocation made here reaches the running
//! gateway within a second).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mcpgate_guard::{ClientId, Subject};
use mcpgate_issuer::clients::configured::{self, StaticClient};
use mcpgate_issuer::keys::{SigningKeys, SigningKeysOptions};
use mcpgate_issuer::store::sqlite::SqliteStore;
use mcpgate_issuer::store::{GrantFilter, Store, UserName, UserStore as _};

use crate::cli::{ClientsCommand, GrantsCommand, KeysCommand, UsersCommand};

async fn open(dir: &Path) -> Result<Arc<dyn Store>, ExitCode> {
    if !dir.join("mcpgate.db").is_file() {
        eprintln!(
            "mcpgate: no store in `{}` (start `mcpgate serve --auth issuer --data-dir {}` once, or pass --data-dir)",
            dir.display(),
            dir.display()
        );
        return Err(ExitCode::from(2));
    }
    SqliteStore::open(dir)
        .await
        .map(|s| Arc::new(s) as Arc<dyn Store>)
        .map_err(|e| {
            eprintln!("mcpgate: cannot open the store in `{}`: {e}", dir.display());
            ExitCode::FAILURE
        })
}

fn when(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("mcpgate: {e}");
    ExitCode::FAILURE
}

/// `mcpgate clients …`.
pub async fn clients(command: ClientsCommand, dir: PathBuf) -> ExitCode {
    let store = match open(&dir).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    match command {
        ClientsCommand::Add {
            client_id,
            preset,
            name,
            redirect_uris,
            auth_method,
            grant_types,
            jwks_uri,
        } => {
            let Some(id) = client_id.or_else(|| preset.clone()) else {
                eprintln!("mcpgate: give --client-id (or --preset, whose name is then the id)");
                return ExitCode::from(2);
            };
            let mut members = serde_json::Map::new();
            if let Some(n) = name {
                members.insert("client_name".into(), n.into());
            }
            if !redirect_uris.is_empty() {
                members.insert("redirect_uris".into(), redirect_uris.into());
            }
            if let Some(m) = auth_method {
                members.insert("token_endpoint_auth_method".into(), m.into());
            }
            if !grant_types.is_empty() {
                members.insert("grant_types".into(), grant_types.into());
            }
            if let Some(u) = jwks_uri {
                members.insert("jwks_uri".into(), u.into());
            }
            // A secret is made here when the client needs one, and shown once.
            let allow = mcpgate_issuer::clients::redirect_uri::AllowList::default();
            let check = |secret: Option<&str>| {
                StaticClient::new(&id, preset.as_deref(), members.clone(), secret, &allow)
            };
            let (client, secret) = match check(None) {
                Ok(c) => (c, None),
                Err(e) if e.contains("has no secret") => {
                    let secret = mcpgate_issuer::secret::generate_token();
                    match check(Some(&secret)) {
                        Ok(c) => (c, Some(secret)),
                        Err(e) => {
                            eprintln!("mcpgate: client `{id}`: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
                Err(e) => {
                    eprintln!("mcpgate: client `{id}`: {e}");
                    return ExitCode::from(2);
                }
            };
            match configured::not_a_user(&*store, &client.id).await {
                Ok(()) => {}
                Err(configured::ReconcileError::Store(e)) => return failed(e),
                Err(e) => {
                    eprintln!("mcpgate: {e}");
                    return ExitCode::from(2);
                }
            }
            match store
                .insert_client(&client.record(false, SystemTime::now()))
                .await
            {
                Ok(()) => {
                    println!("client_id: {id}");
                    if let Some(secret) = secret {
                        println!("client_secret: {secret}");
                        println!("(shown once: it is stored hashed)");
                    }
                    ExitCode::SUCCESS
                }
                Err(mcpgate_issuer::store::StoreError::AlreadyExists { .. }) => {
                    eprintln!(
                        "mcpgate: client `{id}` exists already (`mcpgate clients remove {id}` first, or pick another --client-id)"
                    );
                    ExitCode::from(2)
                }
                Err(e) => failed(e),
            }
        }
        ClientsCommand::List => match store.list_clients().await {
            Ok(clients) => {
                for c in clients {
                    let name = c.metadata["client_name"].as_str().unwrap_or("");
                    let redirects = c.metadata["redirect_uris"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    let kind = if configured::is_configured(&c) {
                        "static (configuration)"
                    } else {
                        c.kind.as_str()
                    };
                    println!(
                        "{}\t{}\t{}\tregistered {}\tlast used {}\t{}",
                        c.client_id,
                        kind,
                        name,
                        when(c.created_at),
                        c.last_used_at.map(when).unwrap_or_else(|| "never".into()),
                        redirects
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => failed(e),
        },
        ClientsCommand::Remove { client_id } => {
            if let Ok(Some(record)) = store.get_client(&ClientId::new(&client_id)).await
                && configured::is_configured(&record)
            {
                eprintln!(
                    "mcpgate: client `{client_id}` comes from issuer.clients in the configuration: remove it there (it is removed from the store at the next start)"
                );
                return ExitCode::from(2);
            }
            match store
                .delete_client(&ClientId::new(&client_id), SystemTime::now())
                .await
            {
                Ok(true) => {
                    println!("removed {client_id}; its grants are revoked");
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    eprintln!("mcpgate: no client `{client_id}`");
                    ExitCode::from(2)
                }
                Err(e) => failed(e),
            }
        }
    }
}

/// `mcpgate grants …`.
pub async fn grants(command: GrantsCommand, dir: PathBuf) -> ExitCode {
    let store = match open(&dir).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    match command {
        GrantsCommand::List { subject, client } => {
            let filter = GrantFilter {
                subject: subject.map(Subject::new),
                client_id: client.map(ClientId::new),
                include_revoked: false,
            };
            match store.list_grants(&filter).await {
                Ok(grants) => {
                    for g in grants {
                        println!(
                            "{}\t{}\t{}\t{}\tgiven {}",
                            g.id,
                            g.subject,
                            g.client_id,
                            g.scopes.to_space_delimited(),
                            when(g.created_at)
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
        GrantsCommand::Revoke { subject, client } => {
            let client = client.map(ClientId::new);
            match store
                .revoke_grants(&Subject::new(&subject), client.as_ref(), SystemTime::now())
                .await
            {
                Ok(ids) => {
                    println!(
                        "revoked {} grant(s); the running gateway refuses their tokens within a second",
                        ids.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
    }
}

/// `mcpgate keys …`.
pub async fn keys(command: KeysCommand, dir: PathBuf) -> ExitCode {
    let store = match open(&dir).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut options = SigningKeysOptions::default();
    if let Ok(key) = std::env::var("MCPGATE_ISSUER_KEY_ENCRYPTION_KEY") {
        match crate::config::decode_key(&key) {
            Ok(k) => options.encryption_key = Some(k),
            Err(problem) => {
                eprintln!("mcpgate: MCPGATE_ISSUER_KEY_ENCRYPTION_KEY {problem}");
                return ExitCode::from(2);
            }
        }
    }
    let keys = match SigningKeys::load(store.clone(), options).await {
        Ok(k) => k,
        Err(e) => return failed(e),
    };
    match command {
        KeysCommand::List => match store.list_signing_keys().await {
            Ok(list) => {
                for k in list {
                    println!(
                        "{}\t{:?}\t{:?}\tmade {}{}",
                        k.kid,
                        k.algorithm,
                        k.state,
                        when(k.created_at),
                        k.retired_at
                            .map(|t| format!("\tuntil {}", when(t)))
                            .unwrap_or_default()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => failed(e),
        },
        KeysCommand::Rotate => match keys.rotate().await {
            Ok(kid) => {
                println!(
                    "new signing key {kid}; the previous one keeps verifying until its tokens expire"
                );
                ExitCode::SUCCESS
            }
            Err(e) => failed(e),
        },
    }
}

/// Shortest password accepted for a local user.
pub const MIN_PASSWORD: usize = 8;

/// Adds local user `name` with `password` to the store in `dir` (made if it does not exist).
pub async fn add_user(dir: &Path, name: &str, password: &str) -> Result<(), String> {
    mcpgate_issuer::users::check_name(name)?;
    let hash = hash(password)?;
    let store = SqliteStore::open(dir)
        .await
        .map_err(|e| format!("cannot open the store in `{}`: {e}", dir.display()))?;
    mcpgate_issuer::users::not_a_client(&store, &UserName::new(name))
        .await
        .map_err(|e| e.to_string())?;
    store
        .add_user(&mcpgate_issuer::store::User {
            name: UserName::new(name),
            password_hash: hash,
            created_at: SystemTime::now(),
            disabled_at: None,
            configured: false,
        })
        .await
        .map_err(|e| e.to_string())
}

/// The argon2id hash of a new password of at least [`MIN_PASSWORD`] characters.
fn hash(password: &str) -> Result<mcpgate_issuer::store::PasswordHash, String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(format!(
            "the password must be at least {MIN_PASSWORD} characters"
        ));
    }
    mcpgate_issuer::sign_in::hash_password(password).map_err(|e| e.to_string())
}

/// `mcpgate users …`.
pub async fn users(command: UsersCommand, dir: PathBuf) -> ExitCode {
    if let UsersCommand::Add { .. } | UsersCommand::Hash { .. } = &command {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().read_line(&mut line) {
            return failed(format!("cannot read the password from standard input: {e}"));
        }
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        let UsersCommand::Add { name, .. } = &command else {
            return match hash(password) {
                Ok(phc) => {
                    println!("{}", phc.as_str());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mcpgate: {e}");
                    ExitCode::from(2)
                }
            };
        };
        return match add_user(&dir, name, password).await {
            Ok(()) => {
                println!("added {name}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mcpgate: {e}");
                ExitCode::from(2)
            }
        };
    }
    let store = match open(&dir).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    match command {
        UsersCommand::List => match store.list_users().await {
            Ok(users) => {
                for u in users {
                    println!(
                        "{}\t{} {}{}",
                        u.name,
                        if u.configured { "configured" } else { "added" },
                        when(u.created_at),
                        u.disabled_at
                            .map(|t| format!("\tdisabled {}", when(t)))
                            .unwrap_or_default()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => failed(e),
        },
        UsersCommand::Disable { name } => {
            match store.get_user(&UserName::new(&name)).await {
                Ok(Some(u)) if u.configured => {
                    eprintln!(
                        "mcpgate: `{name}` is declared in the configuration: set `disabled = true` in its [[issuer.users]] entry, or remove it there"
                    );
                    return ExitCode::from(2);
                }
                Ok(_) => {}
                Err(e) => return failed(e),
            }
            match store
                .disable_user(&UserName::new(&name), SystemTime::now())
                .await
            {
                Ok(true) => {
                    println!(
                        "disabled {name}; their grants are revoked (the running gateway refuses their tokens within a second)"
                    );
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    eprintln!("mcpgate: no user `{name}`");
                    ExitCode::from(2)
                }
                Err(e) => failed(e),
            }
        }
        UsersCommand::Add { .. } | UsersCommand::Hash { .. } => unreachable!("handled above"),
    }
}
