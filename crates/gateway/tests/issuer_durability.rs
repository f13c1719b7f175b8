//! `--auth issuer` across a crash: the gateway is killed with SIGKILL (no graceful shutdown)
//! and restarted on the same data directory and port. Registrations, grants, signing keys and
//! refresh-token rotations are in the SQLite store, committed before the answer is sent, so a
//! crash loses nothing a client was told about.
//!
//! The invariant checked under a burst of concurrent refreshes killed midway:
//!
//! * a client that received a new refresh token before the crash can use it after the restart;
//! * a rotation is all or nothing: the replacement is stored and the presented token marked
//!   rotated in one transaction — never one without the other;
//! * a client that received no answer still holds its old token. If the store had rotated it
//!   (the answer was lost in the crash), presenting it again is a reuse. The grace window
//!   (`issuer.refresh_grace`) is measured from the `rotated_at` kept in the store, so it spans
//!   a restart: within it the presentation is refused with `invalid_grant` and nothing is
//!   revoked (the in-memory `RecentRotations` that would give back the very same token is
//!   gone, and a second token would fork the grant into two chains reuse detection cannot
//!   see); the user signs in again. With `refresh_grace = "0s"` the reuse revokes the grant —
//!   exactly what the configuration asks for, asserted below.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Gateway, Generation, client, free_port};
use mcpgate_testkit::{Mode, TestUpstream};
use serde_json::{Value, json};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:47123/callback";
/// Refreshes fired at once in the burst.
const BURST: usize = 20;
/// Answers awaited before the gateway is killed.
const KILL_AFTER: usize = 3;

/// A directory removed on drop.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Dir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mcpgate-durability-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The gateway in issuer mode on `port`, with `refresh_grace` if given (in a configuration
/// file beside the data directory, written once and reused on restart).
async fn gateway(
    upstream: &TestUpstream,
    dir: &Dir,
    config: &Dir,
    refresh_grace: Option<&str>,
    port: u16,
) -> Gateway {
    let listen = format!("127.0.0.1:{port}");
    let config_file = config.0.join("mcpgate.toml");
    let grace = refresh_grace
        .map(|g| format!("refresh_grace = \"{g}\"\n"))
        .unwrap_or_default();
    std::fs::write(&config_file, format!("[issuer]\n{grace}")).unwrap();
    Gateway::spawn(
        &[
            "serve",
            "--config",
            config_file.to_str().unwrap(),
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
        &[],
        port,
    )
    .await
}

/// Registers a public client; returns its id.
async fn register(base: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/register"))
        .json(&json!({
            "client_name": "Durability test client",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let registered: Value = r.json().await.unwrap();
    registered["client_id"].as_str().unwrap().to_owned()
}

/// `/authorize` (auto-approved), then the code at `/token`: a new grant.
async fn authorize(base: &str, mcp: &str, client_id: &str) -> Value {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = url::Url::parse_with_params(
        &format!("{base}/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
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
    let q: BTreeMap<_, _> = location.query_pairs().into_owned().collect();
    let token: Value = http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", mcp),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(token["refresh_token"].is_string(), "{token}");
    token
}

/// A refresh; `None` when no complete answer arrived (connection refused or reset).
async fn try_refresh(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    refresh_token: &str,
) -> Option<(u16, Value)> {
    let r = http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    let body = r.bytes().await.ok()?;
    Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

async fn refresh(base: &str, client_id: &str, refresh_token: &str) -> (u16, Value) {
    try_refresh(&reqwest::Client::new(), base, client_id, refresh_token)
        .await
        .expect("the gateway answers")
}

/// The `kid`s the gateway publishes.
async fn kids(base: &str) -> Vec<String> {
    let jwks: Value = reqwest::Client::new()
        .get(format!("{base}/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether the gateway lets `access` through to the upstream's tools.
async fn passes(mcp: &str, access: &str) -> bool {
    match client(mcp, Some(access), Generation::Legacy).await {
        Ok(c) => {
            let ok = c.list_all_tools().await.is_ok_and(|t| !t.is_empty());
            let _ = c.cancel().await;
            ok
        }
        Err(_) => false,
    }
}

/// The live (unrevoked) grants, from `mcpgate grants list`.
fn live_grants(dir: &Dir) -> BTreeSet<String> {
    let (code, out, err) = common::run(&["grants", "list", "--data-dir", dir.path()], &[]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

/// The grant an access token came from (its `grant_id` claim).
fn grant_of(access: &str) -> String {
    use base64::Engine;
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["grant_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn registrations_grants_keys_and_tokens_survive_a_sigkill() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = Dir::new();
    let config = Dir::new();
    let port = free_port();
    let mut gw = gateway(&upstream, &dir, &config, None, port).await;
    let client_id = register(&gw.base).await;
    let first = authorize(&gw.base, &gw.mcp, &client_id).await;
    let (status, second) = refresh(
        &gw.base,
        &client_id,
        first["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let access = second["access_token"].as_str().unwrap().to_owned();
    let refresh_token = second["refresh_token"].as_str().unwrap().to_owned();
    assert!(passes(&gw.mcp, &access).await);
    let kids_before = kids(&gw.base).await;
    assert!(!kids_before.is_empty());

    gw.kill9();
    let gw = gateway(&upstream, &dir, &config, None, port).await;

    // The same signing key: the access token issued before the crash still passes.
    assert_eq!(kids(&gw.base).await, kids_before);
    assert!(passes(&gw.mcp, &access).await);
    assert!(
        passes(&gw.mcp, first["access_token"].as_str().unwrap()).await,
        "a rotation does not revoke the access tokens of its grant"
    );
    // The client is still known and its last refresh token rotates.
    let (status, third) = refresh(&gw.base, &client_id, &refresh_token).await;
    assert_eq!(status, 200, "{third}");
    assert!(passes(&gw.mcp, third["access_token"].as_str().unwrap()).await);
    let (status, fourth) = refresh(
        &gw.base,
        &client_id,
        third["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{fourth}");
    // A new sign-in for the same client works too.
    let again = authorize(&gw.base, &gw.mcp, &client_id).await;
    assert!(passes(&gw.mcp, again["access_token"].as_str().unwrap()).await);
    assert_eq!(
        live_grants(&dir),
        BTreeSet::from([
            grant_of(&access),
            grant_of(again["access_token"].as_str().unwrap())
        ])
    );
    let log = gw.log();
    assert!(!log.contains(&access) && !log.contains(&refresh_token));
}

/// One grant of the burst.
struct Grant {
    /// The client (one for all grants: registration is rate limited per address).
    client_id: String,
    /// Its id in the store.
    id: String,
    /// The refresh token from sign-in.
    old: String,
    /// The replacement, if the burst's answer arrived.
    new: Option<String>,
}

/// What the burst left behind.
struct Burst {
    upstream: TestUpstream,
    dir: Dir,
    config: Dir,
    /// The restarted gateway.
    gw: Gateway,
    grants: Vec<Grant>,
    /// A grant refreshed before the burst whose answer the client "lost": the store rotated
    /// it, the client holds only the old token.
    dropped: Grant,
}

/// Signs in `BURST` times (one client, a grant each) plus once more for one whose refresh answer is dropped, fires
/// the `BURST` refreshes at once, SIGKILLs the gateway after `KILL_AFTER` answers and restarts
/// it on the same data directory and port.
async fn burst_then_crash(refresh_grace: &str) -> Burst {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = Dir::new();
    let config = Dir::new();
    let port = free_port();
    let mut gw = gateway(&upstream, &dir, &config, Some(refresh_grace), port).await;
    let mut grants = Vec::new();
    let client_id = register(&gw.base).await;
    for _ in 0..=BURST {
        let token = authorize(&gw.base, &gw.mcp, &client_id).await;
        grants.push(Grant {
            client_id: client_id.clone(),
            id: grant_of(token["access_token"].as_str().unwrap()),
            old: token["refresh_token"].as_str().unwrap().to_owned(),
            new: None,
        });
    }
    let dropped = grants.pop().unwrap();
    let (status, _lost) = refresh(&gw.base, &dropped.client_id, &dropped.old).await;
    assert_eq!(status, 200);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let http = reqwest::Client::new();
    for (i, g) in grants.iter().enumerate() {
        let (http, tx, base) = (http.clone(), tx.clone(), gw.base.clone());
        let (client_id, old) = (g.client_id.clone(), g.old.clone());
        tokio::spawn(async move {
            let answer = try_refresh(&http, &base, &client_id, &old).await;
            let _ = tx.send((i, answer));
        });
    }
    drop(tx);
    let mut answers = Vec::new();
    while answers.len() < KILL_AFTER {
        answers.push(rx.recv().await.unwrap());
    }
    gw.kill9();
    while let Some(answer) = rx.recv().await {
        answers.push(answer);
    }
    assert_eq!(answers.len(), BURST);
    for (i, answer) in answers {
        if let Some((status, body)) = answer {
            // Concurrent refreshes of distinct grants all succeed (no busy store errors).
            assert_eq!(status, 200, "{body}");
            grants[i].new = Some(body["refresh_token"].as_str().unwrap().to_owned());
        }
    }
    let received = grants.iter().filter(|g| g.new.is_some()).count();
    assert!(received >= KILL_AFTER);
    eprintln!("{received} of {BURST} refresh answers arrived before SIGKILL");

    drop(gw);
    let gw = gateway(&upstream, &dir, &config, Some(refresh_grace), port).await;
    // Every grant is still live after the crash: a crash revokes nothing.
    let all: BTreeSet<String> = grants
        .iter()
        .chain([&dropped])
        .map(|g| g.id.clone())
        .collect();
    assert_eq!(live_grants(&dir), all);
    Burst {
        upstream,
        dir,
        config,
        gw,
        grants,
        dropped,
    }
}

/// How many refreshes the restarted gateway refused within the grace window of a rotation it
/// had not seen (a rotation whose answer was lost in the crash).
fn unseen_rotations(gw: &Gateway) -> usize {
    gw.log()
        .matches("grace window of a rotation not made here")
        .count()
}

#[tokio::test]
async fn within_the_grace_window_a_crash_mid_burst_revokes_nothing_and_forks_no_grant() {
    // A grace window longer than the test can take, so that no assertion hangs on timing.
    let b = burst_then_crash("5m").await;
    let base = &b.gw.base;
    let mcp = &b.gw.mcp;
    let mut committed_unanswered = 0;
    for g in &b.grants {
        // The token the client holds: the new one if it got it, else its old one.
        let held = g.new.as_deref().unwrap_or(&g.old);
        let (status, body) = refresh(base, &g.client_id, held).await;
        if g.new.is_none() && status == 400 {
            // Its rotation committed but the answer was lost: the restarted gateway does not
            // know the replacement, and issues no second one (that would fork the grant).
            assert_eq!(body["error"], "invalid_grant", "{body}");
            committed_unanswered += 1;
            continue;
        }
        assert_eq!(
            status, 200,
            "{}: the token it holds is refused: {body}",
            g.id
        );
        assert!(passes(mcp, body["access_token"].as_str().unwrap()).await);
        // And the chain goes on from the token just received.
        let (status, next) =
            refresh(base, &g.client_id, body["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{next}");
    }
    // The answer the client lost before the burst: its old token is refused the same way —
    // not as theft (nothing is revoked), and without a second replacement.
    let (status, body) = refresh(base, &b.dropped.client_id, &b.dropped.old).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert_eq!(
        unseen_rotations(&b.gw),
        1 + committed_unanswered,
        "{}",
        b.gw.log()
    );
    eprintln!(
        "{committed_unanswered} of {} unanswered refreshes had been committed before the crash",
        b.grants.iter().filter(|g| g.new.is_none()).count()
    );
    // Nothing was revoked.
    let all: BTreeSet<String> = b
        .grants
        .iter()
        .chain([&b.dropped])
        .map(|g| g.id.clone())
        .collect();
    assert_eq!(live_grants(&b.dir), all);
    drop((b.upstream, b.config));
}

#[tokio::test]
async fn without_a_grace_window_rotations_are_all_or_nothing_across_a_crash_mid_burst() {
    // `refresh_grace = "0s"`: any second presentation of a rotated token is a reuse. That makes
    // the store's state observable: a presented token that was marked rotated revokes its
    // grant, one that was not rotates normally.
    let b = burst_then_crash("0s").await;
    let base = &b.gw.base;
    let mut revoked = BTreeSet::new();
    let mut lost = 0;
    for g in &b.grants {
        match &g.new {
            Some(new) => {
                // The replacement the client received was stored...
                let (status, body) = refresh(base, &g.client_id, new).await;
                assert_eq!(status, 200, "{}: {body}", g.id);
                let latest = body["refresh_token"].as_str().unwrap().to_owned();
                // ...and in the same transaction the old token was marked rotated: presented
                // again it is a reuse, which revokes the grant with every token of it.
                let (status, body) = refresh(base, &g.client_id, &g.old).await;
                assert_eq!(
                    (status, body["error"].as_str()),
                    (400, Some("invalid_grant")),
                    "{}: half rotated (the old token still rotates)",
                    g.id
                );
                let (status, body) = refresh(base, &g.client_id, &latest).await;
                assert_eq!(
                    (status, body["error"].as_str()),
                    (400, Some("invalid_grant"))
                );
                revoked.insert(g.id.clone());
            }
            None => {
                // No answer: either the rotation never committed (the old token rotates now)
                // or it committed and its answer was lost — then the old token is a reuse and
                // the grant is revoked: with no grace window, the user signs in again.
                let (status, body) = refresh(base, &g.client_id, &g.old).await;
                match (status, body["error"].as_str()) {
                    (200, None) => {
                        let (status, body) =
                            refresh(base, &g.client_id, body["refresh_token"].as_str().unwrap())
                                .await;
                        assert_eq!(status, 200, "{body}");
                    }
                    (400, Some("invalid_grant")) => {
                        lost += 1;
                        revoked.insert(g.id.clone());
                    }
                    other => panic!("{}: {other:?}: {body}", g.id),
                }
            }
        }
    }
    // The deterministic lost answer: a reuse, the grant revoked.
    let (status, body) = refresh(base, &b.dropped.client_id, &b.dropped.old).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    revoked.insert(b.dropped.id.clone());
    // Exactly the grants found reused are revoked in the store; the others are untouched.
    let live: BTreeSet<String> = b
        .grants
        .iter()
        .map(|g| g.id.clone())
        .filter(|c| !revoked.contains(c))
        .collect();
    assert_eq!(live_grants(&b.dir), live);
    eprintln!(
        "{lost} of {} unanswered refreshes had been committed before the crash",
        b.grants.iter().filter(|g| g.new.is_none()).count()
    );
    drop((b.upstream, b.config));
}
