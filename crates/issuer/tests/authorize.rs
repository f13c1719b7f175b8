//! `/authorize` end to end: a real `Issuer` served on 127.0.0.1, driven over HTTP as a
//! browser and an MCP client would — register, authorize, sign in, consent, exchange the code,
//! refresh. Redirects are not followed: each `Location` is read and checked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use mcpgate_issuer::issuer::{Issuer, Settings};
use mcpgate_issuer::pkce::challenge_of;
use mcpgate_issuer::scopes::Catalogue;
use mcpgate_issuer::sign_in::hash_password;
use mcpgate_issuer::store::sqlite::SqliteStore;
use mcpgate_issuer::store::{GrantFilter, User, UserName};
use mcpgate_issuer::users::ConfiguredUser;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::{Value, json};
use url::Url;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// Registered without a port; presented with one (RFC 8252 §7.3).
const REGISTERED: &str = "http://127.0.0.1/callback";
const CALLBACK: &str = "http://127.0.0.1:7777/callback";

struct Server {
    base: String,
    issuer: Arc<Issuer>,
}

async fn start(configure: impl FnOnce(&mut Settings)) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = Settings::new(&base, &format!("{base}/mcp")).unwrap();
    configure(&mut settings);
    let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
    let issuer = Issuer::start(settings, store).await.unwrap();
    let app = issuer.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { base, issuer }
}

impl Server {
    async fn add_user(&self, name: &str, password: &str) {
        self.issuer
            .store
            .add_user(&User {
                name: UserName::new(name),
                password_hash: hash_password(password).unwrap(),
                created_at: SystemTime::now(),
                disabled_at: None,
                configured: false,
            })
            .await
            .unwrap();
    }

    /// Registers a public client named `name`; its `client_id`.
    async fn register(&self, name: &str) -> String {
        let r = http()
            .post(format!("{}/register", self.base))
            .json(&json!({
                "client_name": name,
                "redirect_uris": [REGISTERED],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        body["client_id"].as_str().unwrap().to_owned()
    }

    /// A good authorization request of `client_id`, with `extra` parameters appended.
    fn authorize_url(&self, client_id: &str, extra: &str) -> String {
        let mut url = Url::parse(&format!("{}/authorize", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", CALLBACK)
            .append_pair("code_challenge", &challenge_of(VERIFIER))
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "st-1")
            .append_pair("resource", &format!("{}/mcp", self.base));
        format!("{url}{extra}")
    }

    async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = http()
            .post(format!("{}/token", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn exchange(&self, client_id: &str, code: &str) -> (StatusCode, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("client_id", client_id),
            ("code_verifier", VERIFIER),
        ])
        .await
    }

    async fn refresh(&self, client_id: &str, refresh_token: &str) -> (StatusCode, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ])
        .await
    }

    async fn grants(&self) -> usize {
        self.issuer
            .store
            .list_grants(&GrantFilter {
                include_revoked: true,
                ..GrantFilter::default()
            })
            .await
            .unwrap()
            .len()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What a browser keeps between requests: its cookies.
#[derive(Default, Clone)]
struct Browser {
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    html: String,
}

impl Page {
    fn location(&self) -> Url {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.html);
        Url::parse(self.headers[header::LOCATION].to_str().unwrap())
            .or_else(|_| {
                Url::parse("http://relative.invalid")
                    .unwrap()
                    .join(self.headers[header::LOCATION].to_str().unwrap())
            })
            .unwrap()
    }

    /// The value of the hidden field `name`.
    fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .html
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.html))
            + marker.len();
        let end = start + self.html[start..].find('"').unwrap();
        self.html[start..end].to_owned()
    }
}

fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn keep(&mut self, r: reqwest::Response) -> Page {
        for set in r.headers().get_all(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.insert(name.to_owned(), value.to_owned());
        }
        Page {
            status: r.status(),
            headers: r.headers().clone(),
            html: r.text().await.unwrap(),
        }
    }

    async fn get(&mut self, url: &str) -> Page {
        let mut request = http().get(url);
        if !self.cookies.is_empty() {
            request = request.header(header::COOKIE, self.cookie_header());
        }
        let r = request.send().await.unwrap();
        self.keep(r).await
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let mut request = http().post(url).form(form);
        if !self.cookies.is_empty() {
            request = request.header(header::COOKIE, self.cookie_header());
        }
        let r = request.send().await.unwrap();
        self.keep(r).await
    }

    /// Posts the sign-in form of `page`.
    async fn sign_in(&mut self, server: &Server, page: &Page, user: &str, password: &str) -> Page {
        let (csrf, request) = (page.field("csrf"), page.field("request"));
        self.post(
            &format!("{}/authorize/sign-in", server.base),
            &[
                ("username", user),
                ("password", password),
                ("csrf", &csrf),
                ("request", &request),
            ],
        )
        .await
    }

    /// Posts the consent form of `page` with `decision`.
    async fn decide(&mut self, server: &Server, page: &Page, decision: &str) -> Page {
        let (csrf, request) = (page.field("csrf"), page.field("request"));
        self.post(
            &format!("{}/authorize/consent", server.base),
            &[
                ("decision", decision),
                ("csrf", &csrf),
                ("request", &request),
            ],
        )
        .await
    }

    /// Opens `url`, signs in, and returns the consent page.
    async fn open_consent(
        &mut self,
        server: &Server,
        url: &str,
        user: &str,
        password: &str,
    ) -> Page {
        let sign_in = self.get(url).await;
        assert_eq!(sign_in.status, StatusCode::OK, "{}", sign_in.html);
        let back = self.sign_in(server, &sign_in, user, password).await;
        let back = back.location();
        assert_eq!(back.path(), "/authorize");
        let consent = self
            .get(&format!(
                "{}{}?{}",
                server.base,
                back.path(),
                back.query().unwrap()
            ))
            .await;
        assert_eq!(consent.status, StatusCode::OK, "{}", consent.html);
        assert!(consent.html.contains("Approve"), "{}", consent.html);
        consent
    }
}

/// Register, sign in, approve: the callback URL the browser is sent to.
async fn approved(server: &Server, client_id: &str) -> Url {
    let mut browser = Browser::default();
    let consent = browser
        .open_consent(
            server,
            &server.authorize_url(client_id, ""),
            "alice",
            "wonderland",
        )
        .await;
    browser.decide(server, &consent, "approve").await.location()
}

#[tokio::test]
async fn the_whole_flow_registers_signs_in_approves_exchanges_and_refreshes() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("Test App").await;
    let mut browser = Browser::default();

    let sign_in = browser.get(&server.authorize_url(&client_id, "")).await;
    assert_eq!(sign_in.status, StatusCode::OK);
    assert!(sign_in.html.contains("Test App"));
    assert!(browser.cookies.contains_key("mcpgate-csrf"));

    let back = browser
        .sign_in(&server, &sign_in, "alice", "wonderland")
        .await;
    let set = back.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("mcpgate-signin="), "{set}");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"));
    assert!(!set.contains("Secure"), "http loopback cannot use Secure");
    let back = back.location();
    let consent = browser
        .get(&format!(
            "{}/authorize?{}",
            server.base,
            back.query().unwrap()
        ))
        .await;
    assert_eq!(consent.status, StatusCode::OK);
    assert!(consent.html.contains("alice"));
    assert!(
        consent.html.contains("127.0.0.1"),
        "the redirect host is shown"
    );

    let callback = browser
        .decide(&server, &consent, "approve")
        .await
        .location();
    assert_eq!(
        format!(
            "{}://{}{}",
            callback.scheme(),
            callback.authority(),
            callback.path()
        ),
        CALLBACK
    );
    let q = query(&callback);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], server.base);

    let (status, tokens) = server.exchange(&client_id, &q["code"]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens["access_token"].is_string());
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed) = server.refresh(&client_id, refresh).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_ne!(refreshed["refresh_token"].as_str().unwrap(), refresh);
}

#[tokio::test]
async fn as_05_a_missing_or_plain_pkce_challenge_is_sent_back_to_the_client() {
    let server = start(|_| {}).await;
    let client_id = server.register("App").await;
    let good = server.authorize_url(&client_id, "");
    let challenge = format!("&code_challenge={}", challenge_of(VERIFIER));
    for url in [
        good.replace(&challenge, ""),
        good.replace("code_challenge_method=S256", "code_challenge_method=plain"),
    ] {
        let r = Browser::default().get(&url).await;
        let to = r.location();
        assert!(to.as_str().starts_with(CALLBACK), "{to}");
        let q = query(&to);
        assert_eq!(q["error"], "invalid_request");
        assert_eq!(q["state"], "st-1");
    }
}

#[tokio::test]
async fn as_10_an_unregistered_redirect_uri_is_a_page_never_a_redirect() {
    let server = start(|_| {}).await;
    let client_id = server.register("App").await;
    let url = server
        .authorize_url(&client_id, "")
        .replace("127.0.0.1%3A7777", "evil.example");
    let page = Browser::default().get(&url).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get(header::LOCATION).is_none());
    assert!(
        page.html
            .contains("redirect_uri is not one this client registered")
    );
}

#[tokio::test]
async fn an_unknown_client_is_a_page_never_a_redirect() {
    let server = start(|_| {}).await;
    let page = Browser::default()
        .get(&server.authorize_url("mcp_nobody", ""))
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.headers.get(header::LOCATION).is_none());
    assert!(page.html.contains("invalid_client"));
}

#[tokio::test]
async fn as_11_iss_is_on_the_success_and_the_error_redirect() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let success = approved(&server, &client_id).await;
    assert_eq!(query(&success)["iss"], server.base);
    let error = Browser::default()
        .get(&server.authorize_url(&client_id, "&scope=nope"))
        .await
        .location();
    let q = query(&error);
    assert_eq!(q["error"], "invalid_scope");
    assert_eq!(q["iss"], server.base);
}

#[tokio::test]
async fn deny_sends_access_denied_with_state_and_iss_and_issues_nothing() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let mut browser = Browser::default();
    let consent = browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, ""),
            "alice",
            "wonderland",
        )
        .await;
    let denied = browser.decide(&server, &consent, "deny").await.location();
    let q = query(&denied);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], server.base);
    assert!(!q.contains_key("code"));
    assert_eq!(server.grants().await, 0);
}

#[tokio::test]
async fn a_consent_post_without_the_csrf_token_is_refused() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let mut browser = Browser::default();
    let consent = browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, ""),
            "alice",
            "wonderland",
        )
        .await;
    let request = consent.field("request");
    let url = format!("{}/authorize/consent", server.base);

    // No csrf field.
    let r = browser
        .post(&url, &[("decision", "approve"), ("request", &request)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The field without the cookie (another site's form: it cannot send the cookie's value).
    let mut stranger = browser.clone();
    stranger.cookies.remove("mcpgate-csrf");
    let r = stranger.decide(&server, &consent, "approve").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A sealed request shown to another browser, with this browser's own token.
    let other = Browser::default()
        .get(&server.authorize_url(&client_id, ""))
        .await;
    let csrf = browser.cookies["mcpgate-csrf"].clone();
    let r = browser
        .post(
            &url,
            &[
                ("decision", "approve"),
                ("csrf", &csrf),
                ("request", &other.field("request")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(server.grants().await, 0, "nothing was approved");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_generic_message() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let mut browser = Browser::default();
    let page = browser.get(&server.authorize_url(&client_id, "")).await;
    let wrong = browser
        .sign_in(&server, &page, "alice", "looking-glass")
        .await;
    let unknown = browser.sign_in(&server, &page, "bob", "wonderland").await;
    for r in [&wrong, &unknown] {
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.html.contains("The user name or password is wrong."));
        assert!(r.headers.get(header::SET_COOKIE).is_none());
        // The form is shown again and still works.
        assert_eq!(r.field("request"), page.field("request"));
    }
    assert!(!browser.cookies.contains_key("mcpgate-signin"));
    let ok = browser
        .sign_in(&server, &wrong, "alice", "wonderland")
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn too_many_sign_in_attempts_are_throttled_with_429() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let mut browser = Browser::default();
    let page = browser.get(&server.authorize_url(&client_id, "")).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(browser.sign_in(&server, &page, "alice", "guess").await);
    }
    let asked = std::time::Instant::now();
    statuses.push(browser.sign_in(&server, &page, "alice", "guess").await);
    // The throttled answer is held back (one a second per connection for a flood).
    assert!(asked.elapsed() >= std::time::Duration::from_millis(1000));
    assert!(
        statuses[..5]
            .iter()
            .all(|p| p.status == StatusCode::BAD_REQUEST)
    );
    let throttled = &statuses[5];
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.contains_key(header::RETRY_AFTER));
    assert!(throttled.html.contains("Too many sign-in attempts"));
    // Even the right password waits now.
    let right = browser.sign_in(&server, &page, "alice", "wonderland").await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_replayed_code_is_invalid_grant_and_revokes_the_grant() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let code = query(&approved(&server, &client_id).await)["code"].clone();
    let (status, tokens) = server.exchange(&client_id, &code).await;
    assert_eq!(status, StatusCode::OK);
    let (status, replay) = server.exchange(&client_id, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(replay["error"], "invalid_grant");
    let (status, refreshed) = server
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refreshed}");
    assert_eq!(refreshed["error"], "invalid_grant");
}

#[tokio::test]
async fn a_code_is_bound_to_the_redirect_uri_parameter_as_sent() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let code = query(&approved(&server, &client_id).await)["code"].clone();
    let (status, body) = server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REGISTERED),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (status, _) = server.exchange(&client_id, &code).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the wrong redirect_uri consumed nothing"
    );
}

#[tokio::test]
async fn prefetching_or_reloading_authorize_consumes_nothing() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let url = server.authorize_url(&client_id, "");
    // The client prefetches, with no cookies.
    for _ in 0..3 {
        assert_eq!(Browser::default().get(&url).await.status, StatusCode::OK);
    }
    assert_eq!(server.grants().await, 0);
    // The person opens the page, then reloads it: the first form still works.
    let mut browser = Browser::default();
    let first = browser.get(&url).await;
    let reload = browser.get(&url).await;
    assert_eq!(first.field("csrf"), reload.field("csrf"));
    let back = browser
        .sign_in(&server, &first, "alice", "wonderland")
        .await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    // Signed in, the consent page is shown as often as it is loaded; nothing is approved.
    let again = back.location();
    let again = format!("{}/authorize?{}", server.base, again.query().unwrap());
    let consent = browser.get(&again).await;
    let _reloaded = browser.get(&again).await;
    assert_eq!(server.grants().await, 0);
    let callback = browser
        .decide(&server, &consent, "approve")
        .await
        .location();
    assert!(query(&callback).contains_key("code"));
}

/// Two tabs of a browser that has no CSRF token yet open `/authorize` at the same moment:
/// each is given a token of its own, and the browser keeps the second. The first tab's forms
/// are then stale: shown again bound to the kept token, acted on never, and they work after.
#[tokio::test]
async fn a_form_whose_token_another_tab_replaced_is_shown_again_and_then_works() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let url = server.authorize_url(&client_id, "");
    let mut browser = Browser::default();
    let first = browser.get(&url).await;
    browser.cookies.clear();
    let second = browser.get(&url).await;
    assert_ne!(first.field("csrf"), second.field("csrf"));

    let again = browser
        .sign_in(&server, &first, "alice", "wonderland")
        .await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(
        again.html.contains("opened again in another tab"),
        "{}",
        again.html
    );
    assert!(again.html.contains("value=\"alice\""), "the name is kept");
    assert!(
        again.headers.get(header::SET_COOKIE).is_none(),
        "not signed in"
    );
    assert_eq!(again.field("csrf"), second.field("csrf"));
    assert_ne!(again.field("request"), first.field("request"));
    let back = browser
        .sign_in(&server, &again, "alice", "wonderland")
        .await
        .location();
    let consent_url = format!("{}/authorize?{}", server.base, back.query().unwrap());

    // The same race on the consent page (the CSRF cookie lasts as long as the browser runs;
    // the sign-in, twelve hours).
    let signed_in = browser.cookies["mcpgate-signin"].clone();
    browser.cookies.retain(|name, _| name == "mcpgate-signin");
    let first = browser.get(&consent_url).await;
    browser.cookies.retain(|name, _| name == "mcpgate-signin");
    let _second = browser.get(&consent_url).await;
    assert_eq!(browser.cookies["mcpgate-signin"], signed_in);
    let again = browser.decide(&server, &first, "approve").await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(
        again.html.contains("Your answer was not sent"),
        "{}",
        again.html
    );
    assert!(again.html.contains("Approve"));
    assert_eq!(server.grants().await, 0, "nothing was approved");
    let callback = browser.decide(&server, &again, "approve").await.location();
    let (status, _) = server.exchange(&client_id, &query(&callback)["code"]).await;
    assert_eq!(status, StatusCode::OK);
}

/// A form that did not come whole from one page of this server is still refused, stale or
/// not: its hidden token and its sealed request must agree.
#[tokio::test]
async fn a_form_mixing_two_pages_is_refused_as_forged() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let url = server.authorize_url(&client_id, "");
    let mut browser = Browser::default();
    let first = browser.get(&url).await;
    browser.cookies.clear();
    let second = browser.get(&url).await;
    let r = browser
        .post(
            &format!("{}/authorize/sign-in", server.base),
            &[
                ("username", "alice"),
                ("password", "wonderland"),
                ("csrf", &second.field("csrf")),
                ("request", &first.field("request")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.html.contains("This form cannot be used"), "{}", r.html);
    assert!(r.headers.get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn a_second_approve_of_the_same_form_does_not_break_the_first() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let mut browser = Browser::default();
    let consent = browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, ""),
            "alice",
            "wonderland",
        )
        .await;
    let first = browser
        .decide(&server, &consent, "approve")
        .await
        .location();
    let second = browser
        .decide(&server, &consent, "approve")
        .await
        .location();
    let (a, b) = (
        query(&first)["code"].clone(),
        query(&second)["code"].clone(),
    );
    assert_ne!(a, b);
    assert_eq!(server.exchange(&client_id, &a).await.0, StatusCode::OK);
    assert_eq!(server.exchange(&client_id, &b).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_consented_client_gets_its_code_without_asking_again() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let mut browser = Browser::default();
    let consent = browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, ""),
            "alice",
            "wonderland",
        )
        .await;
    browser
        .decide(&server, &consent, "approve")
        .await
        .location();
    let again = browser.get(&server.authorize_url(&client_id, "")).await;
    let callback = again.location();
    assert!(query(&callback).contains_key("code"));
}

/// Round 6, F3: remembered consent covers only the redirect URI the person was shown; a
/// client asking for a fresh decision gets one; `prompt=none` never shows a page; revoking
/// the grant forgets the consent.
#[tokio::test]
async fn remembered_consent_is_bound_to_its_redirect_uri_and_forgotten_when_revoked() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    // A client with a loopback callback and an https one it never showed.
    let r = http()
        .post(format!("{}/register", server.base))
        .json(&json!({
            "client_name": "Two callbacks",
            "redirect_uris": [REGISTERED, "https://evil.example/cb"],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .unwrap();
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut browser = Browser::default();
    let consent = browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, ""),
            "alice",
            "wonderland",
        )
        .await;
    let callback = browser
        .decide(&server, &consent, "approve")
        .await
        .location();
    let (status, tokens) = server.exchange(&client_id, &query(&callback)["code"]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");

    // The same request again: remembered.
    let again = browser.get(&server.authorize_url(&client_id, "")).await;
    assert!(query(&again.location()).contains_key("code"));
    // Another of its redirect URIs, or another loopback port: asked again, no code sent.
    let elsewhere = server
        .authorize_url(&client_id, "")
        .replace(&urlencode(CALLBACK), &urlencode("https://evil.example/cb"));
    let other_port = server.authorize_url(&client_id, "").replace(
        &urlencode(CALLBACK),
        &urlencode("http://127.0.0.1:7778/callback"),
    );
    for url in [&elsewhere, &other_port] {
        let page = browser.get(url).await;
        assert_eq!(page.status, StatusCode::OK, "{url}: {}", page.html);
        assert!(page.html.contains("Approve"), "{url}");
    }
    // prompt=consent asks again; prompt=none answers consent_required for the unapproved URI.
    let page = browser
        .get(&server.authorize_url(&client_id, "&prompt=consent"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("Approve"));
    let refused = browser
        .get(&format!("{elsewhere}&prompt=none"))
        .await
        .location();
    assert_eq!(query(&refused)["error"], "consent_required");
    let fresh = Browser::default()
        .get(&server.authorize_url(&client_id, "&prompt=none"))
        .await
        .location();
    assert_eq!(query(&fresh)["error"], "login_required");
    let bad = browser
        .get(&server.authorize_url(&client_id, "&prompt=none%20consent"))
        .await
        .location();
    assert_eq!(query(&bad)["error"], "invalid_request");

    // Revoking the grant forgets the consent: asked again.
    let r = http()
        .post(format!("{}/revoke", server.base))
        .form(&[
            ("client_id", client_id.as_str()),
            ("token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = browser.get(&server.authorize_url(&client_id, "")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("Approve"));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_disabled_users_sign_in_no_longer_counts() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("App").await;
    let mut browser = Browser::default();
    let consent = browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, ""),
            "alice",
            "wonderland",
        )
        .await;
    server
        .issuer
        .store
        .disable_user(&UserName::new("alice"), SystemTime::now())
        .await
        .unwrap();
    let r = browser.decide(&server, &consent, "approve").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.html.contains("Sign in again"));
    assert_eq!(server.grants().await, 0);
}

#[tokio::test]
async fn auto_approve_signs_the_development_user_in_and_approves_at_once() {
    let server = start(|s| s.auto_approve = Some("dev".to_owned())).await;
    let client_id = server.register("CI").await;
    let callback = Browser::default()
        .get(&server.authorize_url(&client_id, ""))
        .await
        .location();
    let q = query(&callback);
    assert_eq!(q["state"], "st-1");
    let (status, tokens) = server.exchange(&client_id, &q["code"]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let consented = server
        .issuer
        .store
        .consent_covers(
            &mcpgate_issuer::store::Subject::new("dev"),
            &mcpgate_issuer::store::ClientId::new(&client_id),
            &mcpgate_issuer::store::Scopes::default(),
            CALLBACK,
        )
        .await
        .unwrap();
    assert!(consented, "auto-approve goes through consent storage");
}

#[tokio::test]
async fn pages_carry_a_strict_policy_and_show_the_client_escaped() {
    let server = start(|s| {
        s.scopes = Catalogue::new(
            [
                ("files:read", "Read your files"),
                ("files:write", "Change your files"),
            ],
            ["files:read"],
        )
        .unwrap();
    })
    .await;
    server.add_user("alice", "wonderland").await;
    let client_id = server.register("<b>Sneaky</b> & Co").await;
    let mut browser = Browser::default();
    let consent = browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, "&scope=files%3Aread+files%3Awrite"),
            "alice",
            "wonderland",
        )
        .await;
    let csp = consent.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert_eq!(
        csp,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http://127.0.0.1:7777; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(consent.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(consent.headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(consent.headers[header::CACHE_CONTROL], "no-store");
    assert!(!consent.html.contains("<b>Sneaky</b>"));
    assert!(consent.html.contains("Sneaky"));
    assert!(consent.html.contains("Read your files") && consent.html.contains("Change your files"));
    assert!(consent.html.contains("registered itself"));
    assert!(!consent.html.contains("<script"), "no script on the page");
}

/// Serves a client ID metadata document on 127.0.0.1; its URL, the `client_id`.
async fn metadata_document() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let id = format!("http://{}/client.json", listener.local_addr().unwrap());
    let document = json!({
        "client_id": id,
        "client_name": "Document App",
        "redirect_uris": [REGISTERED],
        "token_endpoint_auth_method": "none",
    })
    .to_string();
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], document) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    id
}

#[tokio::test]
async fn a_client_known_by_its_metadata_document_completes_the_flow() {
    let server = start(|s| s.allow_loopback_fetch = true).await;
    server.add_user("alice", "wonderland").await;
    let client_id = metadata_document().await;
    let mut browser = Browser::default();
    let consent = browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, ""),
            "alice",
            "wonderland",
        )
        .await;
    assert!(consent.html.contains("Document App"));
    assert!(
        consent.html.contains(&client_id),
        "the document's URL is shown"
    );
    let callback = browser
        .decide(&server, &consent, "approve")
        .await
        .location();
    let (status, tokens) = server.exchange(&client_id, &query(&callback)["code"]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (status, _) = server
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn configured_users_sign_in_and_one_no_longer_configured_is_disabled_with_its_grants() {
    let hash = hash_password("through the looking glass").unwrap();
    let carol = ConfiguredUser::new("carol", hash.as_str(), false).unwrap();
    let server = start(|s| s.users = vec![carol.clone()]).await;
    let client_id = server.register("App").await;
    let mut browser = Browser::default();
    let consent = browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, ""),
            "carol",
            "through the looking glass",
        )
        .await;
    let callback = browser
        .decide(&server, &consent, "approve")
        .await
        .location();
    let (status, tokens) = server.exchange(&client_id, &query(&callback)["code"]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let user = server
        .issuer
        .store
        .get_user(&UserName::new("carol"))
        .await
        .unwrap()
        .unwrap();
    assert!(user.configured && user.disabled_at.is_none());

    // Started again with the same user: nothing changes, the chain goes on.
    let store = server.issuer.store.clone();
    let again = |users: Vec<ConfiguredUser>| {
        let (store, base) = (store.clone(), server.base.clone());
        async move {
            let mut settings = Settings::new(&base, &format!("{base}/mcp")).unwrap();
            settings.users = users;
            Issuer::start(settings, store).await.map(drop)
        }
    };
    again(vec![carol.clone()]).await.unwrap();
    let (status, refreshed) = server
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");

    // Removed from the configuration: disabled, the grant revoked, no sign-in.
    again(vec![]).await.unwrap();
    let (status, body) = server
        .refresh(&client_id, refreshed["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let mut browser = Browser::default();
    let page = browser.get(&server.authorize_url(&client_id, "")).await;
    let refused = browser
        .sign_in(&server, &page, "carol", "through the looking glass")
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.html);
    assert!(refused.html.contains("password"), "{}", refused.html);

    // Declared again, marked disabled: still no sign-in; then enabled: signs in.
    let mut disabled = carol.clone();
    disabled.disabled = true;
    again(vec![disabled]).await.unwrap();
    let page = browser.get(&server.authorize_url(&client_id, "")).await;
    let refused = browser
        .sign_in(&server, &page, "carol", "through the looking glass")
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    again(vec![carol.clone()]).await.unwrap();
    let page = browser.get(&server.authorize_url(&client_id, "")).await;
    let back = browser
        .sign_in(&server, &page, "carol", "through the looking glass")
        .await
        .location();
    assert_eq!(back.path(), "/authorize");
    // Her grants were revoked with her, and with them what she had approved: asked again.
    let consent = browser
        .get(&format!(
            "{}/authorize?{}",
            server.base,
            back.query().unwrap()
        ))
        .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.html);
    assert!(consent.html.contains("Approve"));

    // A name `mcpgate users add` holds is not taken over.
    server.add_user("dave", "a password of dave's").await;
    let dave = ConfiguredUser::new("dave", hash.as_str(), false).unwrap();
    let err = again(vec![dave]).await.unwrap_err().to_string();
    assert!(
        err.contains("issuer.users") && err.contains("`dave` exists already"),
        "{err}"
    );
}

/// Round 6, F18: a consent form counts only from the user it was shown to.
#[tokio::test]
async fn a_consent_form_answered_by_another_signed_in_user_is_asked_again() {
    let server = start(|_| {}).await;
    server.add_user("alice", "wonderland").await;
    server.add_user("bob", "builder-bob").await;
    let client_id = server.register("App").await;
    let mut browser = Browser::default();
    let alices = browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, ""),
            "alice",
            "wonderland",
        )
        .await;
    // Bob signs in in the same browser; Alice's form is then sent.
    browser
        .open_consent(
            &server,
            &server.authorize_url(&client_id, ""),
            "bob",
            "builder-bob",
        )
        .await;
    let again = browser.decide(&server, &alices, "approve").await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.html);
    assert!(again.html.contains("someone else"), "{}", again.html);
    assert_eq!(server.grants().await, 0, "nothing was issued");
    // The form shown again is Bob's: his answer counts.
    let callback = browser.decide(&server, &again, "approve").await.location();
    let (status, tokens) = server.exchange(&client_id, &query(&callback)["code"]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let claims = tokens["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "bob");
}
