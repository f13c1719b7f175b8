//! Load on `/token` over real HTTP on 127.0.0.1, SQLite in a temporary directory: refresh
//! grants (each rotates a token atomically in the store and signs an access token), code
//! exchanges (each spends a code, reads its grant, stores a refresh token and signs) and
//! `client_credentials` grants (authentication, one grant row, signing), side by side. The
//! codes are stored beforehand, as `/authorize` would after consent, so that what is measured
//! is the token endpoint alone.
//!
//! `cargo bench -p mcpgate-issuer --bench token_load` (`TOKEN_LOAD_SECONDS`, default 5;
//! `TOKEN_LOAD_CONNECTIONS`, default 16).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mcpgate_guard::{ClientId, ResourceUrl, Scopes, Subject};
use mcpgate_issuer::issuer::{Issuer, Settings};
use mcpgate_issuer::scopes::Catalogue;
use mcpgate_issuer::secret::{TokenHash, generate_token};
use mcpgate_issuer::store::sqlite::SqliteStore;
use mcpgate_issuer::store::{AuthorizationCode, Grant, GrantId, RefreshToken};
use mcpgate_issuer::token::authorization_code::code_hash;

use serde_json::{Value, json};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let seconds: u64 = std::env::var("TOKEN_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let connections: usize = std::env::var("TOKEN_LOAD_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = Settings::new(&base, &format!("{base}/mcp")).unwrap();
    settings.scopes = Catalogue::new([("mcp", "Use it")], ["mcp"]).unwrap();
    let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
    let issuer = Issuer::start(settings, store.clone()).await.unwrap();
    let app = issuer.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    let public: Value = http
        .post(format!("{base}/register"))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none", "client_name": "load"}))
        .send().await.unwrap().json().await.unwrap();
    let public_id = public["client_id"].as_str().unwrap().to_owned();
    // A machine client is admitted by the operator (registrations cannot take the grant).
    let machine_id = "load-machine".to_owned();
    let machine_secret = "load-machine-secret-of-at-least-32-chars".to_owned();
    let machine = mcpgate_issuer::clients::configured::StaticClient::new(
        &machine_id,
        None,
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "client_name": "load"})
            .as_object()
            .unwrap()
            .clone(),
        Some(&machine_secret),
        &mcpgate_issuer::clients::redirect_uri::AllowList::default(),
    )
    .unwrap();
    issuer
        .store
        .insert_client(&machine.record(false, SystemTime::now()))
        .await
        .unwrap();

    // One grant and one refresh token per connection; each connection keeps rotating its own.
    let mut starts = Vec::new();
    for _ in 0..connections {
        let grant = alices_grant(&issuer, &public_id, &base).await;
        let now = SystemTime::now();
        let token = generate_token();
        issuer
            .store
            .insert_refresh_token(&RefreshToken {
                token_hash: TokenHash::of(&token),
                grant_id: grant,
                client_id: ClientId::new(&public_id),
                issued_at: now,
                expires_at: now + Duration::from_secs(3600),
            })
            .await
            .unwrap();
        starts.push(token);
    }

    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let duration = Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for mut token in starts {
        let (http, base, id, done) = (
            http.clone(),
            base.clone(),
            public_id.clone(),
            Arc::clone(&done),
        );
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < duration {
                let r: Value = http
                    .post(format!("{base}/token"))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("client_id", &id),
                        ("refresh_token", &token),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                token = r["refresh_token"].as_str().expect("rotated").to_owned();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let refreshes = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    // Code exchanges: codes stored beforehand (more than can be spent in the time), each
    // connection spending its own.
    const REDIRECT: &str = "http://127.0.0.1:5000/cb";
    // RFC 7636 appendix B's verifier and its S256 challenge.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let per_connection: usize = std::env::var("TOKEN_LOAD_CODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000);
    let code_grant = alices_grant(&issuer, &public_id, &base).await;
    let now = SystemTime::now();
    let mut code_sets = Vec::new();
    for _ in 0..connections {
        let mut codes = Vec::with_capacity(per_connection);
        for _ in 0..per_connection {
            let code = generate_token();
            issuer
                .store
                .insert_code(&AuthorizationCode {
                    code_hash: code_hash(&public_id, REDIRECT, &code),
                    client_id: ClientId::new(&public_id),
                    redirect_uri: REDIRECT.into(),
                    code_challenge: CHALLENGE.into(),
                    resource: Some(ResourceUrl::parse(&format!("{base}/mcp")).unwrap()),
                    scopes: Scopes::from_space_delimited("mcp"),
                    subject: Subject::new("alice"),
                    grant_id: code_grant.clone(),
                    expires_at: now + Duration::from_secs(3600),
                })
                .await
                .unwrap();
            codes.push(code);
        }
        code_sets.push(codes);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for codes in code_sets {
        let (http, base, id, done) = (
            http.clone(),
            base.clone(),
            public_id.clone(),
            Arc::clone(&done),
        );
        tasks.push(tokio::spawn(async move {
            for code in codes {
                if started.elapsed() >= duration {
                    return;
                }
                let r = http
                    .post(format!("{base}/token"))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("client_id", &id),
                        ("code", &code),
                        ("code_verifier", VERIFIER),
                        ("redirect_uri", REDIRECT),
                    ])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                done.fetch_add(1, Ordering::Relaxed);
            }
            eprintln!("a connection spent all its codes: raise TOKEN_LOAD_CODES");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let exchanges = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let credentials = load_simple(Duration::from_secs(seconds), connections, {
        let (http, base) = (http.clone(), base.clone());
        move || {
            let (http, base, id, secret) = (
                http.clone(),
                base.clone(),
                machine_id.clone(),
                machine_secret.clone(),
            );
            async move {
                let r = http
                    .post(format!("{base}/token"))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", &id),
                        ("client_secret", &secret),
                        ("resource", &format!("{base}/mcp")),
                    ])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }
    })
    .await;
    println!("token endpoint, {connections} connections, {seconds} s each, SQLite (WAL):");
    println!("  refresh_token grant     {refreshes:>8.0} /s");
    println!("  authorization_code      {exchanges:>8.0} /s");
    println!("  client_credentials      {credentials:>8.0} /s");
    println!(
        "  refresh / client_credentials = {:.2}",
        refreshes / credentials
    );
}

/// A new grant of scope `mcp` on `{base}/mcp`, from alice to `client`.
async fn alices_grant(issuer: &Issuer, client: &str, base: &str) -> GrantId {
    let id = GrantId::generate();
    issuer
        .store
        .create_grant(&Grant {
            id: id.clone(),
            subject: Subject::new("alice"),
            client_id: ClientId::new(client),
            scopes: Scopes::from_space_delimited("mcp"),
            resource: Some(ResourceUrl::parse(&format!("{base}/mcp")).unwrap()),
            created_at: SystemTime::now(),
            revoked_at: None,
        })
        .await
        .unwrap();
    id
}

async fn load_simple<F, Fut>(duration: Duration, connections: usize, make: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (done, make) = (Arc::clone(&done), make.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < duration {
                make().await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
