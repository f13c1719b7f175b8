//! Redirect URIs: what a client may register, how the one an authorization request names is
//! matched against them, and the operator's allow-list.
//!
//! A redirect URI is one of three kinds (RFC 8252, OAuth 2.1 §2.3.1):
//! - `https` with a host — web clients and hosted callbacks (`https://vscode.dev/redirect`);
//! - `http` on a loopback host (`localhost`, `127.0.0.0/8`, `[::1]`) — native apps and CLIs
//!   that listen on a local port;
//! - a private-use scheme (`cursor://…`, `com.example.app:/cb`) — native apps the operating
//!   system opens.
//!
//! None may carry a fragment or user information; schemes that would run or read something
//! in the browser (`javascript:`, `data:`, `file:`, …) and plain `http` off loopback are
//! refused. A presented URI matches a registered one when the two strings are identical —
//! except on loopback, where the port is free (RFC 8252 §7.3: the client picks a free port at
//! run time), so `http://localhost/callback` and `http://127.0.0.1:33418/callback` match the
//! same URI with any port; scheme, host, path and query must still be identical.
//!
//! ```
//! use mcpgate_issuer::clients::redirect_uri::RedirectUri;
//!
//! let registered = RedirectUri::parse("http://localhost/callback").unwrap();
//! assert!(registered.matches("http://localhost:53682/callback"));
//! assert!(!registered.matches("http://localhost:53682/callback/other"));
//! assert!(RedirectUri::parse("https://app.example/cb#x").is_err());
//! ```

use std::net::IpAddr;

use globset::{GlobBuilder, GlobMatcher};
use url::{Host, Url};

use crate::error::{ErrorCode, OAuthError};

/// Longest redirect URI accepted.
pub const MAX_LEN: usize = 2000;

/// Schemes no redirect may use: the browser would run, read or download something instead of
/// handing the code to an app.
const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
    "blob",
    "filesystem",
    "view-source",
    "ws",
    "wss",
    "ftp",
    "mailto",
    "chrome",
    "chrome-extension",
    // Schemes whose handlers reach the network or another party rather than hand the URI to
    // an app of the client's (round 6, F17): the code would travel on.
    "jar",
    "smb",
    "ssh",
    "sftp",
    "telnet",
    "tel",
    "sms",
    "mms",
    "nfs",
    "afp",
    "ldap",
    "ldaps",
    "gopher",
    "news",
    "nntp",
    "irc",
    "git",
    "svn",
    "webcal",
    "feed",
    "itms",
    "itms-apps",
    "itms-services",
    "search-ms",
    "search",
    "ms-settings",
    "intent",
    "content",
    "resource",
    "moz-extension",
    "edge",
    "opera",
];

/// Prefixes of scheme families that fetch or open documents from anywhere (`ms-word:`,
/// `ms-excel:`…, Office's URI schemes; `ms-` in general).
const FORBIDDEN_SCHEME_PREFIXES: &[&str] = &["ms-", "microsoft-", "office-"];

/// What kind of place a redirect URI sends the browser to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An `https` URL.
    Https,
    /// `http` on a loopback host: a local listener, on any port.
    Loopback,
    /// A private-use scheme an operating system hands to an app.
    PrivateUse,
}

/// Why a redirect URI is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    /// Longer than [`MAX_LEN`].
    #[error("is longer than {MAX_LEN} characters")]
    TooLong,
    /// Not an absolute URI.
    #[error("is not an absolute URI")]
    NotAbsolute,
    /// Spaces or control characters.
    #[error("contains spaces or control characters")]
    Unprintable,
    /// Has a `#fragment` (RFC 6749 §3.1.2).
    #[error("must not have a fragment")]
    Fragment,
    /// Has `user:password@`.
    #[error("must not contain user information")]
    UserInfo,
    /// `http` on a host other than loopback.
    #[error("http is only allowed on a loopback host (localhost, 127.0.0.1, [::1]); use https")]
    PlainHttp,
    /// `https` without a host.
    #[error("https needs a host")]
    NoHost,
    /// A scheme that would not hand the code to an app.
    #[error("the `{0}` scheme cannot be a redirect")]
    ForbiddenScheme(String),
    /// A backslash, a dot segment or an escaped dot: spellings a URL parser rewrites.
    #[error(
        "contains a backslash, a `.` or `..` path segment or an escaped dot (write the URI as it is)"
    )]
    Ambiguous,
    /// Not in the operator's allow-list.
    #[error("is not allowed by this server's redirect URI policy")]
    NotAllowed,
}

impl RedirectUriError {
    /// The OAuth error a registration gets for it (RFC 7591 §3.2.2).
    pub fn to_registration_error(&self, uri: &str) -> OAuthError {
        OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            format!("redirect URI `{}` {self}", shorten(uri)),
        )
    }
}

/// A redirect URI a client registered (or declared in its metadata document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri {
    raw: String,
    url: Url,
    kind: Kind,
}

impl RedirectUri {
    /// Checks a redirect URI for registration.
    pub fn parse(raw: &str) -> Result<RedirectUri, RedirectUriError> {
        if raw.len() > MAX_LEN {
            return Err(RedirectUriError::TooLong);
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RedirectUriError::Unprintable);
        }
        // What a URL parser would rewrite is not an exact URI: a backslash, a dot segment, an
        // escaped dot.
        let after_scheme = raw.split_once(':').map_or("", |(_, rest)| rest);
        let path_part = after_scheme
            .strip_prefix("//")
            .map_or(after_scheme, |rest| {
                rest.find('/').map_or("", |i| &rest[i..])
            });
        let path_part = path_part.split(['?', '#']).next().unwrap_or("");
        if raw.contains('\\')
            || raw.to_ascii_lowercase().contains("%2e")
            || path_part.split('/').any(|seg| seg == "." || seg == "..")
        {
            return Err(RedirectUriError::Ambiguous);
        }
        let url = Url::parse(raw).map_err(|_| RedirectUriError::NotAbsolute)?;
        if url.fragment().is_some() || raw.contains('#') {
            return Err(RedirectUriError::Fragment);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::UserInfo);
        }
        let kind = match url.scheme() {
            "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(RedirectUriError::NoHost);
                }
                Kind::Https
            }
            "http" if is_loopback(&url) => Kind::Loopback,
            "http" => return Err(RedirectUriError::PlainHttp),
            scheme
                if FORBIDDEN_SCHEMES.contains(&scheme)
                    || FORBIDDEN_SCHEME_PREFIXES
                        .iter()
                        .any(|p| scheme.starts_with(p)) =>
            {
                return Err(RedirectUriError::ForbiddenScheme(scheme.to_owned()));
            }
            _ => Kind::PrivateUse,
        };
        Ok(RedirectUri {
            raw: raw.to_owned(),
            url,
            kind,
        })
    }

    /// The URI as registered.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The host the browser is sent to (shown on the consent page, AS-13); for a private-use
    /// scheme, the scheme and its authority or path.
    pub fn display_host(&self) -> String {
        match (self.kind, self.url.host_str()) {
            (Kind::PrivateUse, Some(host)) if !host.is_empty() => {
                format!("{}://{host}", self.url.scheme())
            }
            (Kind::PrivateUse, _) => format!("{}:", self.url.scheme()),
            (_, Some(host)) => host.to_owned(),
            (_, None) => String::new(),
        }
    }

    /// Whether `presented` (the `redirect_uri` of an authorization or token request) is this
    /// URI: the same string, or on loopback the same URI with any port.
    pub fn matches(&self, presented: &str) -> bool {
        if presented == self.raw {
            return true;
        }
        if self.kind != Kind::Loopback {
            return false;
        }
        let Ok(other) = RedirectUri::parse(presented) else {
            return false;
        };
        // The host as written, too: `127.1` and `0x7f000001` reach the same place but are not
        // the registered URI.
        let (host, port) = host_and_port_as_written(presented);
        if host != host_and_port_as_written(&self.raw).0
            || port.is_some_and(|p| p.is_empty() || (p.len() > 1 && p.starts_with('0')))
        {
            return false;
        }
        // And the path and query exactly as written (an empty path is `/`, RFC 3986 §6.2.3).
        let rest = |raw: &str| {
            let rest = raw
                .split_once("://")
                .and_then(|(_, r)| r.find(['/', '?']).map(|i| r[i..].to_owned()))
                .unwrap_or_default();
            if rest.starts_with('/') {
                rest
            } else {
                format!("/{rest}")
            }
        };
        if rest(presented) != rest(&self.raw) {
            return false;
        }
        other.kind == Kind::Loopback
            && other.url.scheme() == self.url.scheme()
            && other.url.host() == self.url.host()
            && other.url.path() == self.url.path()
            && other.url.query() == self.url.query()
    }

    /// The URL to send the browser to, for a request that named `presented` (which matched).
    pub fn url_for(&self, presented: &str) -> Url {
        Url::parse(presented).unwrap_or_else(|_| self.url.clone())
    }
}

/// The host and port of `raw` as written, before a URL parser normalises them.
fn host_and_port_as_written(raw: &str) -> (&str, Option<&str>) {
    let authority = raw.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |i| i + 1)
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, rest) = authority.split_at(host_end);
    (host, rest.strip_prefix(':'))
}

/// Whether an `http` URL's host is loopback.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn shorten(uri: &str) -> String {
    let mut s: String = uri
        .chars()
        .take(120)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if uri.chars().count() > 120 {
        s.push('…');
    }
    s
}

/// The operator's allow-list of redirect URI patterns (globs: in the scheme and authority a
/// `*` stands for one host label or a port; in the path and query it also crosses `/`),
/// applied to every client at registration and at `/authorize`. Empty: every
/// URI [`RedirectUri::parse`] accepts.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    patterns: Option<Vec<(GlobMatcher, GlobMatcher)>>,
}

/// A URI (or pattern) in the two parts an allow-list matches separately: the scheme and
/// authority, with the host's dots turned into `/` so that a `*` there stands for one label
/// and cannot reach into the path, and the rest (path and query), where `*` crosses `/`.
fn parts(uri: &str) -> (String, &str) {
    match uri.split_once("://") {
        Some((scheme, after)) => {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            let (authority, rest) = after.split_at(end);
            (format!("{scheme}://{}", authority.replace('.', "/")), rest)
        }
        None => match uri.split_once(':') {
            Some((scheme, rest)) => (format!("{scheme}:"), rest),
            None => (String::new(), uri),
        },
    }
}

impl AllowList {
    /// Compiles `patterns`; a bad one is named in the error.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<AllowList, String> {
        if patterns.is_empty() {
            return Ok(AllowList::default());
        }
        let glob = |text: &str, whole: &str, across: bool| {
            GlobBuilder::new(text)
                .literal_separator(!across)
                .backslash_escape(true)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("`{whole}`: {e}"))
        };
        let mut compiled = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let (head, rest) = parts(pattern);
            compiled.push((glob(&head, pattern, false)?, glob(rest, pattern, true)?));
        }
        Ok(AllowList {
            patterns: Some(compiled),
        })
    }

    /// Whether `uri` may be used.
    pub fn allows(&self, uri: &str) -> bool {
        let (head, rest) = parts(uri);
        self.patterns.as_ref().is_none_or(|list| {
            list.iter()
                .any(|(h, r)| h.is_match(head.as_str()) && r.is_match(rest))
        })
    }

    /// Checks a URI for registration against the list.
    pub fn check(&self, uri: &RedirectUri) -> Result<(), RedirectUriError> {
        if self.allows(uri.as_str()) {
            Ok(())
        } else {
            Err(RedirectUriError::NotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(raw: &str) -> Result<Kind, RedirectUriError> {
        RedirectUri::parse(raw).map(|u| u.kind())
    }

    #[test]
    fn https_loopback_and_private_use_schemes_are_accepted() {
        assert_eq!(kind("https://vscode.dev/redirect"), Ok(Kind::Https));
        assert_eq!(kind("http://127.0.0.1:33418/callback"), Ok(Kind::Loopback));
        assert_eq!(kind("http://localhost/callback"), Ok(Kind::Loopback));
        assert_eq!(kind("http://[::1]:8000/cb"), Ok(Kind::Loopback));
        assert_eq!(kind("http://127.5.6.7/cb"), Ok(Kind::Loopback));
        assert_eq!(
            kind("cursor://anysphere.cursor-retrieval/oauth/user-mcp/callback"),
            Ok(Kind::PrivateUse)
        );
        assert_eq!(
            kind("com.example.app:/oauth2redirect"),
            Ok(Kind::PrivateUse)
        );
    }

    #[test]
    fn plain_http_off_loopback_is_refused_including_look_alikes() {
        for uri in [
            "http://app.example/cb",
            "http://localhost.evil.example/cb",
            "http://127.0.0.1.nip.io/cb",
            "http://0.0.0.0/cb",
            "http://[::ffff:10.0.0.1]/cb",
        ] {
            assert_eq!(kind(uri), Err(RedirectUriError::PlainHttp), "{uri}");
        }
    }

    #[test]
    fn fragments_user_information_and_bad_schemes_are_refused() {
        assert_eq!(
            kind("https://a.example/cb#x"),
            Err(RedirectUriError::Fragment)
        );
        assert_eq!(
            kind("https://a.example/cb#"),
            Err(RedirectUriError::Fragment)
        );
        assert_eq!(
            kind("https://user:pw@a.example/cb"),
            Err(RedirectUriError::UserInfo)
        );
        assert_eq!(
            kind("https://evil.example@a.example/cb"),
            Err(RedirectUriError::UserInfo)
        );
        for scheme in [
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
        ] {
            assert!(matches!(
                kind(scheme),
                Err(RedirectUriError::ForbiddenScheme(_))
            ));
        }
        assert_eq!(kind("/relative/cb"), Err(RedirectUriError::NotAbsolute));
        assert_eq!(
            kind("https://a.example/c b"),
            Err(RedirectUriError::Unprintable)
        );
        assert_eq!(
            kind(&format!("https://a.example/{}", "a".repeat(MAX_LEN))),
            Err(RedirectUriError::TooLong)
        );
    }

    #[test]
    fn spellings_a_url_parser_rewrites_and_handlers_that_pass_the_code_on_are_refused() {
        for raw in [
            "http://127.0.0.1:7777\\cb",
            "http://127.0.0.1:7777/./cb",
            "http://127.0.0.1:7777/x/../cb",
            "http://127.0.0.1:7777/%2e/cb",
            "https://chatgpt.com/connector/oauth/../../evil",
            "https://app.example/%2E%2E/cb",
            "cursor://anysphere.cursor-mcp/../x",
        ] {
            assert_eq!(
                RedirectUri::parse(raw),
                Err(RedirectUriError::Ambiguous),
                "{raw}"
            );
        }
        for raw in [
            "ms-word:ofe|u|https://evil.example/d.docx",
            "smb://evil.example/share",
            "ssh://evil.example/x",
            "search-ms:query=x",
            "tel:+100",
            "jar:https://evil.example/x!/",
            "itms-services://?action=download-manifest&url=https://evil.example/m.plist",
        ] {
            assert!(
                matches!(
                    RedirectUri::parse(raw),
                    Err(RedirectUriError::ForbiddenScheme(_))
                ),
                "{raw}"
            );
        }
        // Presented at /authorize for a loopback registration: the path as written.
        let registered = RedirectUri::parse("http://127.0.0.1/cb").unwrap();
        assert!(registered.matches("http://127.0.0.1:7777/cb"));
        for presented in [
            "http://127.0.0.1:7777\\cb",
            "http://127.0.0.1:7777/./cb",
            "http://127.0.0.1:7777/x/../cb",
            "http://127.0.0.1:7777//cb",
            "http://127.0.0.1:7777/cb?",
        ] {
            assert!(!registered.matches(presented), "{presented}");
        }
        // Real clients' callbacks stay fine.
        for raw in [
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "vscode://vscode.github-authentication/did-authenticate",
            "com.example.app:/oauth2redirect",
            "http://127.0.0.1:33418/",
        ] {
            assert!(RedirectUri::parse(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn https_matches_only_the_identical_string() {
        let r = RedirectUri::parse("https://app.example/cb").unwrap();
        assert!(r.matches("https://app.example/cb"));
        for other in [
            "https://app.example/cb/",
            "https://app.example/cb/extra",
            "https://app.example/cb?x=1",
            "https://app.example/cb/../cb",
            "https://APP.example/cb",
            "https://app.example:443/cb",
            "https://app.example/%63b",
            "https://app.example.evil/cb",
            "https://app.example/cb#frag",
            "http://app.example/cb",
        ] {
            assert!(!r.matches(other), "{other}");
        }
    }

    #[test]
    fn loopback_matches_any_port_and_nothing_else() {
        for registered in [
            "http://localhost/callback",
            "http://127.0.0.1:33418/callback",
        ] {
            let r = RedirectUri::parse(registered).unwrap();
            let host = r.url.host_str().unwrap().to_owned();
            assert!(
                r.matches(&format!("http://{host}:5000/callback")),
                "{registered}"
            );
            assert!(
                r.matches(&format!("http://{host}/callback")),
                "{registered}"
            );
            for other in [
                format!("http://{host}:5000/callback/x"),
                format!("http://{host}:5000/callback?x=1"),
                format!("http://{host}:5000/Callback"),
                format!("https://{host}:5000/callback"),
                format!("http://{host}.evil:5000/callback"),
                format!("http://user@{host}:5000/callback"),
                format!("http://{host}:5000/callback#x"),
            ] {
                assert!(!r.matches(&other), "{registered} vs {other}");
            }
        }
        // Other spellings of the host or port are not the registered URI.
        let r = RedirectUri::parse("http://127.0.0.1:7777/cb").unwrap();
        for other in [
            "http://127.1:7777/cb",
            "http://0x7f000001:7777/cb",
            "http://127.0.0.1:07777/cb",
            "http://LOCALHOST:7777/cb",
        ] {
            assert!(!r.matches(other), "{other}");
        }
        assert!(r.matches("http://127.0.0.1:7777/cb"));
        assert!(r.matches("http://127.0.0.1:8888/cb"));
        let v6 = RedirectUri::parse("http://[::1]/cb").unwrap();
        assert!(v6.matches("http://[::1]:5000/cb"));
        assert!(!v6.matches("http://[0:0:0:0:0:0:0:1]:5000/cb"));
        // localhost and 127.0.0.1 are different hosts to a browser's cookies and listeners.
        let r = RedirectUri::parse("http://localhost/callback").unwrap();
        assert!(!r.matches("http://127.0.0.1:5000/callback"));
    }

    #[test]
    fn private_use_schemes_match_exactly() {
        let r = RedirectUri::parse("cursor://anysphere.cursor-retrieval/oauth/cb").unwrap();
        assert!(r.matches("cursor://anysphere.cursor-retrieval/oauth/cb"));
        assert!(!r.matches("cursor://anysphere.cursor-retrieval/oauth/cb2"));
        assert_eq!(r.display_host(), "cursor://anysphere.cursor-retrieval");
    }

    #[test]
    fn the_consent_page_is_shown_the_redirect_host() {
        let r = RedirectUri::parse("https://chatgpt.com/connector/oauth/abc").unwrap();
        assert_eq!(r.display_host(), "chatgpt.com");
        let r = RedirectUri::parse("http://127.0.0.1:33418/cb").unwrap();
        assert_eq!(r.display_host(), "127.0.0.1");
    }

    #[test]
    fn the_allow_list_admits_only_its_patterns() {
        let list = AllowList::new(&[
            "https://chatgpt.com/connector/oauth/*",
            "http://127.0.0.1:*/callback",
        ])
        .unwrap();
        assert!(list.allows("https://chatgpt.com/connector/oauth/abc"));
        assert!(list.allows("http://127.0.0.1:33418/callback"));
        assert!(!list.allows("https://evil.example/connector/oauth/abc"));
        assert!(!list.allows("https://chatgpt.com.evil.example/connector/oauth/abc"));
        // A host wildcard stands for one label and stays in the host (round 6, F6).
        let hosts = AllowList::new(&["https://*.example.com/cb"]).unwrap();
        assert!(hosts.allows("https://app.example.com/cb"));
        for other in [
            "https://evil.com/x.example.com/cb",
            "https://evil.com?.example.com/cb",
            "https://evil.com#.example.com/cb",
            "https://a.b.example.com/cb",
            "https://example.com/cb",
            "https://app.example.com/cb/more",
        ] {
            assert!(!hosts.allows(other), "{other}");
        }
        let uri = RedirectUri::parse("https://evil.example/cb").unwrap();
        assert_eq!(list.check(&uri), Err(RedirectUriError::NotAllowed));
        assert!(
            AllowList::new::<&str>(&[])
                .unwrap()
                .allows("https://any.example/cb")
        );
        assert!(AllowList::new(&["https://[a"]).is_err());
    }

    #[test]
    fn a_registration_error_names_the_uri_without_control_characters() {
        let e = RedirectUriError::Fragment.to_registration_error("https://a.example/\ncb#x");
        assert_eq!(e.code, ErrorCode::InvalidRedirectUri);
        assert!(!e.description.contains('\n'));
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(raw in "\\PC{0,80}", presented in "\\PC{0,80}") {
            if let Ok(r) = RedirectUri::parse(&raw) {
                let _ = r.matches(&presented);
                let _ = r.display_host();
            }
        }
    }
}
