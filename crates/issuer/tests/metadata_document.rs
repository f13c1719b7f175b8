//! Client ID Metadata Documents fetched from a real HTTP server on 127.0.0.1 (AS-12, AS-13).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use mcpgate_issuer::clients::metadata_document::{ClientIdUrl, Documents};
use mcpgate_issuer::clients::redirect_uri::AllowList;
use mcpgate_issuer::error::ErrorCode;
use serde_json::json;

struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn serve() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let doc = |base: String, path: &'static str, cache: &'static str| {
        move || {
            let base = base.clone();
            async move {
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
                if !cache.is_empty() {
                    headers.insert(header::CACHE_CONTROL, cache.parse().unwrap());
                }
                let body = json!({
                    "client_id": format!("{base}{path}"),
                    "client_name": "Test Client",
                    "redirect_uris": ["http://localhost/callback"],
                    "token_endpoint_auth_method": "none",
                });
                (headers, body.to_string())
            }
        }
    };
    let counted = {
        let hits = Arc::clone(&hits);
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let hits = Arc::clone(&hits);
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                next.run(request).await
            }
        }
    };
    let app = Router::new()
        .route("/client.json", get(doc(base.clone(), "/client.json", "")))
        .route("/nocache.json", get(doc(base.clone(), "/nocache.json", "no-store")))
        .route(
            "/other-id.json",
            get(|| async { json!({"client_id": "https://elsewhere.example/c.json", "client_name": "x", "redirect_uris": ["http://localhost/cb"]}).to_string() }),
        )
        .route(
            "/huge.json",
            get(|| async { format!("{{\"client_name\": \"{}\"}}", "a".repeat(100 * 1024)) }),
        )
        .route(
            "/moved.json",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/client.json")]).into_response() }),
        )
        .route("/not-json.json", get(|| async { "<html>hello</html>" }))
        .layer(axum::middleware::from_fn(counted));
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server { base, hits }
}

fn documents(allow_loopback: bool) -> Documents {
    Documents::new(AllowList::default(), allow_loopback).unwrap()
}

#[tokio::test]
async fn as_12_a_document_is_fetched_checked_and_cached() {
    let server = serve().await;
    let docs = documents(true);
    let id = docs
        .client_id(&format!("{}/client.json", server.base))
        .unwrap();
    let m = docs.get(&id).await.unwrap();
    assert_eq!(m.client_name.as_deref(), Some("Test Client"));
    assert!(m.is_public());
    // A port-less loopback redirect in the document matches any port.
    assert!(m.redirect_uri("http://localhost:51234/callback").is_some());
    docs.get(&id).await.unwrap();
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        1,
        "the second read is cached"
    );
}

#[tokio::test]
async fn a_document_that_says_no_store_is_fetched_each_time() {
    let server = serve().await;
    let docs = documents(true);
    let id = docs
        .client_id(&format!("{}/nocache.json", server.base))
        .unwrap();
    docs.get(&id).await.unwrap();
    docs.get(&id).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn as_12_a_document_naming_another_client_id_is_refused() {
    let server = serve().await;
    let docs = documents(true);
    let id = docs
        .client_id(&format!("{}/other-id.json", server.base))
        .unwrap();
    let e = docs.get(&id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidClient);
    assert!(e.description.contains("another client_id"), "{e}");
}

#[tokio::test]
async fn oversized_redirected_and_non_json_documents_are_refused() {
    let server = serve().await;
    let docs = documents(true);
    for path in ["/huge.json", "/moved.json", "/not-json.json"] {
        let id = docs.client_id(&format!("{}{path}", server.base)).unwrap();
        let e = docs.get(&id).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient, "{path}: {e}");
    }
    // The redirect was not followed.
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn as_13_a_document_on_a_loopback_address_is_not_fetched_outside_development() {
    let server = serve().await;
    let docs = documents(false);
    let port = server.base.rsplit(':').next().unwrap();
    // http is refused outright; https to a name that resolves to loopback is refused at the
    // resolved address, before anything is sent.
    assert!(
        docs.client_id(&format!("{}/client.json", server.base))
            .is_err()
    );
    for host in ["localhost", "127.0.0.1"] {
        let id = ClientIdUrl::parse(&format!("https://{host}:{port}/client.json"), false).unwrap();
        let e = docs.get(&id).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient, "{e}");
    }
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "the listener received nothing"
    );
}

/// Round 6, F11: a document that could not be used is not fetched again for a while, the
/// caller is not told what the network said, and one host is fetched from a bounded number
/// of times a minute.
#[tokio::test]
async fn failures_are_remembered_said_plainly_and_fetches_per_host_are_bounded() {
    let server = serve().await;
    let docs = documents(true);
    let missing = docs
        .client_id(&format!("{}/missing.json", server.base))
        .unwrap();
    for _ in 0..5 {
        let e = docs.get(&missing).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        assert!(e.description.contains("the server's log says why"), "{e}");
        assert!(!e.description.contains("404"), "{e}");
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "fetched once");
    // Many different documents of one host: the host is not flooded.
    let mut refused = 0;
    for i in 0..(mcpgate_issuer::clients::metadata_document::FETCHES_PER_HOST_PER_MINUTE + 10) {
        let id = docs
            .client_id(&format!("{}/nx{i}.json", server.base))
            .unwrap();
        if docs.get(&id).await.unwrap_err().code == ErrorCode::TemporarilyUnavailable {
            refused += 1;
        }
    }
    assert!(refused >= 10, "{refused}");
    assert!(
        server.hits.load(Ordering::SeqCst)
            <= mcpgate_issuer::clients::metadata_document::FETCHES_PER_HOST_PER_MINUTE as usize + 1
    );
}
