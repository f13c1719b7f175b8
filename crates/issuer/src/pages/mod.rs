//! The pages a person sees at `/authorize` — sign-in, consent, and what went wrong — and the
//! headers every one of them carries.
//!
//! The templates are askama's, in `templates/` (one base layout, inline CSS, nothing loaded
//! from elsewhere); askama escapes every value, so a client's name or a parameter from the
//! query is shown, never run.
//!
//! # Headers
//! - `Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; form-action
//!   'self' <target>; frame-ancestors 'none'; base-uri 'none'`. No script, image or font is
//!   loaded; the only style is the page's own. `form-action` allows posting to the issuer and
//!   nowhere else, plus the origin of the client's redirect URI on the forms whose answer is
//!   a `303` to it: Chrome applies `form-action` to the redirects that follow a form post, so
//!   without it the browser would refuse to go back to the client after Approve. Naming that
//!   one origin (or, for an app's private-use scheme, that scheme) rather than `*` keeps an
//!   injected form from posting anywhere else.
//! - `X-Frame-Options: DENY` (with `frame-ancestors 'none'`: no clickjacking of Approve),
//!   `Referrer-Policy: no-referrer` (the query of `/authorize` goes nowhere),
//!   `Cache-Control: no-store` (a shared computer's back button shows no form with a sealed
//!   request in it).

mod templates;

pub use templates::{ConsentPage, ErrorPage, SignInPage};

use askama::Template;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use url::Url;

/// The `Content-Security-Policy` of a page whose forms may end in a redirect to
/// `form_target` (none: the page posts only to the issuer, or has no form).
pub fn content_security_policy(form_target: Option<&Url>) -> String {
    let mut form_action = "'self'".to_owned();
    if let Some(source) = form_target.and_then(source_expression) {
        form_action.push(' ');
        form_action.push_str(&source);
    }
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The CSP source expression that allows `url`: its origin, or for a private-use scheme the
/// scheme alone. (The URL parser has already limited schemes and hosts to characters that
/// cannot end a source expression.)
fn source_expression(url: &Url) -> Option<String> {
    match url.scheme() {
        "http" | "https" => {
            let origin = url.origin();
            origin.is_tuple().then(|| origin.ascii_serialization())
        }
        scheme => Some(format!("{scheme}:")),
    }
}

/// A page as a response: `status`, the HTML, and the headers above.
pub fn respond(status: StatusCode, page: &impl Template, form_target: Option<&Url>) -> Response {
    let (status, html) = match page.render() {
        Ok(html) => (status, html),
        Err(e) => {
            tracing::error!(target: "mcpgate::issuer", error = %e, "page not rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The authorization server failed to show this page.".to_owned(),
            )
        }
    };
    let mut response = Response::new(Body::from(html));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&content_security_policy(form_target))
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
    );
    insert_common(headers);
    response
}

/// The headers of every answer of `/authorize`, pages and redirects alike.
pub fn insert_common(headers: &mut http::HeaderMap) {
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_forms_to_the_issuer_and_the_clients_origin_only() {
        let target = Url::parse("http://127.0.0.1:5173/callback?x=1").unwrap();
        assert_eq!(
            content_security_policy(Some(&target)),
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http://127.0.0.1:5173; frame-ancestors 'none'; base-uri 'none'"
        );
        let app = Url::parse("com.example.app:/oauth").unwrap();
        assert!(
            content_security_policy(Some(&app)).contains("form-action 'self' com.example.app:;")
        );
        assert!(content_security_policy(None).contains("form-action 'self';"));
    }

    #[test]
    fn a_page_taller_than_the_window_grows_downwards() {
        // Centred in a body of fixed height, a tall page (the consent page on a small
        // window) overflows above the top, where no scrolling reaches its heading. The
        // browser suite (crates/gateway/tests/browser.rs) checks the page itself.
        let html = ErrorPage::new("s", "t", String::new(), None)
            .render()
            .unwrap();
        assert!(html.contains("min-height: 100%"));
        assert!(!html.contains("html, body { height: 100%; }"));
    }

    #[test]
    fn values_on_a_page_are_escaped() {
        let page = ErrorPage::new("s", "Bad", "<script>alert(1)</script>".to_owned(), None);
        let r = respond(StatusCode::BAD_REQUEST, &page, None);
        assert_eq!(r.status(), 400);
        let html = page.render().unwrap();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
    }
}
