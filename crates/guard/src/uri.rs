//! Resource URIs in one spelling, so that a policy rule written for `file:///private/*` also
//! applies to `FILE:///public/../private/x`, `file:///%70rivate/x` and `file:///private//x#top`.
//!
//! [`normalize`] applies the syntax-based normalisation of RFC 3986 §6.2.2 — scheme and host
//! to lower case, percent-encoding of unreserved characters decoded and the hex digits of the
//! rest upper-cased, dot segments removed — and the scheme-based one of §6.2.3 (an empty or
//! default port dropped, leading zeros of a port, an empty `http(s)` path as `/`, `file:/p`
//! and `file://localhost/p` as `file:///p` per RFC 8089, a host's trailing dot); beyond it, it
//! drops the fragment (it never reaches a server) and collapses runs of `/` in the path. What
//! would still be ambiguous is refused rather than guessed: an encoded `/`, `.` or `\` in the
//! path (servers disagree on whether `%2F` separates segments), a `..` that climbs above the
//! root, control characters (raw or encoded), broken percent-encoding, a raw `\`, user
//! information in the authority, a port that is not a number, and a URI without a scheme.
//!
//! ```
//! use mcpgate_guard::uri::{normalize, UriError};
//!
//! assert_eq!(normalize("FILE:///public/../private/x#frag").unwrap(), "file:///private/x");
//! assert_eq!(normalize("config://SECRETS").unwrap(), "config://secrets");
//! assert_eq!(normalize("file:///%70rivate//x").unwrap(), "file:///private/x");
//! assert_eq!(normalize("file:///a%2fb"), Err(UriError::EncodedSeparator));
//! assert_eq!(normalize("file:///../etc/passwd"), Err(UriError::ClimbsAboveRoot));
//! ```
//!
//! [`normalize_template`] does the same for RFC 6570 URI templates, leaving each `{…}`
//! expression as written.

use std::borrow::Cow;

/// Why a URI cannot be put in one spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Empty.
    #[error("the URI is empty")]
    Empty,
    /// No `scheme:` at the start (resource URIs are absolute).
    #[error("the URI has no scheme (resource URIs are absolute, like file:///x)")]
    NoScheme,
    /// A control character, raw or percent-encoded.
    #[error("the URI contains a control character")]
    ControlCharacter,
    /// A `%` not followed by two hex digits.
    #[error("the URI has a broken percent-encoding")]
    BadPercentEncoding,
    /// `%2F`, `%2E` or `%5C` in the path: whether it separates or names a segment depends on
    /// the server.
    #[error("the URI's path contains an encoded '/', '.' or '\\', which servers read differently")]
    EncodedSeparator,
    /// A raw `\` in the path (a separator to some servers).
    #[error("the URI's path contains '\\'")]
    Backslash,
    /// A `..` segment with nothing left to remove.
    #[error("the URI's path climbs above its root with '..'")]
    ClimbsAboveRoot,
    /// An unterminated `{` in a URI template.
    #[error("the URI template has an unterminated '{{'")]
    UnterminatedExpression,
    /// User information in the authority (`user@host`): hosts would be read differently.
    #[error("the URI has user information (user@host), which is not accepted")]
    UserInfo,
    /// A port that is not a number.
    #[error("the URI's port is not a number")]
    BadPort,
    /// A host with brackets that do not make an IP literal.
    #[error("the URI's host is not a name or an IP literal")]
    BadHost,
    /// A web URL's host that browsers and URL libraries read as something else: non-ASCII or
    /// percent-encoded (IDNA maps `ｉnternal` to `internal`), an IPv4 address in another
    /// form than four decimal numbers (`127.1`, `0x7f000001`, `2130706433`), or an IPv4
    /// address inside an IPv6 literal (`[::ffff:127.0.0.1]`) — in any URI, not only web ones.
    #[error(
        "the URI's host is spelt in a form URL readers turn into another host; write it in ASCII, an IPv4 address as four decimal numbers"
    )]
    AmbiguousHost,
    /// `https:host/x` or `file:etc/x`: a scheme URL readers always give an authority to,
    /// written without `//`.
    #[error(
        "the URI leaves out '//' after a scheme that always has an authority (write https://host/…, file:///…)"
    )]
    NoAuthority,
}

/// Schemes the WHATWG URL standard treats as "special": readers that follow it (browsers,
/// Node, most URL libraries) give them an authority and parse their host.
fn is_special(scheme: &str) -> bool {
    matches!(scheme, "http" | "https" | "ws" | "wss" | "ftp" | "file")
}

/// Whether a special URL's host is read the same by every reader: ASCII without escapes, and
/// if it ends in a number (the WHATWG IPv4 rule), a dotted quad of decimal numbers.
fn unambiguous_host(host: &str) -> bool {
    if host.starts_with('[') {
        return true;
    }
    // Letters, digits, `-`, `.`, `_`, `~`: anything else is either turned into another host
    // by IDNA (non-ASCII, escapes) or refused by WHATWG readers — and would be escaped in the
    // normal form, which must itself normalise.
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return false;
    }
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let last = trimmed.rsplit('.').next().unwrap_or("");
    let numeric = |label: &str| {
        !label.is_empty()
            && (label.bytes().all(|b| b.is_ascii_digit())
                || label
                    .strip_prefix("0x")
                    .or_else(|| label.strip_prefix("0X"))
                    .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())))
    };
    if !numeric(last) {
        return true;
    }
    let parts: Vec<&str> = trimmed.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// Whether a URI pattern (a glob over resource URIs, as in a policy rule or a trim list) is
/// written in the one spelling URIs are matched in; when not, what it should say. A pattern
/// that is not would silently never match (URIs are normalised before matching, patterns are
/// not).
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    // Only what looks like a URI (`scheme:` first) is checked; tool names and bare globs are
    // not URIs.
    let Some((scheme, _)) = pattern.split_once(':') else {
        return Ok(());
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Ok(());
    }
    // An IPv6 host, `[::1]`, is written with its brackets escaped for the glob (`[[]::1[]]`):
    // unescaped, they are a character class, and the rule would not match what it says.
    if let Some((_, rest)) = pattern.split_once("://")
        && let Some(inside) = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .map(|(i, _)| i)
        && inside.contains(':')
        && inside
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        let escaped = pattern.replacen(&format!("[{inside}]"), &format!("[[]{inside}[]]"), 1);
        return Err(format!(
            "`{pattern}`: the brackets of an IPv6 host are a character class in a pattern; write `{escaped}`"
        ));
    }
    // Glob characters stand for what they match: check the rest with them taken out, and the
    // escaped brackets (`[[]`, `[]]`) as the brackets they match.
    let mut probe = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("[[]") {
            probe.push('[');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("[]]") {
            probe.push(']');
            rest = after;
        } else {
            probe.push(if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '!') {
                'x'
            } else {
                c
            });
            rest = &rest[c.len_utf8()..];
        }
    }
    match normalize(&probe) {
        Ok(normal) if normal == probe => Ok(()),
        Ok(_) => match normalize(pattern) {
            Ok(p) if p != pattern => Err(format!(
                "`{pattern}` is not in the form URIs are matched in (scheme and host in lower case, no default port, no dot segments); write `{p}`"
            )),
            _ => Err(format!(
                "`{pattern}` is not in the form URIs are matched in (scheme and host in lower case, no default port, no dot segments)"
            )),
        },
        Err(e) => Err(format!("`{pattern}` can never match: {e}")),
    }
}

/// The one spelling of a resource URI (see the module documentation). Borrowed when the URI
/// is already in it.
pub fn normalize(uri: &str) -> Result<Cow<'_, str>, UriError> {
    run(uri, false)
}

/// The one spelling of a URI template: as [`normalize`], with each `{…}` expression kept as it
/// is written.
pub fn normalize_template(template: &str) -> Result<Cow<'_, str>, UriError> {
    run(template, true)
}

fn run(input: &str, template: bool) -> Result<Cow<'_, str>, UriError> {
    let out = build(input, template)?;
    Ok(if out == input {
        Cow::Borrowed(input)
    } else {
        Cow::Owned(out)
    })
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters that may appear raw in a URI (RFC 3986 §2.2 and §2.3), besides `%`.
fn is_allowed(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b':' | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Which part of the URI a piece of text is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Authority,
    Path,
    Query,
}

/// Byte offsets of the first of `stops` outside template expressions, or the end.
fn find_outside(s: &str, stops: &[u8], template: bool) -> Result<usize, UriError> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if template && b == b'{' {
            match bytes[i..].iter().position(|c| *c == b'}') {
                Some(end) => {
                    i += end + 1;
                    continue;
                }
                None => return Err(UriError::UnterminatedExpression),
            }
        }
        if stops.contains(&b) {
            return Ok(i);
        }
        i += 1;
    }
    Ok(bytes.len())
}

/// The offset of the last `stop` outside template expressions.
fn last_outside(s: &str, stop: u8, template: bool) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut last = None;
    let mut i = 0;
    while i < bytes.len() {
        if template && bytes[i] == b'{' {
            match bytes[i..].iter().position(|b| *b == b'}') {
                Some(end) => i += end + 1,
                None => return last,
            }
            continue;
        }
        if bytes[i] == stop {
            last = Some(i);
        }
        i += 1;
    }
    last
}

/// Percent-encoding normalised: unreserved characters decoded, other escapes upper-cased,
/// characters that may not appear raw encoded; template expressions copied as they are.
fn escape(text: &str, part: Part, template: bool, out: &mut String) -> Result<(), UriError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_control(b) {
            return Err(UriError::ControlCharacter);
        }
        if template && b == b'{' {
            let end = bytes[i..]
                .iter()
                .position(|c| *c == b'}')
                .ok_or(UriError::UnterminatedExpression)?;
            out.push_str(&text[i..i + end + 1]);
            i += end + 1;
            continue;
        }
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or(UriError::BadPercentEncoding)?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|_| hex.iter().all(u8::is_ascii_hexdigit))
                .ok_or(UriError::BadPercentEncoding)?;
            if is_control(value) {
                return Err(UriError::ControlCharacter);
            }
            if part == Part::Path && matches!(value, b'/' | b'.' | b'\\') {
                return Err(UriError::EncodedSeparator);
            }
            if is_unreserved(value) {
                out.push(value as char);
            } else {
                push_escaped(value, out);
            }
            i += 3;
            continue;
        }
        if b == b'\\' && part == Part::Path {
            return Err(UriError::Backslash);
        }
        if b.is_ascii() && is_allowed(b) {
            out.push(b as char);
        } else {
            // Non-ASCII (RFC 3987 §3.1) and ASCII that may not appear raw.
            push_escaped(b, out);
        }
        i += 1;
    }
    Ok(())
}

fn push_escaped(b: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

/// The path's segments between `/`s; in a template, a `/` inside an expression (`{/path}`)
/// does not separate.
fn segments(path: &str, template: bool) -> Vec<&str> {
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            // An expression runs to the first `}` (expressions do not nest), as `escape` reads it.
            b'{' if template => match bytes[i..].iter().position(|b| *b == b'}') {
                Some(end) => i += end,
                None => i = bytes.len(),
            },
            b'/' => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&path[start.min(path.len())..]);
    out
}

/// Runs of `/` collapsed, then dot segments removed (RFC 3986 §5.2.4); `..` that would climb
/// above the start is refused.
fn clean_path(path: &str, template: bool) -> Result<String, UriError> {
    let rooted = path.starts_with('/');
    let mut kept: Vec<&str> = Vec::new();
    let pieces: Vec<&str> = segments(path, template)
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let trailing = path.ends_with('/')
        || pieces
            .last()
            .is_some_and(|last| *last == "." || *last == "..");
    for piece in pieces {
        match piece {
            "." => {}
            ".." => {
                if kept.pop().is_none() {
                    return Err(UriError::ClimbsAboveRoot);
                }
            }
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    if rooted {
        out.push('/');
    }
    out.push_str(&kept.join("/"));
    if trailing && !kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// An authority in its one spelling: host in lower case without a trailing dot, the port
/// without leading zeros (and without it when empty or the scheme's default), `localhost` of
/// `file:` as the empty host. User information is refused: `config://user@secrets` is read as
/// host `secrets` by some and not by others.
fn authority(text: &str, scheme: &str, template: bool) -> Result<String, UriError> {
    if find_outside(text, b"@", template)? < text.len() {
        return Err(UriError::UserInfo);
    }
    let mut ip_literal = None;
    // The port: after the last `:` outside an IPv6 literal (and, in a template, outside
    // expressions).
    // An IP literal (`[::1]`, RFC 3986 §3.2.2) is a bracketed run of hex digits, `:` and `.`
    // (or a `v`-prefixed future form); anything else with a bracket is refused.
    let bracket_end = if text.starts_with('[') {
        let end = text.find(']').ok_or(UriError::BadHost)?;
        let inside = &text[1..end];
        let literal = !inside.is_empty()
            && (inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                || inside.starts_with(['v', 'V']));
        if !literal {
            return Err(UriError::BadHost);
        }
        if !inside.starts_with(['v', 'V']) {
            ip_literal = Some(ipv6_literal(inside)?);
        }
        end + 1
    } else if !template && text.contains(['[', ']']) {
        return Err(UriError::BadHost);
    } else {
        0
    };
    let (host, port) = if bracket_end > 0 {
        // After an IP literal, only a port.
        match &text[bracket_end..] {
            "" => (text, None),
            rest => match rest.strip_prefix(':') {
                Some(port) => (&text[..bracket_end], Some(port)),
                None => return Err(UriError::BadHost),
            },
        }
    } else {
        match last_outside(text, b':', template) {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        }
    };
    if bracket_end == 0 && find_outside(host, b":", template)? < host.len() {
        // Two colons outside an IPv6 literal: which part is the port is anyone's guess.
        return Err(UriError::BadPort);
    }
    if !template && is_special(scheme) && !unambiguous_host(host) {
        return Err(UriError::AmbiguousHost);
    }
    let mut host_text = String::with_capacity(host.len());
    match ip_literal {
        Some(address) => {
            host_text.push('[');
            host_text.push_str(&address);
            host_text.push(']');
        }
        None => escape(host, Part::Authority, template, &mut host_text)?,
    }
    if !template {
        host_text.make_ascii_lowercase();
        if host_text.len() > 1 && host_text.ends_with('.') && !host_text.ends_with("..") {
            host_text.pop();
        }
        if scheme == "file" && host_text == "localhost" {
            host_text.clear();
        }
        // A `file:` URI's host and port are ignored by most readers (Node's and Python's URL
        // parsers give the same path for `file://127.0.0.1/etc/x` and `file:///etc/x`): a
        // rule on the path must hold for every host, so only the local forms are accepted.
        if scheme == "file" && !host_text.is_empty() {
            return Err(UriError::BadHost);
        }
        if scheme == "file" && port.is_some() {
            return Err(UriError::BadPort);
        }
    }
    let mut out = host_text;
    match port {
        None | Some("") => {}
        Some(p) if template && p.starts_with('{') => {
            out.push(':');
            out.push_str(p);
        }
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
            let digits = p.trim_start_matches('0');
            let digits = if digits.is_empty() { "0" } else { digits };
            // Above 65535 a reader refuses the URI or, worse, keeps the low 16 bits.
            if digits.parse::<u16>().is_err() {
                return Err(UriError::BadPort);
            }
            let default = matches!((scheme, digits), ("http", "80") | ("https", "443"));
            if !default {
                out.push(':');
                out.push_str(digits);
            }
        }
        Some(_) => return Err(UriError::BadPort),
    }
    Ok(out)
}

/// An IPv6 address (what is inside `[…]`) in its one spelling, RFC 5952's: lower case, no
/// leading zeros, the longest run of zero groups as `::` (`[0:0::0001]` is `[::1]`). An IPv4
/// address written as IPv6 (`[::ffff:127.0.0.1]`, `[::ffff:7f00:1]`, `[::127.0.0.1]`) is
/// refused: it is the IPv4 host to readers that map it (and to the network), so a rule written
/// for that host would not see it.
fn ipv6_literal(inside: &str) -> Result<String, UriError> {
    let address: std::net::Ipv6Addr = inside.parse().map_err(|_| UriError::BadHost)?;
    if address.to_ipv4().is_some() && !address.is_loopback() && !address.is_unspecified() {
        return Err(UriError::AmbiguousHost);
    }
    Ok(address.to_string())
}

fn build(input: &str, template: bool) -> Result<String, UriError> {
    if input.is_empty() {
        return Err(UriError::Empty);
    }
    if input.bytes().any(is_control) {
        return Err(UriError::ControlCharacter);
    }
    // The fragment never reaches a server.
    let input = &input[..find_outside(input, b"#", template)?];
    let colon = input.find(':').ok_or(UriError::NoScheme)?;
    let scheme = &input[..colon];
    let valid_scheme = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid_scheme {
        return Err(UriError::NoScheme);
    }
    let scheme = scheme.to_ascii_lowercase();
    let mut out = String::with_capacity(input.len() + 8);
    out.push_str(&scheme);
    out.push(':');
    let mut rest = &input[colon + 1..];
    let mut has_authority = false;
    if let Some(after) = rest.strip_prefix("//") {
        has_authority = true;
        let end = find_outside(after, b"/?", template)?;
        out.push_str("//");
        out.push_str(&authority(&after[..end], &scheme, template)?);
        rest = &after[end..];
    } else if scheme == "file" && rest.starts_with('/') {
        // RFC 8089: `file:/p` is `file:///p`.
        has_authority = true;
        out.push_str("//");
    } else if is_special(&scheme) {
        return Err(UriError::NoAuthority);
    }
    if has_authority
        && (scheme == "http" || scheme == "https")
        && (rest.is_empty() || rest.starts_with('?'))
    {
        // RFC 3986 §6.2.3: an empty path is `/` for http(s).
        out.push('/');
    }
    let query_at = find_outside(rest, b"?", template)?;
    let (path, query) = rest.split_at(query_at);
    let mut path_text = String::with_capacity(path.len());
    escape(path, Part::Path, template, &mut path_text)?;
    out.push_str(&clean_path(&path_text, template)?);
    if !query.is_empty() {
        out.push('?');
        escape(&query[1..], Part::Query, template, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_not_in_the_matched_spelling_are_named_with_the_fix() {
        assert!(check_pattern("file:///etc/*").is_ok());
        assert!(check_pattern("config://secrets/*").is_ok());
        assert!(check_pattern("ledger://*/private/**").is_ok());
        assert!(check_pattern("search_*").is_ok());
        let e = check_pattern("FILE:///etc/*").unwrap_err();
        assert!(e.contains("file:///etc/*"), "{e}");
        assert!(check_pattern("config://SECRETS/*").is_err());
        assert!(check_pattern("https://example.com:443/*").is_err());
        assert!(check_pattern("file:///public/../private/*").is_err());
        assert!(check_pattern("http://127.1/*").is_err());
    }

    #[test]
    fn web_url_hosts_that_readers_turn_into_other_hosts_are_refused() {
        for uri in [
            "https://\u{ff49}nternal.example/x",
            "https://inter\u{ad}nal.example/x",
            "https://internal\u{3002}example/x",
            "https://%69nternal.example/x",
            "http://127.1/x",
            "http://0x7f000001/x",
            "http://2130706433/x",
            "http://0177.0.0.1/x",
            "http://169.254.43518/x",
            "http://127.0.0.01/x",
            "http://1.2.3.256/x",
            "http://a.0x10/x",
            "http://x{id<+p}x/",
            "https://a b/x",
            "https://a!b/x",
        ] {
            assert_eq!(normalize(uri), Err(UriError::AmbiguousHost), "{uri}");
        }
        for uri in [
            "https://internal.example/x",
            "http://127.0.0.1/x",
            "http://10.0.0.1:8080/x",
            "https://[::1]/x",
            "https://cafe.bad/x",
            "https://a1.example/x",
            "config://\u{ff49}nternal/x",
        ] {
            assert!(normalize(uri).is_ok(), "{uri}");
        }
    }

    #[test]
    fn ipv6_hosts_have_one_spelling_and_ipv4_inside_ipv6_is_refused() {
        for (uri, normal) in [
            ("http://[::1]/admin", "http://[::1]/admin"),
            ("http://[0::1]/admin", "http://[::1]/admin"),
            ("http://[::0001]/admin", "http://[::1]/admin"),
            ("http://[0:0:0:0:0:0:0:1]:80/admin", "http://[::1]/admin"),
            (
                "HTTP://[2001:DB8:0:0:1:0:0:1]/x",
                "http://[2001:db8::1:0:0:1]/x",
            ),
            ("config://[2001:db8::0:1]/x", "config://[2001:db8::1]/x"),
        ] {
            assert_eq!(normalize(uri).as_deref(), Ok(normal), "{uri}");
        }
        // The same address as http://127.0.0.1/admin, which a rule may name.
        for uri in [
            "http://[::ffff:127.0.0.1]/admin",
            "http://[::ffff:7f00:1]/admin",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/admin",
            "http://[::127.0.0.1]/admin",
            "config://[::ffff:10.0.0.1]/x",
        ] {
            assert_eq!(normalize(uri), Err(UriError::AmbiguousHost), "{uri}");
        }
        for uri in ["http://[::1::2]/x", "http://[12345::]/x", "http://[:::]/x"] {
            assert_eq!(normalize(uri), Err(UriError::BadHost), "{uri}");
        }
        // A port a reader would refuse, or cut to 16 bits (65616 is 80).
        assert_eq!(
            normalize("http://127.0.0.1:65616/admin"),
            Err(UriError::BadPort)
        );
        assert_eq!(
            normalize("http://127.0.0.1:65535/admin").as_deref(),
            Ok("http://127.0.0.1:65535/admin")
        );
        // Rules for IPv6 hosts: brackets escaped for the glob, the fix named when they are not.
        assert!(check_pattern("http://[[]::1[]]/*").is_ok());
        let e = check_pattern("http://[::1]/*").unwrap_err();
        assert!(e.contains("http://[[]::1[]]/*"), "{e}");
        assert!(check_pattern("http://[[]0::1[]]/*").is_err());
        // A character class in the host is not an IPv6 host.
        assert!(check_pattern("ledger://[ab]/*").is_ok());
    }

    #[test]
    fn special_schemes_without_an_authority_are_refused() {
        for uri in [
            "https:internal.example/x",
            "file:etc/passwd",
            "http:x",
            "ws:host/x",
        ] {
            assert_eq!(normalize(uri), Err(UriError::NoAuthority), "{uri}");
        }
        assert_eq!(normalize("file:/etc/passwd").unwrap(), "file:///etc/passwd");
        assert!(normalize("urn:isbn:123").is_ok());
        assert!(normalize("config:secrets").is_ok());
    }

    fn n(s: &str) -> String {
        normalize(s).unwrap().into_owned()
    }

    #[test]
    fn a_normal_uri_is_borrowed_unchanged() {
        assert!(matches!(
            normalize("file:///public/a.txt").unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            normalize("https://example.com/a?b=c").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn scheme_and_host_case_is_folded_but_path_case_is_kept() {
        assert_eq!(n("FILE:///Public/X"), "file:///Public/X");
        assert_eq!(n("LEDGER://Q3/Report"), "ledger://q3/Report");
        assert_eq!(n("config://SECRETS"), "config://secrets");
        assert_eq!(n("https://EXAMPLE.com/A"), "https://example.com/A");
    }

    #[test]
    fn scheme_based_spellings_are_unified() {
        // RFC 8089: three spellings of one local file.
        assert_eq!(n("file:/private/keys"), "file:///private/keys");
        assert_eq!(n("file://localhost/private/keys"), "file:///private/keys");
        assert_eq!(n("FILE://LOCALHOST/private/keys"), "file:///private/keys");
        // A remote host is refused: readers would serve the same path locally.
        assert_eq!(normalize("file://server/share/x"), Err(UriError::BadHost));
        // Ports: empty, default, leading zeros.
        assert_eq!(n("config://secrets:"), "config://secrets");
        assert_eq!(n("config://secrets:0080/x"), "config://secrets:80/x");
        assert_eq!(n("http://h:80"), "http://h/");
        assert_eq!(n("https://h:443/a"), "https://h/a");
        assert_eq!(n("https://h:8443"), "https://h:8443/");
        assert_eq!(n("http://[::1]:80/a"), "http://[::1]/a");
        assert_eq!(n("http://[::1]:8080/a"), "http://[::1]:8080/a");
        // A host's trailing dot.
        assert_eq!(n("config://secrets./x"), "config://secrets/x");
    }

    #[test]
    fn user_information_and_ports_that_are_not_numbers_are_refused() {
        for bad in [
            "config://user@secrets",
            "config://@secrets",
            "https://u:p@h/",
        ] {
            assert_eq!(normalize(bad), Err(UriError::UserInfo), "{bad}");
        }
        assert_eq!(normalize("config://secrets:x"), Err(UriError::BadPort));
        // Found by the third black-box round: file: hosts and ports that readers ignore.
        for bad in [
            "file://127.0.0.1/etc/passwd",
            "file://[::1]/etc/passwd",
            "file://0.0.0.0/etc/passwd",
            "file://evil.example/etc/passwd",
        ] {
            assert_eq!(normalize(bad), Err(UriError::BadHost), "{bad}");
        }
        assert_eq!(
            normalize("file://localhost:80/etc/passwd"),
            Err(UriError::BadPort)
        );
        assert_eq!(
            normalize("file://localhost:/etc/passwd"),
            Err(UriError::BadPort)
        );
        assert_eq!(
            normalize("file://LOCALHOST/etc/passwd").unwrap(),
            "file:///etc/passwd"
        );
        // Found by the uri fuzz target: a host with a colon once the empty port is gone.
        assert_eq!(normalize("x9h://\\\\8:ipx:"), Err(UriError::BadPort));
        assert_eq!(normalize("x://a:b:80/"), Err(UriError::BadPort));
        assert_eq!(normalize("n://[:/x"), Err(UriError::BadHost));
        assert_eq!(normalize("n://a[b]/x"), Err(UriError::BadHost));
        assert_eq!(normalize("yx://[.]x::f/"), Err(UriError::BadHost));
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(n("file:///public/../private/x"), "file:///private/x");
        assert_eq!(n("file:///a/./b/."), "file:///a/b/");
        assert_eq!(n("file:///a/b/.."), "file:///a/");
        assert_eq!(n("urn:a/../b"), "urn:b");
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        assert_eq!(
            normalize("file:///../etc/passwd"),
            Err(UriError::ClimbsAboveRoot)
        );
        assert_eq!(
            normalize("file:///a/../../b"),
            Err(UriError::ClimbsAboveRoot)
        );
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(n("file:///%70rivate/x"), "file:///private/x");
        assert_eq!(n("file:///a%7eb"), "file:///a~b");
        assert_eq!(n("file:///a%3fb"), "file:///a%3Fb");
        assert_eq!(n("file:///a b"), "file:///a%20b");
        assert_eq!(n("file:///caf%c3%a9"), "file:///caf%C3%A9");
        assert_eq!(n("file:///café"), "file:///caf%C3%A9");
        assert_eq!(n("x://h/?q=%2f%41"), "x://h/?q=%2FA");
    }

    #[test]
    fn encoded_separators_in_the_path_are_refused() {
        for bad in [
            "file:///a%2fb",
            "file:///a%2Fb",
            "file:///%2e%2e/x",
            "file:///a%2E",
            "file:///a%5cb",
        ] {
            assert_eq!(normalize(bad), Err(UriError::EncodedSeparator), "{bad}");
        }
        assert_eq!(normalize("file:///a\\b"), Err(UriError::Backslash));
    }

    #[test]
    fn runs_of_slashes_collapse_and_fragments_go() {
        assert_eq!(n("file:///private//x"), "file:///private/x");
        assert_eq!(n("file:////private/x"), "file:///private/x");
        assert_eq!(n("config://secrets#x"), "config://secrets");
        assert_eq!(n("config://secrets/#"), "config://secrets/");
    }

    #[test]
    fn control_characters_and_broken_escapes_are_refused() {
        assert_eq!(normalize("file:///a\nb"), Err(UriError::ControlCharacter));
        assert_eq!(normalize("file:///a%00"), Err(UriError::ControlCharacter));
        assert_eq!(normalize("file:///a%0A"), Err(UriError::ControlCharacter));
        assert_eq!(normalize("file:///a%zz"), Err(UriError::BadPercentEncoding));
        assert_eq!(normalize("file:///a%4"), Err(UriError::BadPercentEncoding));
        assert_eq!(normalize("file:///a%+1"), Err(UriError::BadPercentEncoding));
    }

    #[test]
    fn a_uri_needs_a_scheme() {
        assert_eq!(normalize(""), Err(UriError::Empty));
        assert_eq!(normalize("/etc/passwd"), Err(UriError::NoScheme));
        assert_eq!(normalize("1x:/a"), Err(UriError::NoScheme));
        assert_eq!(normalize("secrets"), Err(UriError::NoScheme));
    }

    #[test]
    fn templates_keep_their_expressions() {
        let t = |s: &str| normalize_template(s).unwrap().into_owned();
        assert_eq!(t("FILE:///{path}"), "file:///{path}");
        assert_eq!(t("file:///a/../{+path}{#frag}"), "file:///{+path}{#frag}");
        assert_eq!(t("x://h/{?q,r}"), "x://h/{?q,r}");
        assert_eq!(t("x://h/a#{frag}"), "x://h/a");
        assert_eq!(
            normalize_template("x://h/{a"),
            Err(UriError::UnterminatedExpression)
        );
        // An expression with `/` in it is one segment; a stray `}` is escaped; both stable.
        assert_eq!(t("x:/}sh~{/../f}}}"), "x:/%7Dsh~{/../f}%7D%7D");
        assert_eq!(t("x:/%7Dsh~{/../f}%7D%7D"), "x:/%7Dsh~{/../f}%7D%7D");
        // Found by the uri fuzz target: an expression holding a `{` ends at the first `}`.
        let once = t("xi:le[[[[va!{:{/q}te/");
        assert_eq!(t(&once), once);
        let once = t("x://{+fe:://0=%2e0=lf:/{?}elf:/{?}");
        assert_eq!(t(&once), once);
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for s in [
            "FILE:///public/../private/x",
            "file:///%70rivate//x#f",
            "x://H/a b/%c3%a9?%2f",
            "urn:a/./b/",
            "file:///a/b/..",
        ] {
            let once = n(s);
            assert_eq!(n(&once), once, "{s}");
        }
    }
}
