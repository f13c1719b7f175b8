//! An authorization request (`GET /authorize`), checked in one visible order.
//!
//! 1. The parameters are read strictly (a repeated one is refused).
//! 2. `client_id` names a client the server knows (registered, a metadata document, or
//!    configured).
//! 3. `redirect_uri` is one of that client's (loopback ports free); it may be left out only
//!    when the client has exactly one.
//!
//! Until here a failure is shown as a page and never redirected: the redirect URI is not yet
//! known to belong to the client (OAuth 2.1 §4.1.2.1, AS-10). From here a failure is sent to
//! the redirect URI with `error`, `state` and `iss` (AS-11):
//!
//! 4. `response_type` is `code`.
//! 5. PKCE: `code_challenge` with `code_challenge_method=S256` (AS-05).
//! 6. `resource` is this server's resource (RFC 8707, AS-06).
//! 7. `scope` is in the catalogue.
//!
//! Reading a request changes nothing: a client that fetches `/authorize` before opening the
//! browser consumes nothing.

use url::Url;

use crate::clients::metadata::{ClientMetadata, GrantType};
use crate::clients::redirect_uri::RedirectUri;
use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::pkce::CodeChallenge;
use crate::resource::Resources;
use crate::scopes::Catalogue;
use mcpgate_guard::{ResourceUrl, Scopes};

/// Longest `state` kept (it is echoed back in a URL).
pub const MAX_STATE: usize = 2048;

/// A failure before the redirect URI is trusted: shown to the person as a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError(pub OAuthError);

/// A failure after it is: sent back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    /// Where to.
    pub redirect_uri: Url,
    /// The request's `state`.
    pub state: Option<String>,
    /// What.
    pub error: OAuthError,
}

/// Why a request failed, and so how the failure is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// As a page.
    Page(PageError),
    /// As a redirect.
    Redirect(Box<RedirectError>),
}

/// Step 1: the parameters, and the client they name.
#[derive(Debug, Clone)]
pub struct Unchecked {
    params: Params,
    client_id: String,
}

impl Unchecked {
    /// Reads the query of `/authorize`.
    pub fn read(query: &[u8]) -> Result<Unchecked, PageError> {
        let params = Params::parse(query).map_err(PageError)?;
        let client_id = params
            .get("client_id")
            .ok_or_else(|| PageError(OAuthError::invalid_request("client_id is missing")))?
            .to_owned();
        Ok(Unchecked { params, client_id })
    }

    /// The client to look up (step 2 is the caller's: it knows the stores).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Steps 3 to 7, with the client found in step 2.
    pub fn check(
        self,
        client: &ClientMetadata,
        resources: &Resources,
        scopes: &Catalogue,
    ) -> Result<AuthorizationRequest, Refused> {
        let params = &self.params;
        // 3. The redirect URI.
        let (registered, redirect) = match params.get("redirect_uri") {
            Some(presented) => match client.redirect_uri(presented) {
                Some(r) => (r.clone(), r.url_for(presented)),
                None => {
                    return Err(Refused::Page(PageError(OAuthError::invalid_request(
                        "redirect_uri is not one this client registered",
                    ))));
                }
            },
            None => match client.redirect_uris.as_slice() {
                [only] => (only.clone(), only.url_for(only.as_str())),
                _ => {
                    return Err(Refused::Page(PageError(OAuthError::invalid_request(
                        "redirect_uri is missing (the client has several)",
                    ))));
                }
            },
        };
        let state = params.get("state").map(str::to_owned);
        let refuse = |error: OAuthError| {
            Refused::Redirect(Box::new(RedirectError {
                redirect_uri: redirect.clone(),
                state: state.clone(),
                error,
            }))
        };
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
            // The state cannot be echoed; refuse without it.
            return Err(Refused::Redirect(Box::new(RedirectError {
                redirect_uri: redirect.clone(),
                state: None,
                error: OAuthError::invalid_request(format!(
                    "state is longer than {MAX_STATE} characters"
                )),
            })));
        }
        // 4. The response type.
        match params.get("response_type") {
            Some("code") => {}
            Some(_) => {
                return Err(refuse(OAuthError::new(
                    ErrorCode::UnsupportedResponseType,
                    "response_type must be code",
                )));
            }
            None => {
                return Err(refuse(OAuthError::invalid_request(
                    "response_type is missing (it must be code)",
                )));
            }
        }
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(refuse(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client did not register the authorization_code grant",
            )));
        }
        if params.get("response_mode").is_some_and(|m| m != "query") {
            return Err(refuse(OAuthError::invalid_request(
                "response_mode must be query",
            )));
        }
        // 5. PKCE.
        let challenge = CodeChallenge::parse(
            params.get("code_challenge"),
            params.get("code_challenge_method"),
        )
        .map_err(refuse)?;
        // 6. The resource.
        let resource = resources
            .requested(params.get("resource"))
            .map_err(refuse)?;
        // 7. The scopes (the client's registered default when it names none).
        let scope = params.get("scope").or(client.scope.as_deref());
        let scopes = scopes.requested(scope).map_err(refuse)?;
        // 8. `prompt` (OpenID Connect Core §3.1.2.1).
        let prompt = Prompt::read(params.get("prompt")).map_err(refuse)?;
        Ok(AuthorizationRequest {
            client_id: self.client_id,
            redirect_uri: registered,
            redirect_uri_parameter: params.get("redirect_uri").map(str::to_owned),
            redirect,
            state,
            challenge,
            resource,
            scopes,
            prompt,
        })
    }
}

/// What the client asked of the interaction (`prompt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prompt {
    /// As the issuer sees fit: remembered consent is used.
    #[default]
    Auto,
    /// No page: an error (`login_required`, `consent_required`) if one would be shown.
    None,
    /// Ask the person again, even if they approved before (`consent`, and `login`, which is
    /// answered with a fresh decision rather than a second sign-in).
    Consent,
}

impl Prompt {
    /// Reads `prompt`: space-separated `none`, `login`, `consent`, `select_account`; `none`
    /// only alone.
    pub fn read(value: Option<&str>) -> Result<Prompt, OAuthError> {
        let Some(value) = value else {
            return Ok(Prompt::Auto);
        };
        let mut prompt = Prompt::Auto;
        let mut none = false;
        let mut count = 0;
        for word in value.split(' ').filter(|w| !w.is_empty()) {
            count += 1;
            match word {
                "none" => none = true,
                "login" | "consent" => prompt = Prompt::Consent,
                "select_account" => {}
                _ => {
                    return Err(OAuthError::invalid_request(
                        "prompt may hold none, login, consent and select_account",
                    ));
                }
            }
        }
        match (none, count) {
            (true, 1) => Ok(Prompt::None),
            (true, _) => Err(OAuthError::invalid_request(
                "prompt=none cannot be combined with other values",
            )),
            (false, _) => Ok(prompt),
        }
    }
}

/// An authorization request that passed every check: what the person is asked to approve.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    /// The client.
    pub client_id: String,
    /// The registered redirect URI it matched.
    pub redirect_uri: RedirectUri,
    /// The `redirect_uri` parameter exactly as sent, `None` when the request had none: the
    /// token request must repeat it, and the code's stored hash is taken over it
    /// ([`code_hash`](crate::token::authorization_code::code_hash)).
    pub redirect_uri_parameter: Option<String>,
    /// Where to send the browser (the presented URI, with its port).
    pub redirect: Url,
    /// Echoed back.
    pub state: Option<String>,
    /// PKCE.
    pub challenge: CodeChallenge,
    /// The resource the token will be for.
    pub resource: ResourceUrl,
    /// The scopes asked for.
    pub scopes: Scopes,
    /// What the client asked of the interaction.
    pub prompt: Prompt,
}

impl AuthorizationRequest {
    /// The successful answer: the redirect with `code`, `state` and `iss`.
    pub fn success(&self, code: &str, iss: Option<&str>) -> Url {
        let mut url = self.redirect.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("code", code);
            if let Some(state) = &self.state {
                q.append_pair("state", state);
            }
            if let Some(iss) = iss {
                q.append_pair("iss", iss);
            }
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::metadata::Source;
    use crate::clients::redirect_uri::AllowList;
    use crate::pkce::challenge_of;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn client() -> ClientMetadata {
        ClientMetadata::from_json(
            br#"{"redirect_uris": ["http://localhost/callback"], "token_endpoint_auth_method": "none", "client_name": "t"}"#,
            Source::Registration,
            &AllowList::default(),
        )
        .unwrap()
    }

    fn check(query: &str) -> Result<AuthorizationRequest, Refused> {
        let resources = Resources::new(["https://mcp.example.com/mcp"]).unwrap();
        let scopes = Catalogue::new([("mcp", "Use it")], ["mcp"]).unwrap();
        Unchecked::read(query.as_bytes())
            .map_err(Refused::Page)?
            .check(&client(), &resources, &scopes)
    }

    fn good(extra: &str) -> String {
        format!(
            "client_id=c&response_type=code&redirect_uri=http%3A%2F%2Flocalhost%3A5000%2Fcallback&code_challenge={}&code_challenge_method=S256&state=st{extra}",
            challenge_of(VERIFIER)
        )
    }

    fn redirect_code(r: Result<AuthorizationRequest, Refused>) -> ErrorCode {
        match r {
            Err(Refused::Redirect(e)) => {
                assert_eq!(e.state.as_deref(), Some("st"));
                e.error.code
            }
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes_and_keeps_the_presented_port() {
        let r = check(&good("&resource=https%3A%2F%2Fmcp.example.com%2Fmcp%2F")).unwrap();
        assert_eq!(r.redirect.as_str(), "http://localhost:5000/callback");
        assert_eq!(
            r.redirect_uri_parameter.as_deref(),
            Some("http://localhost:5000/callback")
        );
        assert_eq!(r.resource.as_str(), "https://mcp.example.com/mcp");
        assert_eq!(r.scopes.to_space_delimited(), "mcp");
        let ok = r.success("the-code", Some("https://auth.example"));
        assert_eq!(
            ok.as_str(),
            "http://localhost:5000/callback?code=the-code&state=st&iss=https%3A%2F%2Fauth.example"
        );
    }

    #[test]
    fn as_10_a_redirect_uri_the_client_does_not_have_is_a_page_never_a_redirect() {
        for q in [
            good("").replace("localhost%3A5000%2Fcallback", "evil.example%2Fcallback"),
            good("").replace("%2Fcallback", "%2Fcallback%2F..%2Fother"),
            good("").replace("http%3A%2F%2Flocalhost", "http%3A%2F%2Fuser%40localhost"),
        ] {
            assert!(matches!(check(&q), Err(Refused::Page(_))), "{q}");
        }
    }

    #[test]
    fn a_missing_or_repeated_client_id_is_a_page() {
        assert!(matches!(check("response_type=code"), Err(Refused::Page(_))));
        assert!(matches!(
            check(&format!("{}&client_id=d", good(""))),
            Err(Refused::Page(_))
        ));
    }

    #[test]
    fn the_only_redirect_uri_is_used_when_none_is_named() {
        let q = good("").replace("&redirect_uri=http%3A%2F%2Flocalhost%3A5000%2Fcallback", "");
        let r = check(&q).unwrap();
        assert_eq!(r.redirect.as_str(), "http://localhost/callback");
        assert_eq!(r.redirect_uri_parameter, None);
    }

    #[test]
    fn as_05_pkce_is_required_and_plain_refused() {
        let missing = good("").replace(&format!("&code_challenge={}", challenge_of(VERIFIER)), "");
        assert_eq!(redirect_code(check(&missing)), ErrorCode::InvalidRequest);
        let plain = good("").replace("S256", "plain");
        assert_eq!(redirect_code(check(&plain)), ErrorCode::InvalidRequest);
        let no_method = good("").replace("&code_challenge_method=S256", "");
        assert_eq!(redirect_code(check(&no_method)), ErrorCode::InvalidRequest);
    }

    #[test]
    fn other_response_types_are_refused_by_redirect() {
        let q = good("").replace("response_type=code", "response_type=token");
        assert_eq!(redirect_code(check(&q)), ErrorCode::UnsupportedResponseType);
        let q = good("").replace("response_type=code&", "");
        assert_eq!(redirect_code(check(&q)), ErrorCode::InvalidRequest);
        assert_eq!(
            redirect_code(check(&good("&response_mode=fragment"))),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn as_06_another_resource_is_invalid_target() {
        let q = good("&resource=https%3A%2F%2Fevil.example%2Fmcp");
        assert_eq!(redirect_code(check(&q)), ErrorCode::InvalidTarget);
    }

    #[test]
    fn an_unknown_scope_is_invalid_scope() {
        assert_eq!(
            redirect_code(check(&good("&scope=mcp+admin"))),
            ErrorCode::InvalidScope
        );
    }

    #[test]
    fn an_oversized_state_is_refused_without_echoing_it() {
        let q = good("").replace("state=st", &format!("state={}", "s".repeat(MAX_STATE + 1)));
        match check(&q) {
            Err(Refused::Redirect(e)) => assert!(e.state.is_none()),
            other => panic!("{other:?}"),
        }
    }
}
