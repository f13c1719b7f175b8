//! Documents served over https on 127.0.0.1, for what the gateway fetches from an https URL
//! (client ID metadata documents: clients refuse a `client_id` URL that is not https).
//!
//! The certificate is signed by the test authority in `tls/ca.pem`; a process started with
//! `SSL_CERT_FILE` set to [`ca_file`] trusts it (rustls-platform-verifier reads the roots from
//! there on Linux), nothing else does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CERT: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tls/localhost.pem"));
const KEY: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tls/localhost.key"));

/// The test certificate authority, a PEM file for `SSL_CERT_FILE`.
pub fn ca_file() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tls/ca.pem"))
}

#[derive(Default)]
struct Served {
    documents: HashMap<String, String>,
    fetches: HashMap<String, usize>,
}

/// An https server on 127.0.0.1 answering `GET PATH` with the JSON document put there
/// (`Cache-Control: no-store`), 404 otherwise. It stops when the test's runtime does.
#[derive(Clone)]
pub struct HttpsDocuments {
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    served: Arc<Mutex<Served>>,
}

impl HttpsDocuments {
    /// Binds a free port and starts serving (nothing yet).
    pub async fn start() -> HttpsDocuments {
        let certs = vec![CertificateDer::from_pem_slice(CERT).expect("test certificate")];
        let key = PrivateKeyDer::from_pem_slice(KEY).expect("test key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("test certificate and key match");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        let served = Arc::new(Mutex::new(Served::default()));
        let state = Arc::clone(&served);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    // A client that gives up on the handshake is its own business.
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = answer(tls, &state).await;
                    }
                });
            }
        });
        HttpsDocuments { base, served }
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Serves `document` at `path` from now on.
    pub fn put(&self, path: &str, document: &serde_json::Value) {
        self.served
            .lock()
            .unwrap()
            .documents
            .insert(path.to_owned(), document.to_string());
    }

    /// How many times `path` was asked for.
    pub fn fetches(&self, path: &str) -> usize {
        let served = self.served.lock().unwrap();
        served.fetches.get(path).copied().unwrap_or(0)
    }
}

/// Reads one request head and answers it; the connection is closed after.
async fn answer(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    state: &Mutex<Served>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut request_line = head.lines().next().unwrap_or_default().split(' ');
    let (method, path) = (request_line.next(), request_line.next().unwrap_or_default());
    let document = {
        let mut served = state.lock().unwrap();
        *served.fetches.entry(path.to_owned()).or_default() += 1;
        served.documents.get(path).cloned()
    };
    let response = match (method, document) {
        (Some("GET"), Some(body)) => format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
        _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
    };
    tls.write_all(response.as_bytes()).await?;
    tls.shutdown().await
}
