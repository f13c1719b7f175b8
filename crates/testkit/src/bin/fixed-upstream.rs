//! A trivial "MCP server" for load benchmarks: every POST gets the same small JSON-RPC
//! result, so that what a benchmark measures in front of it is the gateway's own cost.
//!
//! `fixed-upstream [--listen 127.0.0.1:PORT]` prints `listening on http://ADDR/mcp`.

use axum::Router;
use axum::http::header;
use axum::routing::post;

const REPLY: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:0".to_owned();
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            listen = args.next().expect("--listen needs an address");
        }
    }
    let app = Router::new().route(
        "/mcp",
        post(|| async { ([(header::CONTENT_TYPE, "application/json")], REPLY) }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!("listening on http://{}/mcp", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
