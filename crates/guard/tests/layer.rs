//! The bearer layer: what each kind of request gets back.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use axum::{Extension, Router};
use http_body_util::BodyExt;
use mcpgate_guard::{
    BearerAuthLayer, Principal, ProtectedResource, ResourceUrl, Scope, StaticTokens, Subject,
    TokenError,
};
use tower::ServiceExt;

const PRM: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

fn app(required: &[&str]) -> Router {
    let resource =
        ProtectedResource::new(ResourceUrl::parse("https://mcp.example.com/mcp").unwrap());
    let verifier = StaticTokens::new([
        (
            "reader".to_string(),
            Principal::builder(Subject::new("alice"))
                .scopes([Scope::new("read")])
                .build(),
        ),
        (
            "writer".to_string(),
            Principal::builder(Subject::new("bob"))
                .scopes([Scope::new("read"), Scope::new("write")])
                .build(),
        ),
    ]);
    Router::new()
        .route(
            "/mcp",
            post(|Extension(p): Extension<Arc<Principal>>| async move { p.subject.to_string() }),
        )
        .layer(
            BearerAuthLayer::new(verifier, &resource)
                .required_scopes(required.iter().map(|s| Scope::new(*s))),
        )
}

async fn send(app: Router, auth: &[&str], uri: &str) -> (StatusCode, Option<String>, String) {
    let mut req = Request::post(uri);
    for value in auth {
        req = req.header(header::AUTHORIZATION, *value);
    }
    let response = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    (status, challenge, body)
}

#[tokio::test]
async fn rs_21_valid_token_reaches_the_service_with_its_principal() {
    let (status, _, body) = send(app(&[]), &["Bearer reader"], "/mcp").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "alice");
}

#[tokio::test]
async fn rs_03_missing_token_gets_resource_metadata_challenge_without_error() {
    let (status, challenge, _) = send(app(&[]), &[], "/mcp").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.unwrap(),
        format!("Bearer resource_metadata=\"{PRM}\"")
    );
}

#[tokio::test]
async fn rs_22_missing_token_challenge_names_required_scopes() {
    let (_, challenge, _) = send(app(&["read"]), &[], "/mcp").await;
    assert_eq!(
        challenge.unwrap(),
        format!("Bearer resource_metadata=\"{PRM}\", scope=\"read\"")
    );
}

#[tokio::test]
async fn rs_28_basic_credentials_get_the_plain_challenge() {
    let (status, challenge, _) = send(app(&[]), &["Basic YWxpY2U6cHc="], "/mcp").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!challenge.unwrap().contains("error="));
}

#[tokio::test]
async fn rs_21_unknown_token_gets_invalid_token() {
    let (status, challenge, body) = send(app(&[]), &["Bearer guess"], "/mcp").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = challenge.unwrap();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains(PRM),
        "{challenge}"
    );
    assert!(
        body.contains("invalid_token") && !body.contains("guess"),
        "{body}"
    );
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let (status, _, _) = send(app(&[]), &["BEARER reader"], "/mcp").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn rs_23_missing_scope_gets_403_insufficient_scope() {
    let (status, challenge, _) = send(app(&["read", "write"]), &["Bearer reader"], "/mcp").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = challenge.unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"read write\""), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{PRM}\"")),
        "{challenge}"
    );
    let (status, _, _) = send(app(&["read", "write"]), &["Bearer writer"], "/mcp").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn rs_26_empty_bearer_is_invalid_request() {
    let (status, challenge, _) = send(app(&[]), &["Bearer "], "/mcp").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(challenge.unwrap().contains("error=\"invalid_request\""));
}

#[tokio::test]
async fn two_authorization_headers_are_invalid_request() {
    let (status, _, _) = send(app(&[]), &["Bearer reader", "Bearer writer"], "/mcp").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rs_27_token_in_query_string_is_refused() {
    let (status, _, _) = send(app(&[]), &[], "/mcp?access_token=reader").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = send(app(&[]), &["Bearer reader"], "/mcp?access_token=reader").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn verifier_unavailable_gets_503_not_401() {
    struct Down;
    impl mcpgate_guard::TokenVerifier for Down {
        fn verify<'a>(
            &'a self,
            _: &'a str,
        ) -> mcpgate_guard::BoxFuture<'a, mcpgate_guard::VerifyResult> {
            Box::pin(async { Err(TokenError::Unavailable("down".into()).into()) })
        }
    }
    let resource =
        ProtectedResource::new(ResourceUrl::parse("https://mcp.example.com/mcp").unwrap());
    let app = Router::new()
        .route("/mcp", post(|| async { "never" }))
        .layer(BearerAuthLayer::new(Down, &resource));
    let (status, challenge, body) = send(app, &["Bearer x"], "/mcp").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(challenge.is_none());
    assert!(!body.contains("never"));
}
