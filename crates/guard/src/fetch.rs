//! The one way mcpgate fetches a document from elsewhere — a JWKS, an issuer's metadata, a
//! client's metadata document — bounded in size and time, without redirects unless asked, and
//! with server-side request forgery rules for URLs that come from outside.
//!
//! Destinations are checked on the address actually connected to: names are resolved by
//! [`Fetcher`]'s own resolver, which drops every address the rules forbid before the
//! connection is made, so a name that resolves to a public address when checked and to a
//! private one when connected (DNS rebinding) cannot slip past. Literal addresses in the URL
//! are checked before anything is sent. Proxies from the environment are not used (they would
//! connect on the fetcher's behalf, unchecked).
//!
//! ```
//! use mcpgate_guard::fetch::{Destinations, FetchRules, Fetcher};
//!
//! // For URLs clients send (client metadata documents): public https addresses only.
//! let strict = Fetcher::new(FetchRules::default()).unwrap();
//! # let _ = strict;
//! // For URLs the operator configured (a JWKS on the internal network, say).
//! let trusted = Fetcher::new(FetchRules { destinations: Destinations::Any, ..FetchRules::default() }).unwrap();
//! # let _ = trusted;
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

/// Where a fetch may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destinations {
    /// Public addresses only, over https: no loopback, private, link-local, shared
    /// (CGNAT), unspecified, multicast or documentation addresses, IPv4-mapped ones included.
    Public,
    /// Public addresses, and loopback over http too (development and tests that serve their
    /// own documents).
    PublicAndLoopback,
    /// Anywhere the operator configured (the URL is trusted; size, time and redirect rules
    /// still apply).
    Any,
}

/// The rules of a [`Fetcher`].
#[derive(Debug, Clone)]
pub struct FetchRules {
    /// Where it may connect.
    pub destinations: Destinations,
    /// Largest body read.
    pub max_bytes: usize,
    /// Time for the whole exchange (connect, headers, body).
    pub timeout: Duration,
    /// Redirects followed (0: none; a redirect is then an error).
    pub max_redirects: usize,
}

impl Default for FetchRules {
    fn default() -> Self {
        FetchRules {
            destinations: Destinations::Public,
            max_bytes: 1024 * 1024,
            timeout: Duration::from_secs(5),
            max_redirects: 0,
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL's scheme or destination is not allowed.
    #[error("refused destination: {0}")]
    Refused(String),
    /// The exchange failed (connection, timeout, redirect, TLS).
    #[error("request failed: {0}")]
    Failed(String),
    /// The answer is not a success.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body is larger than allowed.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 (embeds IPv4)
                || first == 0x2002) // 6to4 (embeds IPv4)
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn allowed(rules: Destinations, ip: IpAddr) -> bool {
    match rules {
        Destinations::Any => true,
        Destinations::Public => is_public(ip),
        Destinations::PublicAndLoopback => is_public(ip) || ip.is_loopback(),
    }
}

/// Resolves names and keeps only the addresses the rules allow.
struct CheckedResolver {
    destinations: Destinations,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let destinations = self.destinations;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allowed(destinations, a.ip()))
                .collect();
            if kept.is_empty() {
                return Err(format!(
                    "`{host}` resolves only to addresses that may not be fetched from"
                )
                .into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Fetches documents under [`FetchRules`].
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    rules: Arc<FetchRules>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher with its own HTTP client.
    pub fn new(rules: FetchRules) -> Result<Self, FetchError> {
        let redirect = if rules.max_redirects == 0 {
            reqwest::redirect::Policy::none()
        } else {
            let max = rules.max_redirects;
            let destinations = rules.destinations;
            // Each hop is checked like the first.
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > max {
                    attempt.error("too many redirects")
                } else if check_url(destinations, attempt.url()).is_err() {
                    attempt.error("redirect to a refused destination")
                } else {
                    attempt.follow()
                }
            })
        };
        let mut builder = reqwest::Client::builder()
            .redirect(redirect)
            .no_proxy()
            .connect_timeout(rules.timeout)
            .timeout(rules.timeout);
        if rules.destinations != Destinations::Any {
            builder = builder.dns_resolver(Arc::new(CheckedResolver {
                destinations: rules.destinations,
            }));
        }
        let client = builder
            .build()
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        Ok(Fetcher {
            client,
            rules: Arc::new(rules),
        })
    }

    /// The rules.
    pub fn rules(&self) -> &FetchRules {
        &self.rules
    }

    /// GETs `url` with `accept` and returns the body of a success.
    pub async fn get(&self, url: &Url, accept: &str) -> Result<Vec<u8>, FetchError> {
        self.fetch(url, accept).await.map(|f| f.body)
    }

    /// GETs `url` with `accept` and returns the body of a success with the response's
    /// headers (for callers that honour `Cache-Control`, such as client metadata documents).
    pub async fn fetch(&self, url: &Url, accept: &str) -> Result<Fetched, FetchError> {
        check_url(self.rules.destinations, url)?;
        let response = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| FetchError::Failed(describe(&e)))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Failed(format!(
                "redirected ({}), and redirects are not followed",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let headers = response.headers().clone();
        let body = read_limited(response, self.rules.max_bytes).await?;
        Ok(Fetched { body, headers })
    }
}

/// A successful answer: its body (within the size limit) and its headers.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The body.
    pub body: Vec<u8>,
    /// The response headers.
    pub headers: http::HeaderMap,
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "redirect refused"
    } else {
        "failed"
    };
    // The innermost cause says why (a refused destination names itself); never the URL.
    let mut cause = None;
    let mut source = e.source();
    while let Some(s) = source {
        cause = Some(s.to_string());
        source = s.source();
    }
    match cause {
        Some(c) if !c.is_empty() => format!("{kind}: {c}"),
        _ => kind.into(),
    }
}

/// The scheme and, for a literal address, the destination, checked before anything is sent.
fn check_url(destinations: Destinations, url: &Url) -> Result<(), FetchError> {
    match (url.scheme(), destinations) {
        ("https", _) | ("http", Destinations::Any) => {}
        ("http", Destinations::PublicAndLoopback) => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if !loopback {
                return Err(FetchError::Refused(
                    "http is allowed for loopback addresses only".into(),
                ));
            }
        }
        (scheme, _) => {
            return Err(FetchError::Refused(format!(
                "scheme `{scheme}` (https is required)"
            )));
        }
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(FetchError::Refused("no host".into())),
    };
    if let Some(ip) = ip
        && !allowed(destinations, ip)
    {
        return Err(FetchError::Refused(format!("address {ip}")));
    }
    Ok(())
}

/// Reads a response body, refusing more than `max` bytes (before reading, when the length is
/// announced).
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, FetchError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(FetchError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Failed(format!("reading the body: {}", describe(&e))))?
    {
        if body.len() + chunk.len() > max {
            return Err(FetchError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_embedded_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn schemes_and_literal_destinations_are_checked_before_sending() {
        let u = |s: &str| Url::parse(s).unwrap();
        let public = Destinations::Public;
        assert!(check_url(public, &u("https://example.com/x")).is_ok());
        assert!(check_url(public, &u("http://example.com/x")).is_err());
        assert!(check_url(public, &u("https://127.0.0.1/x")).is_err());
        assert!(check_url(public, &u("https://[::ffff:10.0.0.1]/x")).is_err());
        assert!(check_url(public, &u("https://0x7f.1/x")).is_err());
        assert!(check_url(public, &u("file:///etc/passwd")).is_err());
        let dev = Destinations::PublicAndLoopback;
        assert!(check_url(dev, &u("http://127.0.0.1:8080/x")).is_ok());
        assert!(check_url(dev, &u("http://localhost:8080/x")).is_ok());
        assert!(check_url(dev, &u("http://10.0.0.1/x")).is_err());
        assert!(check_url(dev, &u("https://10.0.0.1/x")).is_err());
        assert!(check_url(Destinations::Any, &u("http://10.0.0.1/x")).is_ok());
        assert!(check_url(Destinations::Any, &u("ftp://10.0.0.1/x")).is_err());
    }
}
