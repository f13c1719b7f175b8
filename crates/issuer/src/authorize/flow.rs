//! The interactive part of `/authorize`: the handlers of the sign-in and consent pages.
//!
//! | route | does |
//! |---|---|
//! | `GET {base}/authorize` | checks the request ([`super::request`]); refusals before the redirect URI is trusted are a page, after it a `303` to the client; then, in development with `auto_approve`, approves at once; signed in and consented before: a code at once; signed in: the consent page; else the sign-in page. Changes nothing in the store unless it issues a code. |
//! | `POST {base}/authorize/sign-in` | `username`, `password`, `csrf`, `request` (sealed): signs in, sets the sign-in cookie, and `303`s back to `GET /authorize` with the same query |
//! | `POST {base}/authorize/consent` | `decision` (`approve` or `deny`), `csrf`, `request`: approve remembers the consent, makes a grant and a code, `303` to the client with `code`, `state`, `iss`; deny `303`s with `error=access_denied` |
//!
//! Each post opens the sealed request ([`super::pending`]), checks the CSRF token
//! ([`super::csrf`]) and checks the request again from the start. A second Approve of the
//! same form issues a second code and grant; the first stays good.
//!
//! A *stale* form — one of this server's own pages whose token the browser has since
//! replaced, because two tabs opened `/authorize` at the same moment before it had one — is
//! not refused as forged: it is shown again, bound to the browser's token, with a word on
//! why, and nothing it carried is acted on (no sign-in, no decision). Acting on it would not
//! be safe: `SameSite=Lax` lets a page on another subdomain of the same site post with the
//! browser's cookies, so only a form whose token matches the cookie proves it came from the
//! page this browser was shown.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use mcpgate_guard::Subject;
use url::Url;

use super::code;
use super::cookies::Cookies;
use super::csrf::CsrfToken;
use super::pending::Pending;
use super::request::{AuthorizationRequest, PageError, Prompt, Refused, Unchecked};
use crate::clients::registration::SourceAddress;
use crate::clients::registry::{self, KnownClient};
use crate::consent::{self, Question};
use crate::error::{ErrorCode, OAuthError};
use crate::issuer::Issuer;
use crate::pages::{self, ConsentPage, ErrorPage, SignInPage};
use crate::params::Params;
use crate::sealed::MAX_SEALED;
use crate::sign_in::SignInError;
use crate::store::UserName;

/// What one `/authorize` request needs from the issuer to answer.
struct Context<'a> {
    issuer: &'a Issuer,
    /// The server's name as people see it: the issuer's host and port.
    server: String,
    cookies: Cookies,
}

impl<'a> Context<'a> {
    fn new(issuer: &'a Issuer) -> Self {
        let server = Url::parse(issuer.settings.issuer.as_str())
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_owned();
                Some(match u.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            })
            .unwrap_or_else(|| issuer.settings.issuer.as_str().to_owned());
        Context {
            issuer,
            server,
            cookies: Cookies::of(&issuer.settings.issuer),
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.issuer.settings.issuer.path())
    }

    fn iss(&self) -> Option<&str> {
        self.issuer
            .settings
            .iss_parameter
            .then(|| self.issuer.settings.issuer.as_str())
    }

    /// A page saying what went wrong.
    fn error_page(&self, status: StatusCode, title: &str, message: String) -> Response {
        pages::respond(
            status,
            &ErrorPage::new(&self.server, title, message, None),
            None,
        )
    }

    /// A refusal shown as a page (the redirect URI is not trusted, AS-10).
    fn refused_page(&self, status: StatusCode, error: &OAuthError) -> Response {
        pages::respond(
            status,
            &ErrorPage::new(
                &self.server,
                "This sign-in request cannot be used",
                format!(
                    "The application sent a request this server cannot accept: {}.",
                    error.description
                ),
                Some(error.code.as_str()),
            ),
            None,
        )
    }

    /// Sends the browser back to the client with `error`.
    fn refuse_to_client(&self, request: &AuthorizationRequest, error: &OAuthError) -> Response {
        see_other(
            error
                .redirect(&request.redirect, request.state.as_deref(), self.iss())
                .as_str(),
        )
    }
}

/// A request that passed every check, with its client and its query as sent.
struct Checked {
    client: KnownClient,
    request: AuthorizationRequest,
    query: String,
}

/// Checks the authorization request of `query`, in the order of [`super::request`].
async fn check(cx: &Context<'_>, query: &str) -> Result<Checked, Response> {
    let unchecked = Unchecked::read(query.as_bytes()).map_err(|PageError(e)| {
        tracing::info!(target: "mcpgate::issuer", error = %e.code, reason = %e.description, "authorization request refused (page)");
        cx.refused_page(StatusCode::BAD_REQUEST, &e)
    })?;
    let client = registry::find(cx.issuer, unchecked.client_id())
        .await
        .map_err(|e| {
            tracing::info!(target: "mcpgate::issuer", client_id = %printable(unchecked.client_id()), error = %e.code, reason = %e.description, "authorization request refused (page)");
            cx.refused_page(e.code.status(), &e)
        })?;
    let settings = &cx.issuer.settings;
    let request = unchecked
        .check(&client.metadata, &settings.resources, &settings.scopes)
        .map_err(|refused| match refused {
            Refused::Page(PageError(e)) => {
                tracing::info!(target: "mcpgate::issuer", client_id = %client.id, error = %e.code, reason = %e.description, "authorization request refused (page)");
                cx.refused_page(StatusCode::BAD_REQUEST, &e)
            }
            Refused::Redirect(r) => {
                tracing::info!(target: "mcpgate::issuer", client_id = %client.id, error = %r.error.code, reason = %r.error.description, "authorization request refused (redirect)");
                see_other(
                    r.error
                        .redirect(&r.redirect_uri, r.state.as_deref(), cx.iss())
                        .as_str(),
                )
            }
        })?;
    Ok(Checked {
        client,
        request,
        query: query.to_owned(),
    })
}

/// `GET {base}/authorize`.
pub async fn authorize(State(issuer): State<Arc<Issuer>>, request: Request) -> Response {
    let cx = Context::new(&issuer);
    let query = request.uri().query().unwrap_or_default().to_owned();
    let checked = match check(&cx, &query).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    tracing::info!(target: "mcpgate::issuer", client_id = %checked.client.id, scopes = %checked.request.scopes.to_space_delimited(), "authorization request accepted");
    if let Some(user) = &issuer.settings.auto_approve {
        // Development: this user is signed in and approves everything.
        let subject = Subject::new(user.as_str());
        tracing::info!(target: "mcpgate::issuer", client_id = %checked.client.id, subject = %subject, "consent approved (auto-approve)");
        return approve(&cx, &checked, &subject, true).await;
    }
    let (csrf, new_cookie) = CsrfToken::for_page(cx.cookies, request.headers());
    let prompt = checked.request.prompt;
    let response = match signed_in(&cx, request.headers()).await {
        Some(subject) => {
            let given = if prompt == Prompt::Consent {
                // The client asks for a fresh decision.
                Ok(false)
            } else {
                consent::given(
                    &*issuer.store,
                    &subject,
                    &checked.client.id,
                    &checked.request.scopes,
                    checked.request.redirect.as_str(),
                )
                .await
            };
            match given {
                Ok(true) => {
                    tracing::info!(target: "mcpgate::issuer", client_id = %checked.client.id, subject = %subject, "consent given before");
                    approve(&cx, &checked, &subject, false).await
                }
                Ok(false) if prompt == Prompt::None => {
                    tracing::info!(target: "mcpgate::issuer", client_id = %checked.client.id, subject = %subject, "authorization refused: consent needed but prompt=none");
                    cx.refuse_to_client(
                        &checked.request,
                        &OAuthError::new(
                            ErrorCode::ConsentRequired,
                            "the user has not approved this request here (prompt=none)",
                        ),
                    )
                }
                Ok(false) => consent_page(&cx, &checked, &subject, &csrf, StatusCode::OK, None),
                Err(e) => {
                    tracing::error!(target: "mcpgate::issuer", error = %e, "consent lookup failed");
                    cx.refuse_to_client(&checked.request, &OAuthError::server_error())
                }
            }
        }
        None if prompt == Prompt::None => {
            tracing::info!(target: "mcpgate::issuer", client_id = %checked.client.id, "authorization refused: sign-in needed but prompt=none");
            cx.refuse_to_client(
                &checked.request,
                &OAuthError::new(
                    ErrorCode::LoginRequired,
                    "the user is not signed in (prompt=none)",
                ),
            )
        }
        None => sign_in_page(&cx, &checked, &csrf, StatusCode::OK, "", None),
    };
    with_cookie(response, new_cookie)
}

/// `POST {base}/authorize/sign-in`.
pub async fn sign_in(State(issuer): State<Arc<Issuer>>, request: Request) -> Response {
    let cx = Context::new(&issuer);
    let (parts, body) = request.into_parts();
    let address = parts.extensions.get::<SourceAddress>().map(|a| a.0);
    // An address that made too many attempts is refused before anything else is read: a
    // flood of sign-ins costs little more than its connections.
    if let Err(SignInError::Throttled { retry_after }) = issuer.sign_in.admit_address(address) {
        if issuer.sign_in.report_throttled(address) {
            tracing::warn!(target: "mcpgate::issuer", address = ?address, "sign-in throttled for this address (further throttled attempts from it are logged once every ten seconds)");
        }
        issuer.sign_in.hold_back_throttled().await;
        let mut r = cx.error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts",
            format!("Too many sign-in attempts came from your network. Wait {retry_after} seconds, then go back and try again."),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return r;
    }
    let form = match Form::read(&cx, &parts.headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let checked = match check(&cx, &form.pending.query).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let username = form.params.get("username").unwrap_or_default();
    if form.stale {
        let Some(sealed) = form.sealed_for_page(&cx, &checked) else {
            return too_large(&cx, &checked);
        };
        return sign_in_page(
            &cx,
            &checked,
            &form.csrf,
            StatusCode::FORBIDDEN,
            username,
            Some((STALE_SIGN_IN, &sealed)),
        );
    }
    let password = form.params.get("password").unwrap_or_default();
    let client_id = &checked.client.id;
    let again = |status: StatusCode, message: &str| {
        sign_in_page(
            &cx,
            &checked,
            &form.csrf,
            status,
            username,
            Some((message, &form.sealed)),
        )
    };
    match issuer
        .sign_in
        .sign_in_admitted(&*issuer.store, username, password)
        .await
    {
        Ok(subject) => {
            tracing::info!(target: "mcpgate::issuer", client_id = %client_id, subject = %subject, address = ?address, "sign-in succeeded");
            // Back to the request, now signed in: it shows the consent page, or issues the
            // code if this was consented before. A reload of that page posts nothing.
            let mut response = see_other(&format!("{}?{}", cx.path("authorize"), checked.query));
            response.headers_mut().append(
                header::SET_COOKIE,
                cx.cookies.sign_in(&issuer.sealer, &subject),
            );
            response
        }
        Err(SignInError::WrongCredentials) => {
            tracing::info!(target: "mcpgate::issuer", client_id = %client_id, user_tag = %issuer.sign_in.log_tag(username), address = ?address, "sign-in failed: wrong user name or password");
            again(
                StatusCode::BAD_REQUEST,
                "The user name or password is wrong.",
            )
        }
        Err(SignInError::Throttled { retry_after }) => {
            if issuer.sign_in.report_throttled(address) {
                tracing::warn!(target: "mcpgate::issuer", client_id = %client_id, user_tag = %issuer.sign_in.log_tag(username), address = ?address, "sign-in throttled (further throttled attempts from this address are logged once every ten seconds)");
            }
            issuer.sign_in.hold_back_throttled().await;
            let mut r = again(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many sign-in attempts. Wait {retry_after} seconds, then try again."),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            r
        }
        Err(SignInError::Busy) => {
            tracing::warn!(target: "mcpgate::issuer", client_id = %client_id, "sign-in refused: every password verification slot is busy");
            let mut r = again(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is busy. Try again in a few seconds.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        Err(SignInError::Store) => again(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server could not check your sign-in. Try again.",
        ),
    }
}

/// `POST {base}/authorize/consent`.
pub async fn consent(State(issuer): State<Arc<Issuer>>, request: Request) -> Response {
    let cx = Context::new(&issuer);
    let (parts, body) = request.into_parts();
    let form = match Form::read(&cx, &parts.headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let checked = match check(&cx, &form.pending.query).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(sealed) = form.sealed_for_page(&cx, &checked) else {
        return too_large(&cx, &checked);
    };
    let Some(subject) = signed_in(&cx, &parts.headers).await else {
        return sign_in_page(
            &cx,
            &checked,
            &form.csrf,
            StatusCode::UNAUTHORIZED,
            "",
            Some((
                "Your sign-in has expired. Sign in again to continue.",
                &sealed,
            )),
        );
    };
    if form.stale {
        return consent_page(
            &cx,
            &checked,
            &subject,
            &form.csrf,
            StatusCode::FORBIDDEN,
            Some(STALE_CONSENT),
        );
    }
    if form.pending.subject.as_deref() != Some(subject.as_str()) {
        // Shown to someone else (another user signed in since, in this browser), or not a
        // consent form at all: asked again, of the user signed in now.
        tracing::info!(target: "mcpgate::issuer", client_id = %checked.client.id, subject = %subject, "consent form answered by another user than it was shown to: asked again");
        return consent_page(
            &cx,
            &checked,
            &subject,
            &form.csrf,
            StatusCode::FORBIDDEN,
            Some(OTHER_USER_CONSENT),
        );
    }
    match form.params.get("decision") {
        Some("approve") => {
            tracing::info!(target: "mcpgate::issuer", client_id = %checked.client.id, subject = %subject, scopes = %checked.request.scopes.to_space_delimited(), "consent approved");
            approve(&cx, &checked, &subject, true).await
        }
        Some("deny") => {
            tracing::info!(target: "mcpgate::issuer", client_id = %checked.client.id, subject = %subject, "consent denied");
            cx.refuse_to_client(
                &checked.request,
                &OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
            )
        }
        _ => cx.error_page(
            StatusCode::BAD_REQUEST,
            "Nothing was decided",
            "The form did not say whether to approve or deny.".to_owned(),
        ),
    }
}

/// What a stale sign-in form ([module docs](self)) says when it is shown again.
const STALE_SIGN_IN: &str = "This page was opened again in another tab, which replaced this copy of the form. Nothing was sent: sign in here to continue.";
/// What a consent form shown to another user says when it is shown again.
const OTHER_USER_CONSENT: &str = "This page was shown while someone else was signed in here. Your answer was not sent: answer here to continue.";
/// What a stale consent form says when it is shown again.
const STALE_CONSENT: &str = "This page was opened again in another tab, which replaced this copy of the form. Your answer was not sent: answer here to continue.";

/// A posted form of `/authorize`: its parameters, and the pending request it carries, checked
/// against the browser's CSRF token.
struct Form {
    params: Params,
    pending: Pending,
    /// The sealed request, as posted (shown again in a form re-shown).
    sealed: String,
    /// The browser's token (its cookie's).
    csrf: CsrfToken,
    /// The form is this server's, but made for a token the browser no longer holds: show it
    /// again and act on nothing.
    stale: bool,
}

impl Form {
    async fn read(cx: &Context<'_>, headers: &HeaderMap, body: Body) -> Result<Form, Response> {
        let params = crate::form::read(headers, body).await.map_err(|e| {
            cx.error_page(
                StatusCode::BAD_REQUEST,
                "This form cannot be used",
                format!(
                    "The form was not sent as this server expects: {}.",
                    e.description
                ),
            )
        })?;
        let forged = || {
            tracing::warn!(target: "mcpgate::issuer", "form refused: the CSRF token is missing or does not match");
            cx.error_page(
                StatusCode::FORBIDDEN,
                "This form cannot be used",
                "It was not sent from this server's page in this browser. Go back to the application and start again.".to_owned(),
            )
        };
        let csrf = CsrfToken::from_cookie(cx.cookies, headers).ok_or_else(forged)?;
        let sealed = params.get("request").unwrap_or_default().to_owned();
        let pending = Pending::open(&cx.issuer.sealer, &sealed).ok_or_else(|| {
            cx.error_page(
                StatusCode::BAD_REQUEST,
                "This page has expired",
                "Sign-in pages last ten minutes. Go back to the application and start again."
                    .to_owned(),
            )
        })?;
        // The hidden field and the sealed request come from one page of this server.
        if !params
            .get("csrf")
            .is_some_and(|field| super::csrf::same(field, &pending.csrf))
        {
            return Err(forged());
        }
        let stale = !csrf.matches(&pending.csrf);
        if stale {
            tracing::info!(target: "mcpgate::issuer", "form made for a CSRF token this browser has replaced (another tab opened /authorize at the same time): shown again, not acted on");
        }
        Ok(Form {
            params,
            pending,
            sealed,
            csrf,
            stale,
        })
    }

    /// The sealed request for the page shown again: the one posted, or, for a stale form, a
    /// new one bound to the browser's token (`None`: too large).
    fn sealed_for_page(&self, cx: &Context<'_>, checked: &Checked) -> Option<String> {
        if self.stale {
            seal(cx, checked, &self.csrf, None)
        } else {
            Some(self.sealed.clone())
        }
    }
}

/// Who is signed in, by the sign-in cookie, if that user may still sign in.
async fn signed_in(cx: &Context<'_>, headers: &HeaderMap) -> Option<Subject> {
    let subject = cx.cookies.signed_in(&cx.issuer.sealer, headers)?;
    match cx
        .issuer
        .store
        .get_user(&UserName::new(subject.as_str()))
        .await
    {
        Ok(Some(user)) if user.disabled_at.is_none() => Some(subject),
        Ok(_) => None,
        Err(e) => {
            tracing::error!(target: "mcpgate::issuer", error = %e, "user lookup failed");
            None
        }
    }
}

/// Approves: remembers the consent (when asked), issues a code, and sends the browser back
/// to the client with it.
async fn approve(
    cx: &Context<'_>,
    checked: &Checked,
    subject: &Subject,
    remember: bool,
) -> Response {
    let issuer = cx.issuer;
    let issued = async {
        if remember {
            code::ensure_stored(issuer, &checked.client, std::time::SystemTime::now()).await?;
            consent::remember(
                &*issuer.store,
                subject,
                &checked.client.id,
                &checked.request.scopes,
                checked.request.redirect.as_str(),
            )
            .await?;
        }
        code::issue(issuer, &checked.client, &checked.request, subject).await
    }
    .await;
    match issued {
        Ok(code) => see_other(checked.request.success(&code, cx.iss()).as_str()),
        Err(e) => {
            tracing::error!(target: "mcpgate::issuer", client_id = %checked.client.id, error = %e, "authorization code not issued");
            cx.refuse_to_client(&checked.request, &OAuthError::server_error())
        }
    }
}

/// The sign-in page for `checked`; `again` is the message and the sealed request of a form
/// shown again.
fn sign_in_page(
    cx: &Context<'_>,
    checked: &Checked,
    csrf: &CsrfToken,
    status: StatusCode,
    username: &str,
    again: Option<(&str, &str)>,
) -> Response {
    let sealed = match again {
        Some((_, sealed)) => sealed.to_owned(),
        None => match seal(cx, checked, csrf, None) {
            Some(s) => s,
            None => return too_large(cx, checked),
        },
    };
    let client_name = checked.client.display_name();
    let action = cx.path("authorize/sign-in");
    pages::respond(
        status,
        &SignInPage::new(
            &cx.server,
            &client_name,
            &action,
            csrf.as_str(),
            &sealed,
            username,
            again.map(|(message, _)| message),
        ),
        // Signed in and consented before, the post ends at the client.
        Some(&checked.request.redirect),
    )
}

/// The consent page for `checked`, with `notice` when it is shown again.
fn consent_page(
    cx: &Context<'_>,
    checked: &Checked,
    subject: &Subject,
    csrf: &CsrfToken,
    status: StatusCode,
    notice: Option<&str>,
) -> Response {
    let Some(sealed) = seal(cx, checked, csrf, Some(subject)) else {
        return too_large(cx, checked);
    };
    let question = Question::new(
        &checked.client,
        &checked.request,
        &cx.issuer.settings.scopes,
    );
    let action = cx.path("authorize/consent");
    pages::respond(
        status,
        &ConsentPage::new(
            &cx.server,
            subject.as_str(),
            &question,
            &action,
            csrf.as_str(),
            &sealed,
        )
        .with_notice(notice),
        Some(&checked.request.redirect),
    )
}

/// The pending request, sealed for the form; `None` when it is too large to come back.
fn seal(
    cx: &Context<'_>,
    checked: &Checked,
    csrf: &CsrfToken,
    subject: Option<&Subject>,
) -> Option<String> {
    let sealed = Pending::seal(
        &cx.issuer.sealer,
        &checked.query,
        csrf,
        subject.map(Subject::as_str),
    );
    (sealed.len() <= MAX_SEALED).then_some(sealed)
}

fn too_large(cx: &Context<'_>, checked: &Checked) -> Response {
    cx.refuse_to_client(
        &checked.request,
        &OAuthError::invalid_request("the authorization request is too large"),
    )
}

/// `303 See Other` to `location`, with the headers of every `/authorize` answer.
fn see_other(location: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            response.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    pages::insert_common(response.headers_mut());
    response
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Text from the request, fit for a log line.
fn printable(text: &str) -> String {
    text.chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
