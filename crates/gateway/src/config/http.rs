//! `[http]`: what the gateway accepts from clients — hosts and origins, body sizes, read
//! timeouts, connection limits, trusted proxies. Built into [`HttpPlan`].

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::settings::{Setting, s};
use super::values;
use super::{Config, Problems};
use crate::dns_rebinding::HostPolicy;
use crate::listener::{self, Limits};
use crate::ratelimit::Rate;

/// Downstream HTTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Extra accepted `Host` values (the public URL's host is always accepted).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub allowed_hosts: Vec<String>,
    /// Extra accepted `Origin` values (the public URL's origin is always accepted).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub allowed_origins: Vec<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Bytes of request bodies held at once by all requests together.
    pub max_body_bytes_in_flight: usize,
    /// Time for a request head to arrive (and most time a kept-alive connection may sit idle).
    #[serde(with = "values::duration")]
    pub header_timeout: Duration,
    /// Time for a whole request body to arrive; also the longest a client may go without
    /// reading any of an answer the gateway is sending it (then the connection is closed).
    #[serde(with = "values::duration")]
    pub body_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address.
    pub max_connections_per_address: usize,
    /// How often one address may be refused for lack of valid credentials (`N/minute`, or
    /// `off`) before it is answered 429 until the allowance refills.
    pub unauthenticated_per_address: String,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client
    /// address for per-address limits.
    #[serde(deserialize_with = "values::list::deserialize")]
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            max_body_bytes_in_flight: 256 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_address: 64,
            unauthenticated_per_address: "120/minute".into(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// This section's settings.
pub(super) const SETTINGS: &[Setting] = &[
    s(
        "http.allowed_hosts",
        None,
        "list",
        "Extra accepted `Host` header values (`host` or `host:port`). The public URL's host is always accepted, and loopback names when listening on loopback. Others get 403 (DNS-rebinding protection).",
    ),
    s(
        "http.allowed_origins",
        None,
        "list",
        "Extra accepted `Origin` values (e.g. `https://app.example.com`). The public URL's origin is always accepted; requests without `Origin` are not affected.",
    ),
    s(
        "http.max_body_bytes",
        None,
        "integer",
        "Largest request body accepted (413 beyond).",
    ),
    s(
        "http.max_body_bytes_in_flight",
        None,
        "integer",
        "Bytes of request bodies all requests together may hold at once (bodies arriving on many connections, or many HTTP/2 streams of one); beyond it: 503 with Retry-After.",
    ),
    s(
        "http.header_timeout",
        None,
        "duration",
        "Time for a request's head to arrive, and the longest a kept-alive connection may sit idle; then the connection is closed (slow-header attacks).",
    ),
    s(
        "http.body_timeout",
        None,
        "duration",
        "Time for a whole request body to arrive (408 beyond); also the longest a client may go without reading any of an answer being sent to it (then the connection is closed, and what the answer held of the replies' budget is freed).",
    ),
    s(
        "http.max_connections",
        None,
        "integer",
        "Most client connections open at once; beyond it new ones get 503 and are closed. Never more than the process's open-file limit allows.",
    ),
    s(
        "http.max_connections_per_address",
        None,
        "integer",
        "Most connections open at once from one client address (see `http.trusted_proxies`); beyond it: 429.",
    ),
    s(
        "http.unauthenticated_per_address",
        None,
        "`N/second`, `N/minute`, `N/hour`, `off`",
        "How often one client address may be refused for missing or invalid credentials (401) before it is answered 429 with Retry-After until its allowance refills.",
    ),
    s(
        "http.trusted_proxies",
        None,
        "list of addresses or CIDR ranges",
        "Reverse proxies in front of the gateway: for a connection from one of them, the client address (for per-address limits and the audit log) is the last `X-Forwarded-For` entry that is not itself a trusted proxy.",
    ),
];

/// Downstream HTTP, built.
pub struct HttpPlan {
    /// Accepted `Host` and `Origin` values (DNS-rebinding protection).
    pub hosts: HostPolicy,
    /// Limits of the listener: connections, per address, request head time.
    pub limits: Limits,
    /// Refusals for lack of credentials one address may collect before it waits; `None`: off.
    pub unauthenticated: Option<Rate>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Bytes of request bodies held at once by all requests together.
    pub max_body_bytes_in_flight: usize,
    /// Time for a whole request body.
    pub body_timeout: Duration,
}

pub(super) fn build(config: &Config, p: &mut Problems) -> Option<HttpPlan> {
    let http = &config.http;
    let before = p.len();
    for origin in &http.allowed_origins {
        match url::Url::parse(origin) {
            Ok(u)
                if origin != "null"
                    && u.host_str().is_some()
                    && matches!(u.scheme(), "http" | "https") => {}
            _ if origin == "null" => {}
            _ => p.push(
                "http.allowed_origins",
                format!("`{origin}` is not an origin such as https://app.example.com"),
            ),
        }
    }
    for host in &http.allowed_hosts {
        if host.is_empty() || host.contains(['/', ' ']) {
            p.push(
                "http.allowed_hosts",
                format!("`{host}` is not a host or host:port"),
            );
        }
    }
    let unauthenticated = match http.unauthenticated_per_address.as_str() {
        "off" => None,
        text => match Rate::parse(text) {
            Ok(rate) => Some(rate),
            Err(problem) => {
                p.push("http.unauthenticated_per_address", problem);
                None
            }
        },
    };
    let mut trusted = Vec::new();
    for proxy in &http.trusted_proxies {
        match listener::parse_net(proxy) {
            Some(net) => trusted.push(net),
            None => p.push(
                "http.trusted_proxies",
                format!("`{proxy}` is not an IP address or CIDR range (10.0.0.0/8, ::1)"),
            ),
        }
    }
    for (key, value) in [
        ("http.max_connections", http.max_connections),
        (
            "http.max_connections_per_address",
            http.max_connections_per_address,
        ),
        (
            "http.max_body_bytes_in_flight",
            http.max_body_bytes_in_flight,
        ),
    ] {
        if value == 0 {
            p.push(key, "must be greater than zero");
        }
    }
    p.positive_duration("http.header_timeout", http.header_timeout);
    p.positive_duration("http.body_timeout", http.body_timeout);
    if http.max_body_bytes_in_flight < http.max_body_bytes {
        p.push(
            "http.max_body_bytes_in_flight",
            format!(
                "must be at least http.max_body_bytes ({}), or no body of the largest size could be read",
                http.max_body_bytes
            ),
        );
    }
    if http.max_body_bytes == 0 {
        p.push("http.max_body_bytes", "must be greater than zero");
    }
    if p.len() > before {
        return None;
    }
    Some(HttpPlan {
        hosts: HostPolicy::new(
            &config.public_url(),
            config.listen.ip().is_loopback(),
            &http.allowed_hosts,
            &http.allowed_origins,
        ),
        limits: Limits {
            header_timeout: http.header_timeout,
            write_timeout: http.body_timeout,
            max_connections: listener::connection_ceiling(http.max_connections),
            per_address: http.max_connections_per_address,
            trusted: Arc::new(trusted),
        },
        unauthenticated,
        max_body_bytes: http.max_body_bytes,
        max_body_bytes_in_flight: http.max_body_bytes_in_flight,
        body_timeout: http.body_timeout,
    })
}
