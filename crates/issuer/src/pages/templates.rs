//! The page templates (in `templates/`) and what each shows.

use askama::Template;

use crate::clients::redirect_uri::Kind;
use crate::consent::{AskedScope, Provenance, Question};

/// The letter in the server's badge: its host's first letter (`M`, for mcpgate, when the
/// host is an IP address).
fn initial(server: &str) -> String {
    server
        .chars()
        .find(|c| c.is_alphabetic())
        .unwrap_or('M')
        .to_uppercase()
        .to_string()
}

/// The sign-in form.
#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage<'a> {
    server: &'a str,
    server_initial: String,
    client_name: &'a str,
    action: &'a str,
    csrf: &'a str,
    request: &'a str,
    username: &'a str,
    error: Option<&'a str>,
}

impl<'a> SignInPage<'a> {
    /// The form for `client_name`, posting to `action` with the hidden `csrf` and sealed
    /// `request`; `username` and `error` when it is shown again.
    pub fn new(
        server: &'a str,
        client_name: &'a str,
        action: &'a str,
        csrf: &'a str,
        request: &'a str,
        username: &'a str,
        error: Option<&'a str>,
    ) -> Self {
        SignInPage {
            server,
            server_initial: initial(server),
            client_name,
            action,
            csrf,
            request,
            username,
            error,
        }
    }
}

/// The consent question.
#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    server: &'a str,
    server_initial: String,
    subject: &'a str,
    client_name: &'a str,
    redirect_host: &'a str,
    redirect_note: Option<&'static str>,
    provenance: &'static str,
    metadata_url: Option<&'a str>,
    registered: bool,
    scopes: &'a [AskedScope],
    action: &'a str,
    csrf: &'a str,
    request: &'a str,
    notice: Option<&'a str>,
}

impl<'a> ConsentPage<'a> {
    /// `question` asked of `subject`, posting to `action`.
    pub fn new(
        server: &'a str,
        subject: &'a str,
        question: &'a Question,
        action: &'a str,
        csrf: &'a str,
        request: &'a str,
    ) -> Self {
        let (provenance, metadata_url) = match &question.provenance {
            Provenance::Registered => (
                "It registered itself with this server; its name is its own claim.",
                None,
            ),
            Provenance::MetadataDocument { url } => (
                "It is identified by the document it publishes at:",
                Some(url.as_str()),
            ),
            Provenance::Configured => ("It was set up by the operator of this server.", None),
        };
        ConsentPage {
            server,
            server_initial: initial(server),
            subject,
            client_name: &question.client_name,
            redirect_host: &question.redirect_host,
            redirect_note: match question.redirect_kind {
                Kind::Loopback => Some("an application running on this computer"),
                Kind::PrivateUse => Some("an application installed on this device"),
                Kind::Https => None,
            },
            provenance,
            metadata_url,
            registered: question.provenance == Provenance::Registered,
            scopes: &question.scopes,
            action,
            csrf,
            request,
            notice: None,
        }
    }

    /// The page with `notice` above the question (why it is shown again).
    pub fn with_notice(mut self, notice: Option<&'a str>) -> Self {
        self.notice = notice;
        self
    }
}

/// What went wrong.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    server: &'a str,
    server_initial: String,
    title: &'a str,
    message: String,
    code: Option<&'static str>,
    advice: &'static str,
}

impl<'a> ErrorPage<'a> {
    /// A page titled `title` saying `message`, with the OAuth error `code` when there is one.
    pub fn new(
        server: &'a str,
        title: &'a str,
        message: String,
        code: Option<&'static str>,
    ) -> Self {
        ErrorPage {
            server,
            server_initial: initial(server),
            title,
            message,
            code,
            advice: "Go back to the application and try again. If this keeps happening, tell the application's developer or this server's operator.",
        }
    }
}
