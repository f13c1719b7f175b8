//! `private_key_jwt` (RFC 7523 §2.2) over real HTTP on 127.0.0.1: client credentials signed
//! with the client's own key, and every way an assertion is refused (replayed `jti`, wrong
//! `aud`, expired, too long-lived, issued in the future, another client's `sub`, another key,
//! `alg: none`, a shared-secret algorithm). And a client ID metadata document that declares
//! `private_key_jwt` and offers `none` as well, as ChatGPT's does: it may use either.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcpgate_guard::{ClientId, ResourceUrl, Scopes, Subject};
use mcpgate_issuer::clients::configured::StaticClient;
use mcpgate_issuer::clients::redirect_uri::AllowList;
use mcpgate_issuer::issuer::{Issuer, Settings};
use mcpgate_issuer::pkce::challenge_of;
use mcpgate_issuer::scopes::Catalogue;
use mcpgate_issuer::secret::generate_token;
use mcpgate_issuer::store::sqlite::SqliteStore;
use mcpgate_issuer::store::{AuthorizationCode, ClientKind, ClientRecord, Grant, GrantId};
use mcpgate_issuer::token::authorization_code::code_hash;
use serde_json::{Value, json};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// A client's key pair, and its public half as a JWK Set.
struct ClientKey {
    pkcs8: Vec<u8>,
    jwks: Value,
}

impl ClientKey {
    fn new(kid: &str) -> ClientKey {
        let pkcs8 = Ed25519KeyPair::generate()
            .unwrap()
            .to_pkcs8v1()
            .unwrap()
            .as_ref()
            .to_vec();
        let public = Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
        let x = URL_SAFE_NO_PAD.encode(public.public_key().as_ref());
        ClientKey {
            pkcs8,
            jwks: json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}]}),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = self.jwks["keys"][0]["kid"].as_str().map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.pkcs8)).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims a well-behaved client sends: its id as `iss` and `sub`, the token endpoint as `aud`.
fn claims(client_id: &str, audience: &str) -> Value {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now(),
        "exp": now() + 120,
        "jti": generate_token(),
    })
}

struct Server {
    base: String,
    issuer: Arc<Issuer>,
    http: reqwest::Client,
}

async fn server() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = Settings::new(&base, &format!("{base}/mcp")).unwrap();
    settings.scopes = Catalogue::new(
        [("mcp", "Use it"), ("read", "Read"), ("admin", "Administer")],
        ["mcp"],
    )
    .unwrap();
    // The metadata documents of these tests are served from 127.0.0.1.
    settings.allow_loopback_fetch = true;
    let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
    let issuer = Issuer::start(settings, store).await.unwrap();
    let app = issuer.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base,
        issuer,
        http: reqwest::Client::new(),
    }
}

impl Server {
    fn token_endpoint(&self) -> String {
        format!("{}/token", self.base)
    }

    /// Admits a machine client as an operator does (`mcpgate clients add`): a static client
    /// with `members`, and `secret` for the secret methods; its id.
    async fn admit(&self, members: Value, secret: Option<&str>) -> String {
        let id = format!("machine-{}", &generate_token()[..8]);
        let client = StaticClient::new(
            &id,
            None,
            members.as_object().unwrap().clone(),
            secret,
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

    async fn register_machine(&self, key: &ClientKey) -> String {
        self.admit(
            json!({
                "client_name": "nightly job",
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": key.jwks,
            }),
            None,
        )
        .await
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(self.token_endpoint())
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["cache-control"], "no-store");
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn client_credentials(&self, assertion: &str) -> (u16, Value) {
        let resource = format!("{}/mcp", self.base);
        self.token(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("resource", &resource),
        ])
        .await
    }
}

fn refused(answer: (u16, Value), why: &str) {
    assert_eq!(answer.0, 401, "{why}: {}", answer.1);
    assert_eq!(answer.1["error"], "invalid_client", "{why}: {}", answer.1);
    assert!(answer.1.get("access_token").is_none(), "{why}");
}

#[tokio::test]
async fn client_credentials_with_a_signed_assertion_and_its_replay_refused() {
    let s = server().await;
    let key = ClientKey::new("k1");
    let id = s.register_machine(&key).await;
    let assertion = key.sign(&claims(&id, &s.token_endpoint()));
    let (status, body) = s.client_credentials(&assertion).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    // The token's subject is the client itself.
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["sub"], id.as_str());
    assert_eq!(payload["client_id"], id.as_str());
    assert_eq!(payload["aud"], format!("{}/mcp", s.base));

    refused(s.client_credentials(&assertion).await, "a replayed jti");
    // The issuer identifier is an audience too (RFC 7523 §3).
    let by_issuer = key.sign(&claims(&id, &s.base));
    assert_eq!(s.client_credentials(&by_issuer).await.0, 200);
}

#[tokio::test]
async fn every_bad_assertion_is_invalid_client() {
    let s = server().await;
    let key = ClientKey::new("k1");
    let id = s.register_machine(&key).await;
    let endpoint = s.token_endpoint();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims(&id, &endpoint);
        change(&mut c);
        c
    };

    let wrong_aud = key.sign(&with(&|c| {
        c["aud"] = json!("https://elsewhere.example/token")
    }));
    refused(s.client_credentials(&wrong_aud).await, "wrong aud");
    let expired = key.sign(&with(&|c| {
        c["iat"] = json!(now() - 900);
        c["exp"] = json!(now() - 600);
    }));
    refused(s.client_credentials(&expired).await, "expired");
    let long_lived = key.sign(&with(&|c| c["exp"] = json!(now() + 3600)));
    refused(s.client_credentials(&long_lived).await, "exp an hour ahead");
    let future = key.sign(&with(&|c| c["iat"] = json!(now() + 300)));
    refused(s.client_credentials(&future).await, "iat in the future");
    let no_jti = key.sign(&with(&|c| {
        c.as_object_mut().unwrap().remove("jti");
    }));
    refused(s.client_credentials(&no_jti).await, "no jti");
    let no_exp = key.sign(&with(&|c| {
        c.as_object_mut().unwrap().remove("exp");
    }));
    refused(s.client_credentials(&no_exp).await, "no exp");
    let wrong_iss = key.sign(&with(&|c| c["iss"] = json!("someone-else")));
    refused(s.client_credentials(&wrong_iss).await, "iss not the client");

    // Signed by a key the client never published, with the published kid.
    let stranger = ClientKey::new("k1");
    refused(
        s.client_credentials(&stranger.sign(&claims(&id, &endpoint)))
            .await,
        "another key",
    );
    // Another registered client's sub, signed with this client's key.
    let other = s.register_machine(&ClientKey::new("k2")).await;
    let mut c = claims(&other, &endpoint);
    c["iss"] = json!(id);
    refused(
        s.client_credentials(&key.sign(&c)).await,
        "sub of another client",
    );

    // alg none, and HS256 keyed with the public key (algorithm confusion).
    let body = URL_SAFE_NO_PAD.encode(claims(&id, &endpoint).to_string());
    let none = format!(
        "{}.{body}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );
    refused(s.client_credentials(&none).await, "alg none");
    let x = key.jwks["keys"][0]["x"].as_str().unwrap();
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&id, &endpoint),
        &EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    refused(s.client_credentials(&hs).await, "HS256 with the public key");
    refused(s.client_credentials("not.a.jwt").await, "malformed");
    refused(s.client_credentials(&"a".repeat(10_000)).await, "oversized");

    // Nothing of the refusals spent the jti of a good assertion made before them.
    let good = key.sign(&claims(&id, &endpoint));
    assert_eq!(s.client_credentials(&good).await.0, 200);
}

#[tokio::test]
async fn a_client_that_registered_a_secret_cannot_switch_to_an_assertion() {
    let s = server().await;
    let id = &s
        .admit(
            json!({"client_name": "ci", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}),
            Some(&"s".repeat(40)),
        )
        .await;
    let key = ClientKey::new("k1");
    refused(
        s.client_credentials(&key.sign(&claims(id, &s.token_endpoint())))
            .await,
        "an assertion from a secret client",
    );
    // And a key-holding client cannot go without authentication.
    let machine = s.register_machine(&key).await;
    let resource = format!("{}/mcp", s.base);
    let (status, body) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &machine),
            ("resource", &resource),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

/// Serves one client ID metadata document shaped like ChatGPT's: `private_key_jwt` declared,
/// `none` offered too, keys inline.
async fn serve_document(key: &ClientKey) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/oauth/client.json",
        listener.local_addr().unwrap()
    );
    let doc = json!({
        "client_id": url,
        "client_name": "ChatGPT-like",
        "client_uri": "https://chatgpt.example/",
        "redirect_uris": ["http://127.0.0.1:5000/connector/oauth/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg": "EdDSA",
        "jwks": key.jwks,
    })
    .to_string();
    let app = Router::new().route(
        "/oauth/client.json",
        get(move || {
            let doc = doc.clone();
            async move { ([("content-type", "application/json")], doc) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

impl Server {
    /// A code for `client_id` as `/authorize` leaves it after approval.
    async fn code_for(&self, client_id: &str, redirect: &str) -> String {
        let id = ClientId::new(client_id);
        if self.issuer.store.get_client(&id).await.unwrap().is_none() {
            self.issuer
                .store
                .insert_client(&ClientRecord {
                    client_id: id.clone(),
                    secret_hash: None,
                    registration_token_hash: None,
                    kind: ClientKind::MetadataDocument,
                    metadata: json!({}),
                    created_at: SystemTime::now(),
                    last_used_at: None,
                })
                .await
                .unwrap();
        }
        let code = generate_token();
        let grant = GrantId::generate();
        let now = SystemTime::now();
        let resource = ResourceUrl::parse(&format!("{}/mcp", self.base)).unwrap();
        self.issuer
            .store
            .create_grant(&Grant {
                id: grant.clone(),
                subject: Subject::new("alice"),
                client_id: id.clone(),
                scopes: Scopes::from_space_delimited("mcp"),
                resource: Some(resource.clone()),
                created_at: now,
                revoked_at: None,
            })
            .await
            .unwrap();
        self.issuer
            .store
            .insert_code(&AuthorizationCode {
                code_hash: code_hash(client_id, redirect, &code),
                client_id: id,
                redirect_uri: redirect.to_owned(),
                code_challenge: challenge_of(VERIFIER),
                resource: Some(resource),
                scopes: Scopes::from_space_delimited("mcp"),
                subject: Subject::new("alice"),
                grant_id: grant,
                expires_at: now + Duration::from_secs(60),
            })
            .await
            .unwrap();
        code
    }
}

#[tokio::test]
async fn a_metadata_document_offering_none_and_private_key_jwt_may_use_either() {
    let s = server().await;
    let key = ClientKey::new("chatgpt-1");
    let client_id = serve_document(&key).await;
    let redirect = "http://127.0.0.1:5000/connector/oauth/cb";

    // Signed, as the document declares.
    let code = s.code_for(&client_id, redirect).await;
    let assertion = key.sign(&claims(&client_id, &s.token_endpoint()));
    let (status, body) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    // Public, as it also offers: PKCE alone.
    let code = s.code_for(&client_id, redirect).await;
    let (status, body) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(status, 200, "{body}");

    // A secret is not among its methods; a stranger's signature is refused.
    let code = s.code_for(&client_id, redirect).await;
    let (status, body) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("client_secret", "guess"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let stranger = ClientKey::new("chatgpt-1");
    refused(
        s.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_assertion_type", ASSERTION_TYPE),
            (
                "client_assertion",
                &stranger.sign(&claims(&client_id, &s.token_endpoint())),
            ),
        ])
        .await,
        "a stranger's signature",
    );
    // The refused attempts consumed neither the code nor the refresh token.
    let (status, body) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", &refresh),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn registrations_and_metadata_documents_cannot_take_the_client_credentials_grant() {
    let s = server().await;
    let key = ClientKey::new("k1");
    // Open registration lets anyone become a client: not one without a user behind it.
    for method in [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ] {
        let r = s
            .http
            .post(format!("{}/register", s.base))
            .json(&json!({"client_name": "m2m", "grant_types": ["client_credentials"], "token_endpoint_auth_method": method, "jwks": key.jwks}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{method}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client_metadata", "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("clients add"),
            "{body}"
        );
    }
    // A machine client whose scopes were limited when it was admitted gets no more.
    let id = s
        .admit(
            json!({"client_name": "ci", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "scope": "read"}),
            Some(&"s".repeat(40)),
        )
        .await;
    let resource = format!("{}/mcp", s.base);
    let secret = "s".repeat(40);
    let ask = |scope: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", id.clone()),
            ("client_secret", secret.clone()),
            ("resource", resource.clone()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope.to_owned()));
        }
        form
    };
    for (scope, expected) in [(None, 200), (Some("read"), 200), (Some("read admin"), 400)] {
        let form = ask(scope);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = s.token(&form).await;
        assert_eq!(status, expected, "{scope:?}: {body}");
        if status == 200 {
            assert_eq!(body["scope"], "read", "{body}");
        } else {
            assert_eq!(body["error"], "invalid_scope", "{body}");
        }
    }
}
