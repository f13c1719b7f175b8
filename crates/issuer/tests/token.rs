//! `/token` over real HTTP on 127.0.0.1: codes bound to client, redirect URI, verifier and
//! resource; refresh rotation with reuse detection; what each failure changes (nothing, or
//! the whole grant). Codes are put in the store as `/authorize` would put them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mcpgate_guard::{ClientId, ResourceUrl, Scopes, Subject};
use mcpgate_issuer::clients::configured::StaticClient;
use mcpgate_issuer::clients::redirect_uri::AllowList;
use mcpgate_issuer::issuer::{Issuer, Settings};
use mcpgate_issuer::pkce::challenge_of;
use mcpgate_issuer::scopes::Catalogue;
use mcpgate_issuer::secret::generate_token;
use mcpgate_issuer::store::sqlite::SqliteStore;
use mcpgate_issuer::store::{AuthorizationCode, Grant, GrantId};
use mcpgate_issuer::token::authorization_code::code_hash;
use serde_json::{Value, json};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "http://127.0.0.1:5000/callback";

struct Server {
    base: String,
    issuer: Arc<Issuer>,
    http: reqwest::Client,
    _store: Arc<SqliteStore>,
}

async fn server(grace: Duration) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = Settings::new(&base, &format!("{base}/mcp")).unwrap();
    settings.scopes =
        Catalogue::new([("mcp", "Use it"), ("admin", "Administer it")], ["mcp"]).unwrap();
    settings.refresh_grace = grace;
    let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
    let issuer = Issuer::start(settings, store.clone()).await.unwrap();
    let app = issuer.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base,
        issuer,
        http: reqwest::Client::new(),
        _store: store,
    }
}

impl Server {
    /// Admits a confidential client as an operator does (`mcpgate clients add`); its id.
    async fn admit(&self, members: Value, secret: &str) -> String {
        let id = format!("admitted-{}", &generate_token()[..8]);
        let client = StaticClient::new(
            &id,
            None,
            members.as_object().unwrap().clone(),
            Some(secret),
            &AllowList::default(),
        )
        .unwrap();
        self.issuer
            .store
            .insert_client(&client.record(false, SystemTime::now()))
            .await
            .unwrap();
        id
    }

    async fn register_public(&self) -> String {
        let r: Value = self
            .http
            .post(format!("{}/register", self.base))
            .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none", "client_name": "t", "grant_types": ["authorization_code", "refresh_token"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["client_id"].as_str().unwrap().to_owned()
    }

    /// A code as `/authorize` issues it after approval (with its grant).
    async fn code(&self, client_id: &str, redirect_param: &str) -> (String, GrantId) {
        let code = generate_token();
        let grant = GrantId::generate();
        let now = SystemTime::now();
        let scopes = Scopes::from_space_delimited("mcp");
        let resource = ResourceUrl::parse(&format!("{}/mcp", self.base)).unwrap();
        self.issuer
            .store
            .create_grant(&Grant {
                id: grant.clone(),
                subject: Subject::new("alice"),
                client_id: ClientId::new(client_id),
                scopes: scopes.clone(),
                resource: Some(resource.clone()),
                created_at: now,
                revoked_at: None,
            })
            .await
            .unwrap();
        self.issuer
            .store
            .insert_code(&AuthorizationCode {
                code_hash: code_hash(client_id, redirect_param, &code),
                client_id: ClientId::new(client_id),
                redirect_uri: redirect_param.to_owned(),
                code_challenge: challenge_of(VERIFIER),
                resource: Some(resource),
                scopes,
                subject: Subject::new("alice"),
                grant_id: grant.clone(),
                expires_at: now + Duration::from_secs(60),
            })
            .await
            .unwrap();
        (code, grant)
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/token", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["cache-control"], "no-store");
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn exchange(&self, client: &str, code: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await
    }

    async fn refresh(&self, client: &str, token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client),
            ("refresh_token", token),
        ])
        .await
    }
}

#[tokio::test]
async fn a_code_is_exchanged_once_for_tokens_bound_to_the_resource() {
    let s = server(Duration::from_secs(30)).await;
    let client = s.register_public().await;
    let (code, _) = s.code(&client, REDIRECT).await;
    let (status, body) = s.exchange(&client, &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "mcp");
    assert!(body["refresh_token"].is_string());
    // The access token verifies against the issuer's own keys and names the resource.
    let access = body["access_token"].as_str().unwrap();
    let claims: Value = {
        use base64::Engine as _;
        let payload = access.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["aud"], format!("{}/mcp", s.base));
    assert_eq!(claims["iss"], s.base);
    assert_eq!(claims["client_id"], client);
    assert!(claims["jti"].is_string() && claims["grant_id"].is_string());
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_issued() {
    let s = server(Duration::from_secs(30)).await;
    let client = s.register_public().await;
    let (code, _) = s.code(&client, REDIRECT).await;
    let (_, first) = s.exchange(&client, &code).await;
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = s.exchange(&client, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = s.refresh(&client, &refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the grant went with the replay"
    );
}

#[tokio::test]
async fn as_05_a_wrong_or_missing_verifier_is_refused() {
    let s = server(Duration::from_secs(30)).await;
    let client = s.register_public().await;
    let (code, _) = s.code(&client, REDIRECT).await;
    let (status, body) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &VERIFIER.replace('k', "l")),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn another_client_or_redirect_uri_finds_no_code_and_consumes_nothing() {
    let s = server(Duration::from_secs(30)).await;
    let client = s.register_public().await;
    let other = s.register_public().await;
    let (code, _) = s.code(&client, REDIRECT).await;
    let (status, body) = s.exchange(&other, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:5000/callback/other"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(status, 400);
    // An unknown client is a 401 that tells the client to register again — and consumes
    // nothing either.
    let (status, body) = s.exchange("mcp_unknown", &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // The code still works for its own client and redirect URI.
    assert_eq!(s.exchange(&client, &code).await.0, 200);
}

#[tokio::test]
async fn as_09_refresh_rotates_and_reuse_outside_the_grace_window_revokes_the_grant() {
    let s = server(Duration::ZERO).await;
    let client = s.register_public().await;
    let (code, _) = s.code(&client, REDIRECT).await;
    let (_, first) = s.exchange(&client, &code).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = s.refresh(&client, &r1).await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "rotated");
    // r1 again: reuse. The whole grant goes, r2 included.
    let (status, body) = s.refresh(&client, &r1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = s.refresh(&client, &r2).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_refused_refresh_leaves_the_token_as_it_was() {
    // No grace window: had a refused request rotated the token, the next use would be a
    // reuse and revoke the grant.
    let s = server(Duration::ZERO).await;
    let client = s.register_public().await;
    let (code, _) = s.code(&client, REDIRECT).await;
    let (_, first) = s.exchange(&client, &code).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let base = s.base.clone();
    for (extra, error) in [
        (("scope", "mcp admin".to_owned()), "invalid_scope"),
        (
            ("resource", "https://evil.example/mcp".to_owned()),
            "invalid_target",
        ),
    ] {
        let (status, body) = s
            .token(&[
                ("grant_type", "refresh_token"),
                ("client_id", &client),
                ("refresh_token", &r1),
                (extra.0, extra.1.as_str()),
            ])
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{body}"
        );
    }
    let (status, body) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &r1),
            ("resource", &format!("{base}/mcp")),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_string());
}

#[tokio::test]
async fn two_refreshes_racing_inside_the_grace_window_both_succeed() {
    let s = server(Duration::from_secs(30)).await;
    let client = s.register_public().await;
    let (code, _) = s.code(&client, REDIRECT).await;
    let (_, first) = s.exchange(&client, &code).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let (a, b) = tokio::join!(s.refresh(&client, &r1), s.refresh(&client, &r1));
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    // Both got the same next token: one chain, not two.
    assert_eq!(a.1["refresh_token"], b.1["refresh_token"]);
    assert_eq!(
        s.refresh(&client, a.1["refresh_token"].as_str().unwrap())
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn as_09_a_stolen_token_replayed_inside_the_grace_window_cannot_start_a_chain_of_its_own() {
    // A 2 s window: the store keeps times to the second, and sixteen requests on a busy
    // machine may straddle one.
    let s = server(Duration::from_secs(2)).await;
    let client = s.register_public().await;
    let (code, _) = s.code(&client, REDIRECT).await;
    let (_, first) = s.exchange(&client, &code).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    // Sixteen presentations at once: all answered, all with the same next token.
    let answers = futures::future::join_all((0..16).map(|_| s.refresh(&client, &r1))).await;
    let next: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["refresh_token"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(next.len(), 1, "one chain");
    let r2 = next.into_iter().next().unwrap();
    // The victim rotates on; the thief, holding the same token, uses it later: reuse, and
    // the grant is gone for both.
    let (status, third) = s.refresh(&client, &r2).await;
    assert_eq!(status, 200);
    // (The store keeps times to the second.)
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (status, _) = s.refresh(&client, &r2).await;
    assert_eq!(status, 400);
    let (status, _) = s
        .refresh(&client, third["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 400, "the whole grant was revoked");
}

#[tokio::test]
async fn a_client_credentials_token_is_revoked_by_its_client() {
    let s = server(Duration::from_secs(30)).await;
    let secret = "m".repeat(40);
    let secret = secret.as_str();
    let id = &s
        .admit(
            json!({"client_name": "ci", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"}),
            secret,
        )
        .await;
    let id = id.as_str();
    let resource = format!("{}/mcp", s.base);
    let (_, token) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("resource", &resource),
        ])
        .await;
    let access = token["access_token"].as_str().unwrap();
    let introspect = |t: String| {
        let http = s.http.clone();
        let url = format!("{}/introspect", s.base);
        let (id, secret) = (id.to_owned(), secret.to_owned());
        async move {
            http.post(url)
                .form(&[
                    ("client_id", id.as_str()),
                    ("client_secret", secret.as_str()),
                    ("token", t.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(introspect(access.to_owned()).await["active"], true);
    let r = s
        .http
        .post(format!("{}/revoke", s.base))
        .form(&[
            ("client_id", id),
            ("client_secret", secret),
            ("token", access),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(introspect(access.to_owned()).await["active"], false);
    // offline_access means nothing here.
    let (status, body) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("resource", &resource),
            ("scope", "offline_access"),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
}

#[tokio::test]
async fn a_refresh_may_narrow_the_scope_but_never_widen_it() {
    let s = server(Duration::from_secs(30)).await;
    let client = s.register_public().await;
    let (code, _) = s.code(&client, REDIRECT).await;
    let (_, first) = s.exchange(&client, &code).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let (status, body) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", r1),
            ("scope", "mcp admin"),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
}

#[tokio::test]
async fn an_expired_code_and_an_unsupported_grant_are_refused() {
    let s = server(Duration::from_secs(30)).await;
    let client = s.register_public().await;
    let (status, body) = s
        .token(&[("grant_type", "password"), ("client_id", &client)])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, body) = s.exchange(&client, "no-such-code").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let r = s
        .http
        .post(format!("{}/token", s.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_grant_and_introspection_needs_a_confidential_client()
{
    let s = server(Duration::from_secs(30)).await;
    let client = s.register_public().await;
    let (code, grant) = s.code(&client, REDIRECT).await;
    let (_, first) = s.exchange(&client, &code).await;
    let refresh = first["refresh_token"].as_str().unwrap();
    let access = first["access_token"].as_str().unwrap();
    // A public client may not introspect.
    let r = s
        .http
        .post(format!("{}/introspect", s.base))
        .form(&[("client_id", client.as_str()), ("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A confidential client sees the token active, then inactive after revocation.
    let rs_secret = "r".repeat(40);
    let rs_id = s
        .admit(
            json!({"client_name": "resource server", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}),
            &rs_secret,
        )
        .await;
    let rs = json!({"client_id": rs_id, "client_secret": rs_secret});
    let introspect = |token: String| {
        let rs = rs.clone();
        let http = s.http.clone();
        let url = format!("{}/introspect", s.base);
        async move {
            http.post(url)
                .basic_auth(
                    rs["client_id"].as_str().unwrap(),
                    rs["client_secret"].as_str(),
                )
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let active = introspect(access.to_owned()).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["sub"], "alice");
    // A confidential client that registered itself learns nothing of another client's tokens.
    let stranger: Value = s
        .http
        .post(format!("{}/register", s.base))
        .json(&json!({"client_name": "stranger", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for token in [access, refresh] {
        let seen: Value = s
            .http
            .post(format!("{}/introspect", s.base))
            .basic_auth(
                stranger["client_id"].as_str().unwrap(),
                stranger["client_secret"].as_str(),
            )
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(seen, json!({"active": false}));
    }
    let r = s
        .http
        .post(format!("{}/revoke", s.base))
        .form(&[("client_id", client.as_str()), ("token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(s.issuer.revocations.is_grant_revoked(grant.as_str()));
    assert_eq!(introspect(access.to_owned()).await["active"], false);
    assert_eq!(introspect(refresh.to_owned()).await["active"], false);
    assert_eq!(introspect("garbage".to_owned()).await["active"], false);
    // Revoking an unknown token is still 200 (RFC 7009).
    let r = s
        .http
        .post(format!("{}/revoke", s.base))
        .form(&[("client_id", client.as_str()), ("token", "unknown")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn registrations_unused_for_too_long_are_removed_and_get_invalid_client() {
    let s = server(Duration::from_secs(30)).await;
    let idle = s.register_public().await;
    let (code, _) = s.code(&idle, REDIRECT).await;
    // (The store keeps times to the second.)
    tokio::time::sleep(Duration::from_millis(2200)).await;
    mcpgate_issuer::issuer::prune(&*s.issuer.store, Duration::from_secs(1)).await;
    let (status, body) = s.exchange(&idle, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // A client registered since is kept.
    let fresh = s.register_public().await;
    mcpgate_issuer::issuer::prune(&*s.issuer.store, Duration::from_secs(3600)).await;
    let (code, _) = s.code(&fresh, REDIRECT).await;
    assert_eq!(s.exchange(&fresh, &code).await.0, 200);
}

#[tokio::test]
async fn closed_registration_is_refused_and_not_advertised_and_floods_wait() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = Settings::new(&base, &format!("{base}/mcp")).unwrap();
    settings.open_registration = false;
    let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
    let issuer = Issuer::start(settings, store).await.unwrap();
    let app = issuer.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc.get("registration_endpoint").is_none());
    let r = http
        .post(format!("{base}/register"))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "access_denied");

    // Open registration: past the per-address allowance, 503 with Retry-After.
    let s = server(Duration::from_secs(30)).await;
    let mut last = None;
    for _ in 0..25 {
        let r = s
            .http
            .post(format!("{}/register", s.base))
            .json(&json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}))
            .send()
            .await
            .unwrap();
        if r.status() != 201 {
            last = Some(r);
            break;
        }
    }
    let r = last.expect("the allowance ends");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
}
