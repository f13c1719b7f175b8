//! The bounded fetch: destinations checked on the address connected to, size, time and
//! redirect limits, against a real server on 127.0.0.1.
#![cfg(any(feature = "jwt", feature = "introspection"))]

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use mcpgate_guard::fetch::{Destinations, FetchError, FetchRules, Fetcher};
use url::Url;

async fn server() -> String {
    let app = Router::new()
        .route("/doc", get(|| async { r#"{"ok":true}"# }))
        .route("/big", get(|| async { "x".repeat(2 * 1024 * 1024) }))
        .route("/redirect", get(|| async { Redirect::temporary("/doc") }))
        .route(
            "/missing",
            get(|| async { StatusCode::NOT_FOUND.into_response() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("127.0.0.1:{port}")
}

fn fetcher(destinations: Destinations) -> Fetcher {
    Fetcher::new(FetchRules {
        destinations,
        timeout: Duration::from_millis(800),
        ..FetchRules::default()
    })
    .unwrap()
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

#[tokio::test]
async fn public_only_refuses_loopback_literals_and_names_that_resolve_to_it() {
    let at = server().await;
    let port = at.rsplit(':').next().unwrap();
    let f = fetcher(Destinations::Public);
    for u in [
        format!("http://{at}/doc"),
        format!("https://{at}/doc"),
        format!("https://[::1]:{port}/doc"),
        format!("https://[::ffff:127.0.0.1]:{port}/doc"),
        format!("https://0177.0.0.1:{port}/doc"),
        "file:///etc/passwd".into(),
    ] {
        let e = f.get(&url(&u), "application/json").await.unwrap_err();
        assert!(matches!(e, FetchError::Refused(_)), "{u}: {e}");
    }
    // A name is resolved by the fetcher, and a loopback answer is never connected to.
    let e = f
        .get(
            &url(&format!("https://localhost:{port}/doc")),
            "application/json",
        )
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Failed(_)), "{e}");
    assert!(e.to_string().contains("may not be fetched from"), "{e}");
}

#[tokio::test]
async fn size_time_redirect_and_status_are_bounded() {
    let at = server().await;
    let f = fetcher(Destinations::PublicAndLoopback);
    let body = f
        .get(&url(&format!("http://{at}/doc")), "application/json")
        .await
        .unwrap();
    assert_eq!(body, br#"{"ok":true}"#);
    let port = at.rsplit(':').next().unwrap();
    assert!(
        f.get(&url(&format!("http://localhost:{port}/doc")), "*/*")
            .await
            .is_ok()
    );
    assert_eq!(
        f.get(&url(&format!("http://{at}/big")), "*/*").await,
        Err(FetchError::TooLarge(1024 * 1024))
    );
    let e = f
        .get(&url(&format!("http://{at}/redirect")), "*/*")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("redirect"), "{e}");
    assert_eq!(
        f.get(&url(&format!("http://{at}/missing")), "*/*").await,
        Err(FetchError::Status(404))
    );
    let started = std::time::Instant::now();
    let e = f
        .get(&url(&format!("http://{at}/slow")), "*/*")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Even loopback-allowed fetchers refuse other private addresses over http.
    assert!(matches!(
        f.get(&url("http://10.0.0.1/doc"), "*/*").await,
        Err(FetchError::Refused(_))
    ));
}

#[tokio::test]
async fn redirects_when_asked_are_checked_hop_by_hop() {
    let at = server().await;
    let f = Fetcher::new(FetchRules {
        destinations: Destinations::PublicAndLoopback,
        max_redirects: 2,
        ..FetchRules::default()
    })
    .unwrap();
    assert!(
        f.get(&url(&format!("http://{at}/redirect")), "*/*")
            .await
            .is_ok()
    );
}
