//! `Host` and `Origin` validation (DNS-rebinding protection), the outermost check: it runs
//! before authentication, so that a browser page on another site can never reach the MCP
//! endpoint whatever the auth mode (MCP transports: servers MUST validate `Origin`; a bad one
//! gets 403).
//!
//! Accepted `Host`: the public URL's authority; loopback names (any port) when the gateway
//! listens on loopback; `http.allowed_hosts`. Accepted `Origin` (when present): the public
//! URL's origin; loopback origins when the public URL is loopback; `http.allowed_origins`.

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Response, StatusCode, header};
use url::Url;

use crate::jsonrpc::text_response;

/// The allow-lists.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    hosts: Vec<(String, Option<u16>)>,
    loopback_hosts: bool,
    origins: Vec<String>,
    loopback_origins: bool,
}

impl HostPolicy {
    /// Builds the policy for a gateway reached at `public_url`.
    pub fn new(
        public_url: &Url,
        listen_loopback: bool,
        extra_hosts: &[String],
        extra_origins: &[String],
    ) -> Self {
        let mut hosts = Vec::new();
        if let Some(host) = public_url.host_str() {
            hosts.push((
                host.to_ascii_lowercase(),
                public_url.port_or_known_default(),
            ));
        }
        for entry in extra_hosts {
            let (name, port) = split_host_port_ref(entry);
            hosts.push((name.to_ascii_lowercase(), port));
        }
        let mut origins = vec![public_url.origin().ascii_serialization()];
        origins.extend(extra_origins.iter().map(|o| normalize_origin(o)));
        let public_is_loopback = public_url.host_str().is_some_and(is_loopback_name);
        HostPolicy {
            hosts,
            loopback_hosts: listen_loopback,
            origins,
            loopback_origins: public_is_loopback,
        }
    }

    /// Runs on every request: no allocation.
    fn host_allowed(&self, host: &str) -> bool {
        let (name, port) = split_host_port_ref(host);
        if self.loopback_hosts && is_loopback_name(name) {
            return true;
        }
        self.hosts.iter().any(|(allowed, allowed_port)| {
            allowed.eq_ignore_ascii_case(name)
                && match (allowed_port, port) {
                    (None, _) => true,
                    (Some(a), Some(p)) => *a == p,
                    // No port in Host: the scheme's default, whichever scheme the client used.
                    (Some(a), None) => *a == 80 || *a == 443,
                }
        })
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = normalize_origin(origin);
        if self.origins.contains(&origin) {
            return true;
        }
        self.loopback_origins
            && Url::parse(&origin).ok().is_some_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(is_loopback_name)
            })
    }

    /// Checks a request's headers.
    pub fn check(
        &self,
        headers: &HeaderMap,
        uri_authority: Option<&str>,
    ) -> Result<(), &'static str> {
        self.check_host(headers, uri_authority)?;
        let mut origins = headers.get_all(header::ORIGIN).iter();
        if let Some(origin) = origins.next() {
            let ok =
                origins.next().is_none() && origin.to_str().is_ok_and(|o| self.origin_allowed(o));
            if !ok {
                return Err("Forbidden: Origin is not allowed");
            }
        }
        Ok(())
    }

    /// Checks a request's `Host` only (for endpoints that browsers call from other origins
    /// by design: the authorization server's token, registration and metadata endpoints).
    pub fn check_host(
        &self,
        headers: &HeaderMap,
        uri_authority: Option<&str>,
    ) -> Result<(), &'static str> {
        let mut hosts = headers.get_all(header::HOST).iter();
        let first = hosts.next();
        if hosts.next().is_some() {
            return Err(TWO_HOSTS);
        }
        let header_host = first.and_then(|h| h.to_str().ok());
        if let (Some(h), Some(a)) = (header_host, uri_authority)
            && !h.eq_ignore_ascii_case(a)
        {
            return Err(TWO_HOSTS);
        }
        let host = header_host.or(uri_authority);
        match host {
            Some(h) if self.host_allowed(h) => Ok(()),
            _ => Err("Forbidden: Host header is not allowed"),
        }
    }
}

/// Two hosts named (two `Host` headers, or a `Host` that differs from the request target's
/// authority): which one counts would depend on who reads it.
const TWO_HOSTS: &str = "Bad Request: the request names more than one host";

fn normalize_origin(origin: &str) -> String {
    if origin == "null" {
        return origin.to_owned();
    }
    Url::parse(origin)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| origin.to_owned())
}

fn split_host_port_ref(value: &str) -> (&str, Option<u16>) {
    if value.starts_with('[') {
        return match value.find(']') {
            Some(end) => (
                &value[..=end],
                value[end + 1..]
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok()),
            ),
            None => (value, None),
        };
    }
    match value.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (value, None),
        },
        _ => (value, None),
    }
}

/// Whether a host name or address (IPv6 with or without brackets) is loopback.
pub(crate) fn is_loopback_name(name: &str) -> bool {
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a request's Host and Origin; the refusal to send when they are not allowed.
pub fn check(policy: &HostPolicy, request: &Request) -> Option<Response<Body>> {
    let authority = request.uri().authority().map(|a| a.as_str());
    refusal(policy.check(request.headers(), authority), request)
}

/// Checks a request's Host only; the refusal to send when it is not allowed.
pub fn check_host(policy: &HostPolicy, request: &Request) -> Option<Response<Body>> {
    let authority = request.uri().authority().map(|a| a.as_str());
    refusal(policy.check_host(request.headers(), authority), request)
}

fn refusal(result: Result<(), &'static str>, request: &Request) -> Option<Response<Body>> {
    match result {
        Ok(()) => None,
        Err(why) => {
            tracing::warn!(
                target: "mcpgate::dns_rebinding",
                host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()),
                origin = request.headers().get(header::ORIGIN).and_then(|h| h.to_str().ok()),
                path = request.uri().path(),
                "{why}"
            );
            let status = if why == TWO_HOSTS {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::FORBIDDEN
            };
            Some(text_response(status, why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn policy(public: &str, loopback: bool) -> HostPolicy {
        HostPolicy::new(
            &Url::parse(public).unwrap(),
            loopback,
            &["internal.svc:8080".into()],
            &["https://app.example.com".into()],
        )
    }

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn tr_03_evil_host_and_origin_are_rejected() {
        let p = policy("http://127.0.0.1:8080", true);
        assert!(
            p.check(
                &headers("evil.example.com", Some("http://evil.example.com")),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn tr_03_loopback_host_and_origin_are_accepted() {
        let p = policy("http://127.0.0.1:8080", true);
        assert!(
            p.check(
                &headers("127.0.0.1:8080", Some("http://127.0.0.1:8080")),
                None
            )
            .is_ok()
        );
        assert!(
            p.check(
                &headers("localhost:9999", Some("http://localhost:6274")),
                None
            )
            .is_ok()
        );
        assert!(p.check(&headers("[::1]:8080", None), None).is_ok());
    }

    #[test]
    fn tr_01_bad_origin_with_good_host_is_rejected() {
        let p = policy("https://mcp.example.com", false);
        assert!(
            p.check(
                &headers("mcp.example.com", Some("https://evil.example.com")),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn public_host_default_port_and_extras_are_accepted() {
        let p = policy("https://mcp.example.com", false);
        assert!(
            p.check(
                &headers("mcp.example.com", Some("https://mcp.example.com")),
                None
            )
            .is_ok()
        );
        assert!(p.check(&headers("MCP.example.com:443", None), None).is_ok());
        assert!(
            p.check(
                &headers("internal.svc:8080", Some("https://app.example.com")),
                None
            )
            .is_ok()
        );
        assert!(p.check(&headers("internal.svc:9090", None), None).is_err());
        assert!(p.check(&headers("localhost", None), None).is_err());
    }

    #[test]
    fn loopback_origins_are_not_trusted_for_a_public_gateway() {
        let p = policy("https://mcp.example.com", false);
        assert!(
            p.check(
                &headers("mcp.example.com", Some("http://localhost:3000")),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn missing_host_is_rejected() {
        let p = policy("http://127.0.0.1:8080", true);
        assert!(p.check(&HeaderMap::new(), None).is_err());
        assert!(p.check(&HeaderMap::new(), Some("127.0.0.1:8080")).is_ok());
    }
}
