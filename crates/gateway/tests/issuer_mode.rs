//! `--auth issuer`: the gateway is the authorization server. Real processes on 127.0.0.1:
//! discovery from the 401, registration, tokens the gateway verifies in process, restarts.

mod common;

use common::{Gateway, Generation, client, free_port};
use mcpgate_testkit::{Mode, TestUpstream};
use serde_json::{Value, json};

fn data_dir() -> tempdir::Dir {
    tempdir::Dir::new()
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "mcpgate-issuer-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
        pub fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The gateway in issuer mode, signing a development user in and approving at once
/// (`--dev --dev-auto-approve`), with `env`.
async fn auto_approving(
    upstream: &TestUpstream,
    dir: &tempdir::Dir,
    env: &[(&str, &str)],
) -> Gateway {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    Gateway::spawn(
        &[
            "serve",
            "--listen",
            &listen,
            "--auth",
            "issuer",
            "--upstream-url",
            &upstream.url,
            "--data-dir",
            dir.path(),
            "--required-scopes",
            "mcp",
            "--dev",
            "--dev-auto-approve",
        ],
        env,
        port,
    )
    .await
}

async fn gateway(upstream: &TestUpstream, dir: &tempdir::Dir, port: u16) -> Gateway {
    let listen = format!("127.0.0.1:{port}");
    Gateway::spawn(
        &[
            "serve",
            "--listen",
            &listen,
            "--auth",
            "issuer",
            "--upstream-url",
            &upstream.url,
            "--data-dir",
            dir.path(),
            "--required-scopes",
            "mcp",
        ],
        &[],
        port,
    )
    .await
}

async fn register(gw: &Gateway, metadata: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/register", gw.base))
        .json(&metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn client_credentials(gw: &Gateway, id: &str, secret: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/token", gw.base))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", &gw.mcp),
            ("scope", "mcp"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn as_02_as_03_the_challenge_leads_to_this_issuers_metadata() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = data_dir();
    let gw = gateway(&upstream, &dir, free_port()).await;
    let http = reqwest::Client::new();
    // The 401 names the resource metadata, which names this gateway as its issuer.
    let r = http.post(&gw.mcp).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    let prm: Value = http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            gw.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([gw.base]));
    assert!(
        !prm["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("offline_access")),
        "RS-09"
    );
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = http.get(format!("{}{path}", gw.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["issuer"], gw.base, "{path}");
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["token_endpoint"], format!("{}/token", gw.base));
        assert_eq!(
            doc["registration_endpoint"],
            format!("{}/register", gw.base)
        );
        assert!(
            doc["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("offline_access"))
        );
    }
    let jwks: Value = http
        .get(format!("{}/jwks.json", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["alg"], "ES256");
    assert!(key.get("d").is_none(), "no private part is published");
}

/// Admits a confidential machine client by name, as an operator does (`mcpgate clients add`,
/// on the data directory of the running gateway): `{"client_id", "client_secret"}`.
fn admit_machine(dir: &tempdir::Dir, name: &str, method: &str) -> Value {
    let id = format!("{}-{}", name.to_lowercase().replace(' ', "-"), free_port());
    let (code, out, err) = common::run(
        &[
            "clients",
            "add",
            "--client-id",
            &id,
            "--name",
            name,
            "--auth-method",
            method,
            "--grant-type",
            "client_credentials",
            "--data-dir",
            dir.path(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap();
    json!({"client_id": id, "client_secret": secret})
}

#[tokio::test]
async fn a_machine_client_gets_a_token_the_gateway_accepts_and_it_survives_a_restart() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = data_dir();
    let port = free_port();
    let gw = gateway(&upstream, &dir, port).await;
    // Open registration does not hand out tokens without a user: machine clients are admitted
    // by the operator.
    let r = reqwest::Client::new()
        .post(format!("{}/register", gw.base))
        .json(&json!({
            "client_name": "CI job",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client_metadata", "{body}");
    let registered = admit_machine(&dir, "CI job", "client_secret_basic");
    let id = registered["client_id"].as_str().unwrap().to_owned();
    let secret = registered["client_secret"].as_str().unwrap().to_owned();
    let r = client_credentials(&gw, &id, &secret).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let token: Value = r.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert!(token.get("refresh_token").is_none());
    let access = token["access_token"].as_str().unwrap().to_owned();
    let c = client(&gw.mcp, Some(&access), Generation::Legacy)
        .await
        .unwrap();
    assert!(!c.list_all_tools().await.unwrap().is_empty());
    let _ = c.cancel().await;
    // Neither the secret nor the token is logged.
    let log = gw.log();
    assert!(!log.contains(&secret) && !log.contains(&access), "{log}");

    // Restart on the same data directory: the client, and the key that signed the token,
    // are still there.
    drop(gw);
    let gw = gateway(&upstream, &dir, port).await;
    let c = client(&gw.mcp, Some(&access), Generation::Legacy)
        .await
        .unwrap();
    assert!(!c.list_all_tools().await.unwrap().is_empty());
    let _ = c.cancel().await;
    assert_eq!(client_credentials(&gw, &id, &secret).await.status(), 200);
}

#[tokio::test]
async fn wrong_secrets_unknown_clients_and_other_resources_are_refused() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = data_dir();
    let gw = gateway(&upstream, &dir, free_port()).await;
    let registered = admit_machine(&dir, "CI", "client_secret_post");
    let id = registered["client_id"].as_str().unwrap();
    let http = reqwest::Client::new();
    let wrong = client_credentials(&gw, id, "not-the-secret").await;
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let unknown = client_credentials(&gw, "mcp_no_such_client", "x").await;
    assert_eq!(unknown.status(), 401);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let other = http
        .post(format!("{}/token", gw.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            (
                "client_secret",
                registered["client_secret"].as_str().unwrap(),
            ),
            ("resource", "https://elsewhere.example/mcp"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
    assert_eq!(
        other.json::<Value>().await.unwrap()["error"],
        "invalid_target"
    );
    let repeated = http
        .post(format!("{}/token", gw.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=authorization_code")
        .send()
        .await
        .unwrap();
    assert_eq!(
        repeated.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    // A token signed by someone else is not accepted at /mcp.
    let forged = mcpgate_testkit::keys::TestKey::ec("k").sign(&json!({
        "iss": gw.base, "aud": gw.mcp, "sub": "mallory", "scope": "mcp",
        "exp": mcpgate_testkit::keys::now() + 600,
    }));
    let r = http
        .post(&gw.mcp)
        .bearer_auth(forged)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn bad_registrations_get_the_rfc_7591_errors_and_change_nothing() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = data_dir();
    let gw = gateway(&upstream, &dir, free_port()).await;
    let http = reqwest::Client::new();
    for (metadata, error) in [
        (
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": "https://a.example/cb"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]}),
            "invalid_client_metadata",
        ),
    ] {
        let r = http
            .post(format!("{}/register", gw.base))
            .json(&metadata)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{metadata}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            error,
            "{metadata}"
        );
    }
    let r = http
        .post(format!("{}/register", gw.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A good registration can be read back and deleted with its registration token.
    let ok = register(
        &gw,
        json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none", "client_name": "t"}),
    )
    .await;
    let uri = ok["registration_client_uri"].as_str().unwrap();
    let token = ok["registration_access_token"].as_str().unwrap();
    let read = http.get(uri).bearer_auth(token).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(
        http.get(uri)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.delete(uri)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        http.get(uri)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn issuer_mode_configuration_errors_name_the_key() {
    for (args, key) in [
        (
            vec!["--issuer-url", "https://elsewhere.example"],
            "auth.issuer_url",
        ),
        (
            vec!["--jwks-uri", "https://elsewhere.example/jwks"],
            "auth.jwks_uri",
        ),
        (vec!["--dev-auto-approve"], "dev_auto_approve"),
        // Loopback both ways: behind a reverse proxy the development switches would be public.
        (
            vec![
                "--dev",
                "--dev-auto-approve",
                "--public-url",
                "https://mcp.example.com",
            ],
            "dev_auto_approve",
        ),
        (
            vec![
                "--dev",
                "--dev-allow-loopback-fetch",
                "--public-url",
                "https://mcp.example.com",
            ],
            "dev_allow_loopback_fetch",
        ),
    ] {
        let mut full = vec![
            "check-config",
            "--auth",
            "issuer",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ];
        full.extend(args.iter());
        let (code, _, err) = common::run(&full, &[]);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(key), "{args:?}: {err}");
    }
    let (code, _, err) = common::run(
        &[
            "check-config",
            "--auth",
            "issuer",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[("MCPGATE_ISSUER_ACCESS_TOKEN_TTL", "0s")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("issuer.access_token_ttl"), "{err}");
    // A grace window longer than minutes would let a stolen refresh token go unnoticed.
    let (code, _, err) = common::run(
        &[
            "check-config",
            "--auth",
            "issuer",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[("MCPGATE_ISSUER_REFRESH_GRACE", "1h")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("issuer.refresh_grace"), "{err}");
}

#[tokio::test]
async fn the_admin_commands_work_on_the_data_directory_of_a_running_gateway() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = data_dir();
    let gw = gateway(&upstream, &dir, free_port()).await;
    let registered = admit_machine(&dir, "Nightly CI", "client_secret_basic");
    let id = registered["client_id"].as_str().unwrap();
    let d = ["--data-dir", dir.path()];
    let run = |args: &[&str]| {
        let mut full: Vec<&str> = args.to_vec();
        full.extend_from_slice(&d);
        common::run(&full, &[])
    };
    let (code, out, err) = run(&["clients", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(id) && out.contains("Nightly CI"), "{out}");
    let (code, out, _) = run(&["keys", "list"]);
    assert_eq!((code, out.lines().count()), (0, 1), "{out}");
    let (code, _, err) = run(&["keys", "rotate"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(&["keys", "list"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    // One namespace for subjects: no client named like a user, no user named like a client.
    let (code, _, err) = common::run_with_stdin(
        &[
            "users",
            "add",
            "alice",
            "--password-stdin",
            "--data-dir",
            dir.path(),
        ],
        &[],
        "a password of alice's\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[
        "clients",
        "add",
        "--client-id",
        "alice",
        "--name",
        "Impostor",
        "--auth-method",
        "client_secret_basic",
        "--grant-type",
        "client_credentials",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("user's name"), "{err}");
    let (code, _, err) = common::run_with_stdin(
        &[
            "users",
            "add",
            id,
            "--password-stdin",
            "--data-dir",
            dir.path(),
        ],
        &[],
        "a password of theirs\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("client's id"), "{err}");
    let (code, out, _) = run(&["grants", "revoke", "--subject", "nobody"]);
    assert_eq!(code, 0);
    assert!(out.contains("revoked 0"), "{out}");
    // Used a moment ago, removed from another process: refused at once all the same.
    let r = client_credentials(&gw, id, registered["client_secret"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let (code, _, _) = run(&["clients", "remove", id]);
    assert_eq!(code, 0);
    let r = client_credentials(&gw, id, registered["client_secret"].as_str().unwrap()).await;
    assert_eq!(r.status(), 401, "a removed client must register again");
    let (code, _, err) = common::run(
        &["clients", "list", "--data-dir", "/nonexistent/mcpgate"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("no store"), "{err}");
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// What a browser-based client does, with a browser that only follows redirects: register,
/// `/authorize` (auto-approved), the code at `/token`.
async fn sign_in(base: &str, mcp: &str) -> (String, Value) {
    let registered: Value = reqwest::Client::new()
        .post(format!("{base}/register"))
        .json(&json!({
            "client_name": "Test client",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_owned();
    let token = authorize(base, mcp, &client_id, "http://127.0.0.1:47123/callback").await;
    (client_id, token)
}

/// `/authorize` (auto-approved) for a known public client, then the code at `/token`.
async fn authorize(base: &str, mcp: &str, client_id: &str, redirect: &str) -> Value {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = url::Url::parse_with_params(
        &format!("{base}/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "st-1"),
            ("resource", mcp),
            ("scope", "mcp"),
        ],
    )
    .unwrap();
    let r = http.get(authorize).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(redirect), "{location}");
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], base, "AS-11");
    let token: Value = http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", &q["code"]),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
            ("resource", mcp),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(token["access_token"].is_string(), "{token}");
    token
}

#[tokio::test]
async fn a_user_signs_in_calls_tools_refreshes_and_a_revoked_grant_stops_within_seconds() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = data_dir();
    let gw = auto_approving(&upstream, &dir, &[]).await;
    let (client_id, token) = sign_in(&gw.base, &gw.mcp).await;
    let access = token["access_token"].as_str().unwrap();
    let c = client(&gw.mcp, Some(access), Generation::Legacy)
        .await
        .unwrap();
    assert!(!c.list_all_tools().await.unwrap().is_empty());
    let _ = c.cancel().await;
    // Refresh: a new access token that works too.
    let refreshed: Value = reqwest::Client::new()
        .post(format!("{}/token", gw.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", token["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access2 = refreshed["access_token"].as_str().unwrap().to_owned();
    let c = client(&gw.mcp, Some(&access2), Generation::Stateless)
        .await
        .unwrap();
    assert!(!c.list_all_tools().await.unwrap().is_empty());
    let _ = c.cancel().await;
    assert!(gw.log().contains("DEVELOPMENT MODE"));
    // The operator revokes the user's grants: the access token stops working within seconds,
    // long before it expires.
    let (code, out, err) = common::run(
        &[
            "grants",
            "revoke",
            "--subject",
            "dev-user",
            "--data-dir",
            dir.path(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked 1"), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = reqwest::Client::new()
            .post(&gw.mcp)
            .bearer_auth(&access2)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .unwrap();
        if r.status() == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted: {}",
            r.status()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let log = gw.log();
    assert!(
        !log.contains(access) && !log.contains(&access2),
        "no token in the log"
    );
}

#[tokio::test]
async fn the_quickstart_runs_real_oauth_and_keeps_its_user_across_restarts() {
    let dir = data_dir();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "quickstart",
        "--listen",
        &listen,
        "--data-dir",
        dir.path(),
        "--dev-auto-approve",
    ];
    let base = format!("http://127.0.0.1:{port}");
    let mcp = format!("{base}/mcp");
    {
        let _gw = Gateway::spawn(
            &args,
            &[("MCPGATE_QUICKSTART_PASSWORD", "correct horse battery")],
            port,
        )
        .await;
        let (_, token) = sign_in(&base, &mcp).await;
        let c = client(&mcp, token["access_token"].as_str(), Generation::Legacy)
            .await
            .unwrap();
        assert!(!c.list_all_tools().await.unwrap().is_empty());
        let _ = c.cancel().await;
    }
    let (code, out, _) = common::run(&["users", "list", "--data-dir", dir.path()], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("quickstart"), "{out}");
    // Restarted: same user, same keys; a new sign-in works.
    let _gw = Gateway::spawn(&args, &[], port).await;
    let (_, token) = sign_in(&base, &mcp).await;
    assert!(token["refresh_token"].is_string());
}

async fn refresh(base: &str, client_id: &str, refresh_token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn configured_and_added_clients_are_admitted_by_name_with_registration_closed() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = data_dir();
    let config = std::path::Path::new(dir.path()).join("mcpgate.toml");
    let secret = "s3cr3t-of-at-least-thirty-two-characters";
    let write_config = |vscode_name: &str, with_vscode: bool| {
        let vscode = if with_vscode {
            format!(
                "[[issuer.clients]]\nclient_id = \"vscode\"\npreset = \"vscode\"\nclient_name = \"{vscode_name}\"\n"
            )
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "[issuer]\nopen_registration = false\n\n{vscode}\n[[issuer.clients]]\nclient_id = \"chatgpt\"\npreset = \"chatgpt\"\nredirect_uris = [\"https://chatgpt.com/connector/oauth/abc123\"]\nclient_secret = \"${{TEST_CHATGPT_SECRET}}\"\n"
            ),
        )
        .unwrap();
    };
    write_config("Visual Studio Code", true);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &listen,
        "--auth",
        "issuer",
        "--upstream-url",
        &upstream.url,
        "--data-dir",
        dir.path(),
        "--required-scopes",
        "mcp",
        "--dev",
        "--dev-auto-approve",
    ];
    let env = [("TEST_CHATGPT_SECRET", secret)];
    let gw = Gateway::spawn(&args, &env, port).await;
    // Registration is closed; the configured clients are known by name.
    let r = reqwest::Client::new()
        .post(format!("{}/register", gw.base))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // VS Code's fixed loopback callback, on another port as loopback allows (AS-07).
    let token = authorize(&gw.base, &gw.mcp, "vscode", "http://127.0.0.1:33418/").await;
    let (status, token) =
        refresh(&gw.base, "vscode", token["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    // The ChatGPT entry is confidential: its secret from the environment, never printed.
    let (code, out, err) = common::run(&["clients", "list", "--data-dir", dir.path()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("vscode\tstatic (configuration)\tVisual Studio Code")
            && out.contains("https://chatgpt.com/connector/oauth/abc123"),
        "{out}"
    );
    assert!(!out.contains(secret) && !gw.log().contains(secret));
    let (code, _, err) = common::run(
        &["clients", "remove", "vscode", "--data-dir", dir.path()],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("issuer.clients"), "{err}");

    // Added on the command line: a preset with its own id; a confidential one prints its
    // secret once.
    let (code, out, err) = common::run(
        &[
            "clients",
            "add",
            "--preset",
            "claude-code",
            "--client-id",
            "cc",
            "--data-dir",
            dir.path(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("client_id: cc") && !out.contains("client_secret"),
        "{out}"
    );
    let cc = authorize(&gw.base, &gw.mcp, "cc", "http://localhost:51234/callback").await;
    let (code, out, err) = common::run(
        &[
            "clients",
            "add",
            "--client-id",
            "ci-bot",
            "--name",
            "CI",
            "--auth-method",
            "client_secret_basic",
            "--grant-type",
            "client_credentials",
            "--data-dir",
            dir.path(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let ci_secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_owned();
    assert_eq!(
        client_credentials(&gw, "ci-bot", &ci_secret).await.status(),
        200
    );
    for (args, expect) in [
        (
            vec!["clients", "add", "--preset", "vs-code"],
            "does not exist",
        ),
        (
            vec!["clients", "add", "--preset", "vscode", "--client-id", "cc"],
            "exists already",
        ),
        (
            vec![
                "clients",
                "add",
                "--client-id",
                "x",
                "--redirect-uri",
                "http://evil.example/cb",
            ],
            "redirect",
        ),
        (
            vec![
                "clients",
                "add",
                "--preset",
                "vscode",
                "--client-id",
                "https://x.example/c.json",
            ],
            "client_id",
        ),
    ] {
        let mut full = args.clone();
        full.extend(["--data-dir", dir.path()]);
        let (code, _, err) = common::run(&full, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }

    // Renamed in the configuration: changed in place, its users stay signed in. Removed
    // from it: removed from the store, its grants revoked. Added clients stay.
    drop(gw);
    write_config("VS Code (renamed)", true);
    let gw = Gateway::spawn(&args, &env, port).await;
    let (status, body) =
        refresh(&gw.base, "vscode", token["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    drop(gw);
    write_config("", false);
    let gw = Gateway::spawn(&args, &env, port).await;
    let (status, body) = refresh(&gw.base, "vscode", body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, _) = refresh(&gw.base, "cc", cc["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "a client added on the command line stays");

    // A bad entry names its key; a secret that is not set names the variable.
    std::fs::write(&config, "[[issuer.clients]]\nclient_id = \"a\"\npreset = \"chatgpt\"\nclient_secret = \"${MCPGATE_SURELY_UNSET}\"\n[[issuer.clients]]\nclient_id = \"a\"\npreset = \"vscode\"\n").unwrap();
    let (code, _, err) = common::run(
        &[
            "check-config",
            "--config",
            config.to_str().unwrap(),
            "--auth",
            "issuer",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("issuer.clients[0].client_secret")
            && err.contains("MCPGATE_SURELY_UNSET")
            && err.contains("issuer.clients[1]")
            && err.contains("twice"),
        "{err}"
    );
}

/// Posts the sign-in form of a fresh `/authorize` page for `client_id` as `user`: the status
/// of the answer (303 back to `/authorize` when signed in).
async fn post_sign_in(base: &str, mcp: &str, client_id: &str, user: &str, password: &str) -> u16 {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = url::Url::parse_with_params(
        &format!("{base}/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:47123/callback"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("state", "s"),
            ("resource", mcp),
        ],
    )
    .unwrap();
    let page = http.get(authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookies: Vec<String> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let html = page.text().await.unwrap();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap() + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    };
    http.post(format!("{base}/authorize/sign-in"))
        .header("cookie", cookies.join("; "))
        .form(&[
            ("username", user),
            ("password", password),
            ("csrf", &field("csrf")),
            ("request", &field("request")),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn users_declared_in_the_configuration_sign_in_and_the_admin_commands_know_them() {
    let password = "through the looking glass";
    let (code, hash, err) = common::run_with_stdin(
        &["users", "hash", "--password-stdin"],
        &[],
        &format!("{password}\n"),
    );
    assert_eq!(code, 0, "{err}");
    let hash = hash.trim().to_owned();
    assert!(
        hash.starts_with("$argon2id$") && !hash.contains(password),
        "{hash}"
    );
    let (code, _, err) =
        common::run_with_stdin(&["users", "hash", "--password-stdin"], &[], "short\n");
    assert_eq!(code, 2);
    assert!(err.contains("at least 8"), "{err}");

    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = data_dir();
    let config = std::path::Path::new(dir.path()).join("mcpgate.toml");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &listen,
        "--auth",
        "issuer",
        "--upstream-url",
        &upstream.url,
        "--data-dir",
        dir.path(),
    ];
    let env = [("TEST_CAROL_HASH", hash.as_str())];

    // Bad entries are refused at load, naming the key, never echoing the hash.
    for (entry, key, says) in [
        (
            "name = \"carol\"",
            "issuer.users[0].password_hash",
            "mcpgate users hash",
        ),
        (
            "name = \"carol\"\npassword_hash = \"$2b$12$notargon\"",
            "issuer.users[0]",
            "argon2id",
        ),
        (
            "name = \"c d\"\npassword_hash = \"${TEST_CAROL_HASH}\"",
            "issuer.users[0]",
            "without spaces",
        ),
        (
            "name = \"carol\"\npassword_hash = \"${TEST_NO_SUCH_VAR}\"",
            "issuer.users[0].password_hash",
            "TEST_NO_SUCH_VAR",
        ),
        (
            "name = \"carol\"\npassword = \"plain\"",
            "issuer.users",
            "password",
        ),
    ] {
        std::fs::write(&config, format!("[[issuer.users]]\n{entry}\n")).unwrap();
        let mut check = vec!["check-config"];
        check.extend_from_slice(&args[1..]);
        let (code, _, err) = common::run(&check, &env);
        assert_eq!(code, 2, "{entry}");
        assert!(err.contains(key) && err.contains(says), "{entry}: {err}");
        assert!(!err.contains("$2b$12$notargon"), "{err}");
    }
    std::fs::write(
        &config,
        "[[issuer.users]]\nname = \"carol\"\npassword_hash = \"${TEST_CAROL_HASH}\"\n\n[[issuer.users]]\nname = \"carol\"\npassword_hash = \"${TEST_CAROL_HASH}\"\n",
    )
    .unwrap();
    let mut check = vec!["check-config"];
    check.extend_from_slice(&args[1..]);
    let (code, _, err) = common::run(&check, &env);
    assert_eq!(code, 2);
    assert!(
        err.contains("issuer.users[1]") && err.contains("twice"),
        "{err}"
    );

    std::fs::write(
        &config,
        "[[issuer.users]]\nname = \"carol\"\npassword_hash = \"${TEST_CAROL_HASH}\"\n",
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mcp = format!("{base}/mcp");
    {
        let gw = Gateway::spawn(&args, &env, port).await;
        let registered: Value = reqwest::Client::new()
            .post(format!("{base}/register"))
            .json(&json!({
                "client_name": "Test client",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "token_endpoint_auth_method": "none",
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let client_id = registered["client_id"].as_str().unwrap().to_owned();
        assert_eq!(
            post_sign_in(&base, &mcp, &client_id, "carol", password).await,
            303
        );
        assert_eq!(
            post_sign_in(&base, &mcp, &client_id, "carol", "not her password").await,
            400
        );

        let d = ["--data-dir", dir.path()];
        let (code, out, _) = common::run(&["users", "list", d[0], d[1]], &[]);
        assert_eq!(code, 0);
        assert!(out.starts_with("carol\tconfigured"), "{out}");
        let (code, _, err) = common::run(&["users", "disable", "carol", d[0], d[1]], &[]);
        assert_eq!(code, 2);
        assert!(err.contains("disabled = true"), "{err}");
        assert!(!gw.log().contains(&hash) && !gw.log().contains(password));
        drop(gw);

        // Removed from the configuration: she can no longer sign in.
        std::fs::write(&config, "").unwrap();
        let _gw = Gateway::spawn(&args, &env, port).await;
        assert_eq!(
            post_sign_in(&base, &mcp, &client_id, "carol", password).await,
            400
        );
        let (_, out, _) = common::run(&["users", "list", d[0], d[1]], &[]);
        assert!(out.contains("\tdisabled "), "{out}");
    }
}

/// Opens a legacy session with `access` and its GET stream: the stream's response.
async fn open_get_stream(mcp: &str, access: &str) -> reqwest::Response {
    let http = reqwest::Client::new();
    let init = http
        .post(mcp)
        .bearer_auth(access)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "stream test", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.bytes().await;
    let ack = http
        .post(mcp)
        .bearer_auth(access)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert!(ack.status().is_success(), "{}", ack.status());
    let stream = http
        .get(mcp)
        .bearer_auth(access)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    stream
}

/// Reads `stream` to its end in the background: the receiver hears when it ended.
fn watch_end(mut stream: reqwest::Response) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        while let Ok(Some(_)) = stream.chunk().await {}
        let _ = tx.send(());
    });
    rx
}

/// Round 6, F5: a stream opened with a token lasts no longer than the token: it ends when its
/// grant is revoked, and when it expires.
#[tokio::test]
async fn a_get_stream_ends_when_its_grant_is_revoked_or_its_token_expires() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = data_dir();
    let gw = auto_approving(
        &upstream,
        &dir,
        &[("MCPGATE_ISSUER_ACCESS_TOKEN_TTL", "4s")],
    )
    .await;
    let (client_id, token) = sign_in(&gw.base, &gw.mcp).await;
    let access = token["access_token"].as_str().unwrap();
    let mut ended = watch_end(open_get_stream(&gw.mcp, access).await);
    // Alive while the grant is.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(ended.try_recv().is_err(), "the stream ended by itself");
    let r = reqwest::Client::new()
        .post(format!("{}/revoke", gw.base))
        .form(&[
            ("client_id", client_id.as_str()),
            ("token", token["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(3), ended)
            .await
            .is_ok(),
        "the stream outlived the revocation"
    );

    // And one whose token simply expires (4 s).
    let (_, token) = sign_in(&gw.base, &gw.mcp).await;
    let ended = watch_end(open_get_stream(&gw.mcp, token["access_token"].as_str().unwrap()).await);
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(7), ended)
            .await
            .is_ok(),
        "the stream outlived its token"
    );
    assert!(
        gw.log()
            .contains("stream ended: its token expired or was revoked")
    );
}
