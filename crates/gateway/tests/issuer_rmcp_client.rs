//! rmcp's own OAuth client (rmcp 3.11, feature `auth`), unmodified, through the whole flow of
//! the built-in issuer against a quickstart-style gateway: `serve --auth issuer --dev
//! --dev-auto-approve` on 127.0.0.1 with a fresh data directory, in front of a test upstream.
//!
//! rmcp is given nothing but the gateway's `/mcp` URL. Its unauthenticated `initialize` gets
//! the 401, whose `WWW-Authenticate` names the protected resource metadata, which names this
//! issuer, whose metadata rmcp reads (CL-01). It registers (dynamic registration, or a client
//! ID metadata document: CL-04), builds the authorization URL (PKCE S256, `resource`, `state`:
//! CL-05) and exchanges the code, checking the `iss` of the response (AS-11). The test plays
//! the browser: it follows the redirects from the authorization URL by hand until the loopback
//! redirect URI, and hands that URL, with its code and state, to rmcp — nothing listens there.
//! Then rmcp's authorized transport (`AuthClient`) initializes, lists and calls tools through
//! the gateway and, once the short-lived access token has expired, refreshes it by itself
//! (AS-09).
//!
//! Client ID metadata documents: rmcp supports them (`AuthorizationRequest::
//! with_client_metadata_url`, used when the issuer advertises
//! `client_id_metadata_document_supported`), for an https URL only, as the specification
//! requires of a URL `client_id`. `--dev-allow-loopback-fetch` lets the gateway fetch a
//! document from loopback over http as well, but rmcp does not send an http one; so the
//! document is served over https on 127.0.0.1 by `mcpgate_testkit::tls`, and the gateway
//! trusts the test authority that signed the certificate through `SSL_CERT_FILE`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{Gateway, TempDir, args, free_port, text_of};
use mcpgate_testkit::tls::{HttpsDocuments, ca_file};
use mcpgate_testkit::{Mode, TestUpstream};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{
    AuthClient, AuthError, AuthorizationManager, AuthorizationRequest, OAuthState,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

/// `serve --auth issuer --dev --dev-auto-approve` with `extra` flags and `env`.
async fn issuer_gateway(
    upstream: &TestUpstream,
    dir: &TempDir,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Gateway {
    let mut flags = vec![
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
    flags.extend_from_slice(extra);
    Gateway::start(&flags, env).await
}

/// What rmcp meets first: its `initialize` without a token is refused, and the error carries
/// the challenge to start the authorization from.
async fn challenge_of(gw: &Gateway) -> String {
    let refused =
        ().serve(StreamableHttpClientTransport::from_uri(gw.mcp.clone()))
            .await
            .map(|_| ())
            .expect_err("initialize without a token is refused");
    assert!(refused.is_authorization_required(), "{refused}");
    let challenge = refused
        .auth_challenge()
        .unwrap_or_else(|| panic!("no challenge in {refused}"))
        .to_owned();
    // What every client should see: where the metadata is, the scope needed, and never
    // `offline_access` (RS-09, RS-22).
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!(
                "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
                gw.base
            ))
            && challenge.contains("scope=\"mcp\""),
        "{challenge}"
    );
    assert!(!challenge.contains("offline_access"), "RS-09: {challenge}");
    challenge
}

/// A loopback redirect URI on a port nobody listens on.
fn redirect_uri() -> String {
    format!("http://127.0.0.1:{}/callback", free_port())
}

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The browser: from the authorization URL, follows each redirect by hand until one leads to
/// `redirect_uri`, and returns that URL.
async fn browse(authorization_url: &str, redirect_uri: &str, gw: &Gateway) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut url = url::Url::parse(authorization_url).unwrap();
    for _ in 0..10 {
        let response = http.get(url.clone()).send().await.unwrap();
        let status = response.status();
        let Some(location) = response.headers().get("location").cloned() else {
            panic!(
                "{status} at {url} without a redirect: {}\n{}",
                response.text().await.unwrap_or_default(),
                gw.log()
            );
        };
        let next = url.join(location.to_str().unwrap()).unwrap();
        if next.as_str().starts_with(redirect_uri) {
            return next.into();
        }
        url = next;
    }
    panic!("more than 10 redirects from {authorization_url}");
}

/// The claims of a JWT (its signature is the gateway's business).
fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The tokens rmcp holds, as the token response it stored (`access_token`, `refresh_token`,
/// `expires_in`, `scope`).
async fn tokens_of(manager: &AuthorizationManager) -> Value {
    let (_, tokens) = manager.get_credentials().await.unwrap();
    serde_json::to_value(tokens.expect("rmcp holds tokens")).unwrap()
}

/// Starts rmcp's authorization with `request` (discovery from `challenge` included), plays the
/// browser, and hands the callback to rmcp. Returns the authorized manager and the
/// authorization URL rmcp built.
async fn sign_in(
    gw: &Gateway,
    request: AuthorizationRequest,
    redirect: &str,
) -> (AuthorizationManager, String) {
    let mut oauth = OAuthState::new(gw.mcp.as_str(), None).await.unwrap();
    oauth
        .start_authorization(request)
        .await
        .unwrap_or_else(|e| panic!("rmcp could not start the authorization: {e}\n{}", gw.log()));
    let authorization_url = oauth.get_authorization_url().await.unwrap();
    let asked = query(&authorization_url);
    assert!(
        authorization_url.starts_with(&format!("{}/authorize?", gw.base)),
        "{authorization_url}"
    );
    assert_eq!(asked["response_type"], "code");
    assert_eq!(asked["code_challenge_method"], "S256", "CL-05");
    assert_eq!(asked["code_challenge"].len(), 43, "CL-05");
    assert_eq!(
        asked["resource"], gw.mcp,
        "CL-05: the resource is the gateway's"
    );
    assert_eq!(asked["redirect_uri"], redirect);
    assert!(!asked["state"].is_empty(), "CL-05");
    // The challenge's scope, and `offline_access` because the issuer lists it (CL-02, CL-06).
    assert_eq!(asked["scope"], "mcp offline_access");

    let callback = browse(&authorization_url, redirect, gw).await;
    let answered = query(&callback);
    assert_eq!(answered["state"], asked["state"]);
    assert_eq!(answered["iss"], gw.base, "AS-11");
    oauth
        .handle_callback_url(&callback)
        .await
        .unwrap_or_else(|e| panic!("rmcp refused the callback or the code: {e}\n{}", gw.log()));
    let manager = oauth
        .into_authorization_manager()
        .expect("authorized after the callback");
    (manager, authorization_url)
}

/// rmcp's authorized Streamable HTTP transport, connected (legacy `initialize`).
async fn connect(
    auth: &AuthClient<reqwest::Client>,
    gw: &Gateway,
) -> RunningService<RoleClient, ()> {
    let transport = StreamableHttpClientTransport::with_client(
        auth.clone(),
        StreamableHttpClientTransportConfig::with_uri(gw.mcp.clone()),
    );
    ().serve(transport).await.unwrap_or_else(|e| {
        panic!(
            "rmcp's authorized client did not connect: {e}\n{}",
            gw.log()
        )
    })
}

async fn echo(client: &RunningService<RoleClient, ()>, message: &str) -> String {
    let result = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({ "message": message }))),
        )
        .await
        .unwrap();
    text_of(&result)
}

/// The issuer's answer to a refresh with `refresh_token`.
async fn refresh_at_token_endpoint(
    gw: &Gateway,
    client_id: &str,
    refresh_token: &str,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/token", gw.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
            ("resource", &gw.mcp),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn cl_01_cl_04_as_09_rmcp_discovers_registers_signs_in_calls_tools_and_refreshes_by_itself() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = TempDir::new("rmcp-oauth");
    let gw = issuer_gateway(
        &upstream,
        &dir,
        &[],
        &[
            ("MCPGATE_ISSUER_ACCESS_TOKEN_TTL", "4s"),
            ("MCPGATE_ISSUER_REFRESH_GRACE", "1s"),
        ],
    )
    .await;
    let challenge = challenge_of(&gw).await;
    let redirect = redirect_uri();
    let (manager, authorization_url) = sign_in(
        &gw,
        AuthorizationRequest::new(&redirect)
            .with_client_name("rmcp OAuth client (test)")
            .with_challenge(&challenge),
        &redirect,
    )
    .await;
    // No pre-registered client and no metadata document URL: rmcp registered at /register.
    let client_id = query(&authorization_url)["client_id"].clone();
    assert!(!client_id.starts_with("http"), "{client_id}");
    assert!(gw.log().contains("client registered"), "{}", gw.log());

    let first = tokens_of(&manager).await;
    let access = first["access_token"].as_str().unwrap().to_owned();
    let old_refresh = first["refresh_token"]
        .as_str()
        .expect("a refresh token for an MCP client")
        .to_owned();
    let claims = claims_of(&access);
    assert_eq!(
        claims["aud"], gw.mcp,
        "RS-31: the token is for the gateway's resource"
    );
    assert_eq!(claims["iss"], gw.base);
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["sub"], "dev-user");
    assert_eq!(first["scope"], "mcp offline_access");

    let auth = AuthClient::new(reqwest::Client::new(), manager);
    let client = connect(&auth, &gw).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"), "{tools:?}");
    assert_eq!(echo(&client, "hello from rmcp").await, "hello from rmcp");
    let seen_upstream = client
        .call_tool(CallToolRequestParams::new("headers"))
        .await
        .unwrap();
    assert!(
        !text_of(&seen_upstream).contains(&access),
        "RS-33: the client's token never reaches the upstream"
    );

    // Once the access token has expired, rmcp refreshes before the next call, by itself.
    let expiry = claims["exp"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(
        (expiry + 1).saturating_sub(now()) * 1000 + 200,
    ))
    .await;
    assert_eq!(
        echo(&client, "hello after a refresh").await,
        "hello after a refresh"
    );
    let refreshed = tokens_of(&*auth.auth_manager.lock().await).await;
    let new_access = refreshed["access_token"].as_str().unwrap();
    let new_refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_access, access, "a new access token");
    assert_ne!(new_refresh, old_refresh, "AS-09: the refresh token rotated");
    assert_eq!(
        claims_of(new_access)["aud"],
        gw.mcp,
        "AS-06: refresh keeps the resource"
    );
    let log = gw.log();
    assert!(log.contains("refresh token rotated"), "{log}");

    // Past the grace window, the rotated-out token is refused and its grant revoked: rmcp's
    // own refresh with the newest token is then refused too.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = refresh_at_token_endpoint(&gw, &client_id, &old_refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let rejected = auth.auth_manager.lock().await.refresh_token().await;
    assert!(
        matches!(rejected, Err(AuthError::TokenRefreshRejected(_))),
        "{rejected:?}"
    );
    let _ = client.cancel().await;
    let log = gw.log();
    assert!(
        !log.contains(&access) && !log.contains(&old_refresh) && !log.contains(&new_refresh),
        "no token in the log"
    );
}

#[tokio::test]
async fn as_12_rmcp_signs_in_with_a_client_id_metadata_document_the_gateway_fetches() {
    let documents = HttpsDocuments::start().await;
    let path = "/oauth/rmcp-client.json";
    let client_id = documents.url(path);
    let redirect = redirect_uri();
    documents.put(
        path,
        &json!({
            "client_id": client_id,
            "client_name": "rmcp OAuth client (CIMD test)",
            "redirect_uris": [redirect],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "native",
        }),
    );
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = TempDir::new("rmcp-cimd");
    let ca = ca_file();
    let gw = issuer_gateway(
        &upstream,
        &dir,
        &["--dev-allow-loopback-fetch"],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    )
    .await;
    let challenge = challenge_of(&gw).await;
    let (manager, authorization_url) = sign_in(
        &gw,
        AuthorizationRequest::new(&redirect)
            .with_client_metadata_url(&client_id)
            .with_client_name("must not register")
            .with_challenge(&challenge),
        &redirect,
    )
    .await;
    // The URL is the client_id; the gateway fetched the document instead of a registration.
    assert_eq!(query(&authorization_url)["client_id"], client_id);
    assert!(documents.fetches(path) >= 1, "{}", gw.log());
    let log = gw.log();
    assert!(!log.contains("client registered"), "{log}");
    assert!(log.contains("client metadata document fetched"), "{log}");

    let tokens = tokens_of(&manager).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let claims = claims_of(&access);
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["aud"], gw.mcp);
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    let auth = AuthClient::new(reqwest::Client::new(), manager);
    let client = connect(&auth, &gw).await;
    assert_eq!(
        echo(&client, "hello with a CIMD").await,
        "hello with a CIMD"
    );
    // The refresh is rmcp's too, as the same URL client.
    auth.auth_manager
        .lock()
        .await
        .refresh_token()
        .await
        .unwrap();
    let refreshed = tokens_of(&*auth.auth_manager.lock().await).await;
    assert_ne!(
        refreshed["refresh_token"].as_str().unwrap(),
        refresh,
        "AS-09"
    );
    assert_eq!(
        echo(&client, "and after a refresh").await,
        "and after a refresh"
    );
    let _ = client.cancel().await;
}
