//! Client metadata (RFC 7591 §2), checked once whatever it came from: a dynamic registration,
//! a client ID metadata document, or the operator's configuration. What passes is a
//! [`ClientMetadata`] whose every field is typed; what does not gets `invalid_redirect_uri` or
//! `invalid_client_metadata` naming the field and what to fix.
//!
//! Defaults, where a document is silent: `grant_types` `["authorization_code"]`,
//! `response_types` `["code"]`, `token_endpoint_auth_method` `client_secret_basic` for a
//! registration (RFC 7591 §2) and `none` for a metadata document (a URL cannot hold a secret),
//! `application_type` `native` when every redirect URI is loopback or a private-use scheme and
//! `web` otherwise.
//!
//! ```
//! use mcpgate_issuer::clients::metadata::{AuthMethod, ClientMetadata, Source};
//! use mcpgate_issuer::clients::redirect_uri::AllowList;
//!
//! let doc = br#"{"client_name": "Inspector", "redirect_uris": ["http://localhost:6274/oauth/callback"],
//!                "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]}"#;
//! let m = ClientMetadata::from_json(doc, Source::Registration, &AllowList::default()).unwrap();
//! assert_eq!(m.auth_method, AuthMethod::None);
//! assert!(m.is_public());
//! ```

use serde_json::{Map, Value, json};
use url::Url;

use super::redirect_uri::{AllowList, Kind, RedirectUri};
use crate::error::{ErrorCode, OAuthError};

/// Largest metadata document or registration body read.
pub const MAX_BYTES: usize = 32 * 1024;
/// Most redirect URIs one client may have.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Longest `client_name`.
pub const MAX_NAME: usize = 200;

/// Where metadata came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /register` (RFC 7591).
    Registration,
    /// A client ID metadata document fetched from the `client_id` URL.
    MetadataDocument,
    /// The operator's configuration or `mcpgate clients add`.
    Static,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A public client: no authentication, PKCE alone.
    None,
    /// A secret in HTTP Basic.
    ClientSecretBasic,
    /// A secret in the form body.
    ClientSecretPost,
    /// A JWT signed with the client's key (RFC 7523).
    PrivateKeyJwt,
}

impl AuthMethod {
    /// The name in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Reads a name.
    pub fn parse(name: &str) -> Option<AuthMethod> {
        Some(match name {
            "none" => AuthMethod::None,
            "client_secret_basic" => AuthMethod::ClientSecretBasic,
            "client_secret_post" => AuthMethod::ClientSecretPost,
            "private_key_jwt" => AuthMethod::PrivateKeyJwt,
            _ => return None,
        })
    }

    /// Whether the client holds a shared secret.
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

/// A grant type the client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    /// `authorization_code`.
    AuthorizationCode,
    /// `refresh_token`.
    RefreshToken,
    /// `client_credentials` (confidential clients only).
    ClientCredentials,
}

impl GrantType {
    /// The name in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

/// `native` or `web` (OpenID Connect Registration; MCP 2026-07-28 asks clients to send it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplicationType {
    /// Desktop, CLI and mobile apps: loopback and private-use redirects.
    Native,
    /// Hosted apps: https redirects.
    Web,
}

/// Where a `private_key_jwt` client's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jwks {
    /// Given in the metadata (`jwks`).
    Inline(Value),
    /// Published at an https URL (`jwks_uri`).
    Uri(Url),
}

/// Metadata that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMetadata {
    /// Where the browser may be sent back to.
    pub redirect_uris: Vec<RedirectUri>,
    /// How it authenticates: the method it declared, or for a metadata document that lists
    /// several, the one chosen from them (see [`negotiate`]).
    pub auth_method: AuthMethod,
    /// Every method it may authenticate with: `auth_method` first, then, for a metadata
    /// document, the others it lists that this server supports.
    pub auth_methods: Vec<AuthMethod>,
    /// What it may do.
    pub grant_types: Vec<GrantType>,
    /// `native` or `web`.
    pub application_type: ApplicationType,
    /// Its name, shown on the consent page.
    pub client_name: Option<String>,
    /// Its home page.
    pub client_uri: Option<Url>,
    /// Its logo (shown only if https).
    pub logo_uri: Option<Url>,
    /// Scopes it asks for by default.
    pub scope: Option<String>,
    /// People to contact.
    pub contacts: Vec<String>,
    /// Its keys, for `private_key_jwt`.
    pub jwks: Option<Jwks>,
    /// `software_id` (RFC 7591).
    pub software_id: Option<String>,
    /// `software_version` (RFC 7591).
    pub software_version: Option<String>,
}

fn unsupported_method(name: &str) -> OAuthError {
    bad(
        "token_endpoint_auth_method",
        format!(
            "`{}` is not supported (none, client_secret_basic, client_secret_post, private_key_jwt)",
            short(name)
        ),
    )
}

/// The authentication methods of a client metadata document, `declared` (its
/// `token_endpoint_auth_method`) first, then those of `offered` (its
/// `token_endpoint_auth_methods_supported`, which documents such as ChatGPT's add), keeping
/// those this server supports for a client without a shared secret: `none` and, when the
/// document has keys, `private_key_jwt`.
///
/// A document that declares a method this server lacks is still accepted when it offers one
/// it has: ChatGPT's declares `private_key_jwt` and offers `none` too, and a server that read
/// only the declared method would turn away a client it can serve. At the token endpoint the
/// client then authenticates with any method of the list. Nothing is weakened by this: a
/// document that offers `none` already lets anyone holding a code and its verifier redeem it.
pub fn negotiate(
    declared: Option<&str>,
    offered: Option<&[String]>,
    has_keys: bool,
) -> Result<Vec<AuthMethod>, OAuthError> {
    let mut usable = Vec::new();
    let mut refused = None;
    let names = declared
        .into_iter()
        .chain(offered.unwrap_or_default().iter().map(String::as_str));
    for name in names {
        let method = match AuthMethod::parse(name) {
            Some(m) if m.uses_secret() => {
                refused.get_or_insert(bad(
                    "token_endpoint_auth_method",
                    "cannot be a shared secret for a metadata document (use none or private_key_jwt)",
                ));
                continue;
            }
            Some(AuthMethod::PrivateKeyJwt) if !has_keys => {
                refused.get_or_insert(bad(
                    "token_endpoint_auth_method",
                    "private_key_jwt needs `jwks` or `jwks_uri`",
                ));
                continue;
            }
            Some(m) => m,
            None => {
                refused.get_or_insert(unsupported_method(name));
                continue;
            }
        };
        if !usable.contains(&method) {
            usable.push(method);
        }
    }
    if declared.is_none() && offered.is_none() {
        usable.push(AuthMethod::None);
    }
    if usable.is_empty() {
        return Err(refused.unwrap_or_else(|| {
            bad(
                "token_endpoint_auth_methods_supported",
                "names no method this server supports (none, private_key_jwt)",
            )
        }));
    }
    Ok(usable)
}

fn bad(field: &str, problem: impl std::fmt::Display) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidClientMetadata,
        format!("`{field}` {problem}"),
    )
}

impl ClientMetadata {
    /// Reads and checks a JSON metadata document from `source`; every redirect URI must also
    /// pass the operator's `allow` list.
    pub fn from_json(
        bytes: &[u8],
        source: Source,
        allow: &AllowList,
    ) -> Result<ClientMetadata, OAuthError> {
        if bytes.len() > MAX_BYTES {
            return Err(OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                format!("the metadata is larger than {MAX_BYTES} bytes"),
            ));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                format!("the metadata is not JSON: {e}"),
            )
        })?;
        let Value::Object(object) = value else {
            return Err(OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                "the metadata must be a JSON object",
            ));
        };
        Self::from_object(&object, source, allow)
    }

    /// Checks metadata already read as a JSON object.
    pub fn from_object(
        object: &Map<String, Value>,
        source: Source,
        allow: &AllowList,
    ) -> Result<ClientMetadata, OAuthError> {
        let fields = Fields(object);
        let grant_types = match fields.strings("grant_types")? {
            None => vec![GrantType::AuthorizationCode],
            Some(names) => {
                let mut out = Vec::new();
                for name in names {
                    let grant = match name.as_str() {
                        "authorization_code" => GrantType::AuthorizationCode,
                        "refresh_token" => GrantType::RefreshToken,
                        "client_credentials" => GrantType::ClientCredentials,
                        other => {
                            return Err(bad(
                                "grant_types",
                                format!(
                                    "names `{}`, which this server does not support (authorization_code, refresh_token, client_credentials)",
                                    short(other)
                                ),
                            ));
                        }
                    };
                    if !out.contains(&grant) {
                        out.push(grant);
                    }
                }
                if out.is_empty() {
                    return Err(bad("grant_types", "is empty"));
                }
                out
            }
        };
        // A token with no user behind it is for clients an operator admitted by name: open
        // registration and metadata documents let anyone become a client.
        if grant_types.contains(&GrantType::ClientCredentials) && source != Source::Static {
            return Err(bad(
                "grant_types",
                "client_credentials is only for clients the operator admits (`[[issuer.clients]]` or `mcpgate clients add`), not for registrations or metadata documents",
            ));
        }
        let uses_code = grant_types.contains(&GrantType::AuthorizationCode);
        match fields.strings("response_types")? {
            None => {}
            Some(types) if uses_code && types.iter().all(|t| t == "code") && !types.is_empty() => {}
            Some(types) if !uses_code && types.is_empty() => {}
            Some(_) if uses_code => {
                return Err(bad(
                    "response_types",
                    "must be [\"code\"] (the only response type this server has)",
                ));
            }
            Some(_) => {
                return Err(bad(
                    "response_types",
                    "must be empty without the authorization_code grant",
                ));
            }
        }
        let default_method = match source {
            Source::Registration => AuthMethod::ClientSecretBasic,
            Source::MetadataDocument | Source::Static => AuthMethod::None,
        };
        let declared = fields.string("token_endpoint_auth_method")?;
        let has_keys = object.contains_key("jwks") || object.contains_key("jwks_uri");
        let auth_methods = if source == Source::MetadataDocument {
            negotiate(
                declared.as_deref(),
                fields
                    .strings("token_endpoint_auth_methods_supported")?
                    .as_deref(),
                has_keys,
            )?
        } else {
            vec![match declared {
                None => default_method,
                Some(name) => AuthMethod::parse(&name).ok_or_else(|| unsupported_method(&name))?,
            }]
        };
        let auth_method = auth_methods[0];
        if auth_method == AuthMethod::None && grant_types.contains(&GrantType::ClientCredentials) {
            return Err(bad(
                "grant_types",
                "client_credentials needs a client that authenticates (client_secret_basic, client_secret_post or private_key_jwt)",
            ));
        }

        let mut redirect_uris = Vec::new();
        for raw in fields.strings("redirect_uris")?.unwrap_or_default() {
            let uri = RedirectUri::parse(&raw).map_err(|e| e.to_registration_error(&raw))?;
            allow
                .check(&uri)
                .map_err(|e| e.to_registration_error(&raw))?;
            if !redirect_uris.contains(&uri) {
                redirect_uris.push(uri);
            }
        }
        if uses_code && redirect_uris.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "`redirect_uris` is required for the authorization_code grant",
            ));
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                format!("at most {MAX_REDIRECT_URIS} redirect URIs"),
            ));
        }
        let native_only = redirect_uris
            .iter()
            .all(|u| matches!(u.kind(), Kind::Loopback | Kind::PrivateUse));
        let application_type = match fields.string("application_type")?.as_deref() {
            None if native_only && !redirect_uris.is_empty() => ApplicationType::Native,
            None => ApplicationType::Web,
            Some("native") => ApplicationType::Native,
            Some("web") => ApplicationType::Web,
            Some(other) => {
                return Err(bad(
                    "application_type",
                    format!("`{}` is neither native nor web", short(other)),
                ));
            }
        };
        // A web client is opened by a browser, not by the operating system: a private-use
        // scheme would hand its code to whatever app claims the scheme. (Loopback stays
        // allowed for web clients: browser-based tools such as the MCP Inspector run there.)
        if application_type == ApplicationType::Web
            && let Some(uri) = redirect_uris.iter().find(|u| u.kind() == Kind::PrivateUse)
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                format!(
                    "redirect URI `{}` uses a private-use scheme, which only a native application may",
                    short(uri.as_str())
                ),
            ));
        }

        let client_name = fields.string("client_name")?;
        if let Some(name) = &client_name {
            if name.chars().count() > MAX_NAME {
                return Err(bad(
                    "client_name",
                    format!("is longer than {MAX_NAME} characters"),
                ));
            }
            if name.chars().any(char::is_control) || name.trim().is_empty() {
                return Err(bad("client_name", "must be printable text"));
            }
        }
        if source == Source::MetadataDocument && client_name.is_none() {
            return Err(bad(
                "client_name",
                "is required in a client metadata document",
            ));
        }
        let client_uri = fields.https_url("client_uri")?;
        let logo_uri = fields.https_url("logo_uri")?;
        for field in ["policy_uri", "tos_uri"] {
            fields.https_url(field)?;
        }
        let scope = fields.string("scope")?;
        if let Some(scope) = &scope
            && let Some(token) = scope
                .split(' ')
                .find(|t| mcpgate_guard::Scope::parse(t).is_err())
        {
            return Err(bad(
                "scope",
                format!("holds `{}`, which is not a scope", short(token)),
            ));
        }
        let contacts = fields.strings("contacts")?.unwrap_or_default();

        let jwks = match (object.get("jwks"), fields.string("jwks_uri")?) {
            (Some(_), Some(_)) => return Err(bad("jwks", "and `jwks_uri` cannot both be given")),
            (Some(Value::Object(set)), None) => {
                let Some(keys) = set.get("keys").and_then(Value::as_array) else {
                    return Err(bad("jwks", "must be a JWK Set ({\"keys\": [...]})"));
                };
                // Public keys only: a private or symmetric key given here would be stored
                // and shown back to anyone holding the registration token.
                const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
                if keys.iter().any(|key| {
                    key.as_object()
                        .is_some_and(|k| PRIVATE.iter().any(|m| k.contains_key(*m)))
                }) {
                    return Err(bad(
                        "jwks",
                        "holds private or symmetric key material: give the public keys only",
                    ));
                }
                Some(Jwks::Inline(Value::Object(set.clone())))
            }
            (Some(_), None) => return Err(bad("jwks", "must be a JWK Set ({\"keys\": [...]})")),
            (None, Some(uri)) => match Url::parse(&uri) {
                Ok(url) if url.scheme() == "https" && url.host_str().is_some() => {
                    Some(Jwks::Uri(url))
                }
                _ => return Err(bad("jwks_uri", "must be an https URL")),
            },
            (None, None) => None,
        };
        if auth_method == AuthMethod::PrivateKeyJwt && jwks.is_none() {
            return Err(bad(
                "token_endpoint_auth_method",
                "private_key_jwt needs `jwks` or `jwks_uri`",
            ));
        }

        Ok(ClientMetadata {
            redirect_uris,
            auth_method,
            auth_methods,
            grant_types,
            application_type,
            client_name,
            client_uri,
            logo_uri,
            scope,
            contacts,
            jwks,
            software_id: fields.string("software_id")?,
            software_version: fields.string("software_version")?,
        })
    }

    /// Whether the client is public (no authentication at the token endpoint).
    pub fn is_public(&self) -> bool {
        self.auth_method == AuthMethod::None
    }

    /// Whether it may authenticate with `method`.
    pub fn accepts(&self, method: AuthMethod) -> bool {
        self.auth_methods.contains(&method)
    }

    /// Whether it may use `grant`.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// The registered redirect URI that `presented` matches, if any.
    pub fn redirect_uri(&self, presented: &str) -> Option<&RedirectUri> {
        self.redirect_uris.iter().find(|u| u.matches(presented))
    }

    /// The metadata as registered (RFC 7591 §3.2.1 returns it to the client).
    pub fn to_json(&self) -> Value {
        let mut doc = json!({
            "redirect_uris": self.redirect_uris.iter().map(RedirectUri::as_str).collect::<Vec<_>>(),
            "token_endpoint_auth_method": self.auth_method.as_str(),
            "grant_types": self.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "response_types": if self.allows(GrantType::AuthorizationCode) { json!(["code"]) } else { json!([]) },
            "application_type": match self.application_type {
                ApplicationType::Native => "native",
                ApplicationType::Web => "web",
            },
        });
        let put = |doc: &mut Value, key: &str, value: Option<Value>| {
            if let Some(v) = value {
                doc[key] = v;
            }
        };
        put(
            &mut doc,
            "client_name",
            self.client_name.clone().map(Value::from),
        );
        put(
            &mut doc,
            "client_uri",
            self.client_uri.as_ref().map(|u| json!(u.as_str())),
        );
        put(
            &mut doc,
            "logo_uri",
            self.logo_uri.as_ref().map(|u| json!(u.as_str())),
        );
        put(&mut doc, "scope", self.scope.clone().map(Value::from));
        if !self.contacts.is_empty() {
            doc["contacts"] = json!(self.contacts);
        }
        match &self.jwks {
            Some(Jwks::Inline(set)) => doc["jwks"] = set.clone(),
            Some(Jwks::Uri(url)) => doc["jwks_uri"] = json!(url.as_str()),
            None => {}
        }
        put(
            &mut doc,
            "software_id",
            self.software_id.clone().map(Value::from),
        );
        put(
            &mut doc,
            "software_version",
            self.software_version.clone().map(Value::from),
        );
        doc
    }
}

/// Typed reads of a metadata object, each naming its field when it is the wrong type.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn string(&self, field: &str) -> Result<Option<String>, OAuthError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) if s.len() > 2048 => Err(bad(field, "is too long")),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(field, "must be a string")),
        }
    }

    fn strings(&self, field: &str) -> Result<Option<Vec<String>>, OAuthError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) if items.len() > 100 => {
                Err(bad(field, "has too many entries"))
            }
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) if s.len() <= 2048 => Ok(s.clone()),
                    Value::String(_) => Err(bad(field, "has an entry that is too long")),
                    _ => Err(bad(field, "must be a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(bad(field, "must be a list of strings")),
        }
    }

    fn https_url(&self, field: &str) -> Result<Option<Url>, OAuthError> {
        match self.string(field)? {
            None => Ok(None),
            Some(text) => match Url::parse(&text) {
                Ok(url) if url.scheme() == "https" && url.host_str().is_some() => Ok(Some(url)),
                _ => Err(bad(field, "must be an https URL")),
            },
        }
    }
}

/// A value quoted in an error: short and printable.
fn short(text: &str) -> String {
    text.chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(doc: Value, source: Source) -> Result<ClientMetadata, OAuthError> {
        ClientMetadata::from_json(doc.to_string().as_bytes(), source, &AllowList::default())
    }

    fn registration(doc: Value) -> Result<ClientMetadata, OAuthError> {
        read(doc, Source::Registration)
    }

    fn code(result: Result<ClientMetadata, OAuthError>) -> ErrorCode {
        result.unwrap_err().code
    }

    #[test]
    fn a_public_native_client_gets_the_defaults_it_expects() {
        let m = registration(json!({
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
            "token_endpoint_auth_method": "none",
            "client_name": "VS Code",
        }))
        .unwrap();
        assert!(m.is_public());
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode]);
        assert_eq!(m.application_type, ApplicationType::Native);
        assert!(m.redirect_uri("http://127.0.0.1:5000/callback").is_some());
    }

    #[test]
    fn a_registration_without_a_method_is_confidential_by_default() {
        let m = registration(json!({"redirect_uris": ["https://app.example/cb"]})).unwrap();
        assert_eq!(m.auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(m.application_type, ApplicationType::Web);
    }

    #[test]
    fn the_authorization_code_grant_needs_redirect_uris() {
        assert_eq!(code(registration(json!({}))), ErrorCode::InvalidRedirectUri);
        assert_eq!(
            code(registration(json!({"redirect_uris": []}))),
            ErrorCode::InvalidRedirectUri
        );
    }

    #[test]
    fn bad_redirect_uris_are_invalid_redirect_uri_naming_the_uri() {
        let e = registration(json!({"redirect_uris": ["https://a.example/cb#frag"]})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRedirectUri);
        assert!(e.description.contains("https://a.example/cb#frag"), "{e}");
        assert_eq!(
            code(registration(
                json!({"redirect_uris": ["http://evil.example/cb"]})
            )),
            ErrorCode::InvalidRedirectUri
        );
    }

    #[test]
    fn the_operators_allow_list_applies() {
        let allow = AllowList::new(&["https://chatgpt.com/connector/oauth/*"]).unwrap();
        let ok = json!({"redirect_uris": ["https://chatgpt.com/connector/oauth/x"]});
        let no = json!({"redirect_uris": ["https://evil.example/cb"]});
        assert!(
            ClientMetadata::from_json(ok.to_string().as_bytes(), Source::Registration, &allow)
                .is_ok()
        );
        let e = ClientMetadata::from_json(no.to_string().as_bytes(), Source::Registration, &allow)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRedirectUri);
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (doc, field) in [
            (
                json!({"redirect_uris": "https://a.example/cb"}),
                "redirect_uris",
            ),
            (json!({"redirect_uris": [1]}), "redirect_uris"),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "client_name": 5}),
                "client_name",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "grant_types": "authorization_code"}),
                "grant_types",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": ["none"]}),
                "token_endpoint_auth_method",
            ),
        ] {
            let e = registration(doc).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
            assert!(e.description.contains(&format!("`{field}`")), "{e}");
        }
    }

    #[test]
    fn unsupported_grants_methods_and_response_types_are_refused() {
        let base = |extra: Value| {
            let mut doc = json!({"redirect_uris": ["https://a.example/cb"]});
            doc.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            registration(doc)
        };
        assert_eq!(
            code(base(json!({"grant_types": ["implicit"]}))),
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            code(base(json!({"grant_types": ["password"]}))),
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            code(base(json!({"response_types": ["token"]}))),
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            code(base(json!({"response_types": ["code", "id_token"]}))),
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            code(base(
                json!({"token_endpoint_auth_method": "tls_client_auth"})
            )),
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            code(base(json!({"application_type": "desktop"}))),
            ErrorCode::InvalidClientMetadata
        );
    }

    #[test]
    fn client_credentials_needs_an_authenticating_client_the_operator_admitted() {
        let e = read(
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            Source::Static,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
        // Registrations and metadata documents never get it: anyone can be one.
        for source in [Source::Registration, Source::MetadataDocument] {
            let e = read(json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}}), source)
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClientMetadata, "{source:?}");
            assert!(
                e.description.contains("operator admits"),
                "{}",
                e.description
            );
        }
        let m = read(
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}),
            Source::Static,
        )
        .unwrap();
        assert!(m.redirect_uris.is_empty());
        assert_eq!(m.to_json()["response_types"], json!([]));
    }

    #[test]
    fn jwks_with_private_or_symmetric_key_material_are_refused() {
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            let mut key = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
            key[member] = json!("secret");
            let e = registration(json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key]}}))
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClientMetadata, "{member}");
            assert!(!e.description.contains("secret"), "{}", e.description);
        }
    }

    #[test]
    fn private_key_jwt_needs_keys_and_only_one_place_for_them() {
        let base = json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"});
        assert_eq!(
            code(registration(base.clone())),
            ErrorCode::InvalidClientMetadata
        );
        let mut with_uri = base.clone();
        with_uri["jwks_uri"] = json!("https://a.example/jwks.json");
        assert!(matches!(
            registration(with_uri.clone()).unwrap().jwks,
            Some(Jwks::Uri(_))
        ));
        let mut both = with_uri;
        both["jwks"] = json!({"keys": []});
        assert_eq!(code(registration(both)), ErrorCode::InvalidClientMetadata);
        let mut plain = base;
        plain["jwks_uri"] = json!("http://a.example/jwks.json");
        assert_eq!(code(registration(plain)), ErrorCode::InvalidClientMetadata);
    }

    #[test]
    fn a_web_client_cannot_use_a_private_use_scheme_but_may_use_loopback() {
        assert_eq!(
            code(registration(
                json!({"redirect_uris": ["cursor://x/cb"], "application_type": "web"})
            )),
            ErrorCode::InvalidRedirectUri
        );
        assert!(registration(json!({"redirect_uris": ["http://localhost:6274/oauth/callback"], "application_type": "web"})).is_ok());
        let m = registration(json!({"redirect_uris": ["cursor://x/cb"]})).unwrap();
        assert_eq!(m.application_type, ApplicationType::Native);
    }

    #[test]
    fn a_metadata_document_needs_a_name_and_holds_no_secret() {
        let doc = json!({"redirect_uris": ["http://localhost/callback"]});
        assert_eq!(
            code(read(doc.clone(), Source::MetadataDocument)),
            ErrorCode::InvalidClientMetadata
        );
        let mut named = doc;
        named["client_name"] = json!("Claude Code");
        let m = read(named.clone(), Source::MetadataDocument).unwrap();
        assert!(m.is_public());
        named["token_endpoint_auth_method"] = json!("client_secret_post");
        assert_eq!(
            code(read(named, Source::MetadataDocument)),
            ErrorCode::InvalidClientMetadata
        );
    }

    fn document(methods: Value) -> Value {
        let mut doc = json!({
            "client_id": "https://chatgpt.example/oauth/client.json",
            "client_name": "ChatGPT",
            "redirect_uris": ["https://chatgpt.example/connector/oauth/abc"],
            "grant_types": ["authorization_code", "refresh_token"],
            "jwks_uri": "https://chatgpt.example/oauth/jwks.json",
        });
        for (k, v) in methods.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc
    }

    #[test]
    fn a_metadata_document_offering_several_methods_may_use_each_it_offers() {
        // ChatGPT's shape: private_key_jwt declared, none offered as well.
        let m = read(
            document(json!({
                "token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            })),
            Source::MetadataDocument,
        )
        .unwrap();
        assert_eq!(m.auth_method, AuthMethod::PrivateKeyJwt);
        assert_eq!(
            m.auth_methods,
            [AuthMethod::PrivateKeyJwt, AuthMethod::None]
        );
        assert!(m.accepts(AuthMethod::None) && !m.accepts(AuthMethod::ClientSecretBasic));
    }

    #[test]
    fn a_metadata_document_declaring_an_unknown_method_is_served_by_one_it_offers() {
        let m = read(
            document(json!({
                "token_endpoint_auth_method": "tls_client_auth",
                "token_endpoint_auth_methods_supported": ["tls_client_auth", "client_secret_basic", "none"],
            })),
            Source::MetadataDocument,
        )
        .unwrap();
        assert_eq!(m.auth_methods, [AuthMethod::None]);
        // Keys missing: private_key_jwt cannot be used, none still can.
        let mut doc = document(json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_methods_supported": ["none"],
        }));
        doc.as_object_mut().unwrap().remove("jwks_uri");
        let m = read(doc.clone(), Source::MetadataDocument).unwrap();
        assert_eq!(m.auth_methods, [AuthMethod::None]);
        // Nothing usable left: refused, naming what is wrong.
        doc["token_endpoint_auth_methods_supported"] = json!(["client_secret_basic"]);
        let e = read(doc, Source::MetadataDocument).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
        assert!(
            e.description.contains("private_key_jwt needs"),
            "{}",
            e.description
        );
        let e = read(
            document(json!({"token_endpoint_auth_methods_supported": ["tls_client_auth"]})),
            Source::MetadataDocument,
        )
        .unwrap_err();
        assert!(e.description.contains("not supported"), "{}", e.description);
        let e = read(
            document(json!({"token_endpoint_auth_methods_supported": []})),
            Source::MetadataDocument,
        )
        .unwrap_err();
        assert!(
            e.description.contains("names no method"),
            "{}",
            e.description
        );
    }

    #[test]
    fn only_a_metadata_document_may_offer_several_methods() {
        // A registration names its one method; the list is not read.
        let m = registration(json!({
            "redirect_uris": ["https://a.example/cb"],
            "token_endpoint_auth_method": "client_secret_basic",
            "token_endpoint_auth_methods_supported": ["none"],
        }))
        .unwrap();
        assert_eq!(m.auth_methods, [AuthMethod::ClientSecretBasic]);
        assert!(!m.accepts(AuthMethod::None));
    }

    #[test]
    fn names_with_control_characters_and_huge_documents_are_refused() {
        assert_eq!(
            code(registration(
                json!({"redirect_uris": ["https://a.example/cb"], "client_name": "a\u{1b}[31m"})
            )),
            ErrorCode::InvalidClientMetadata
        );
        let huge = format!("{{\"client_name\": \"{}\"}}", "a".repeat(MAX_BYTES));
        assert!(
            ClientMetadata::from_json(huge.as_bytes(), Source::Registration, &AllowList::default())
                .is_err()
        );
        assert!(
            ClientMetadata::from_json(b"[]", Source::Registration, &AllowList::default()).is_err()
        );
        assert!(
            ClientMetadata::from_json(b"{", Source::Registration, &AllowList::default()).is_err()
        );
    }

    #[test]
    fn what_is_returned_is_what_was_checked() {
        let m = registration(json!({
            "redirect_uris": ["http://127.0.0.1/cb", "http://127.0.0.1/cb"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token", "refresh_token"],
            "client_name": "x",
            "unknown_field": {"ignored": true},
        }))
        .unwrap();
        let doc = m.to_json();
        assert_eq!(doc["redirect_uris"], json!(["http://127.0.0.1/cb"]));
        assert_eq!(
            doc["grant_types"],
            json!(["authorization_code", "refresh_token"])
        );
        assert!(doc.get("unknown_field").is_none());
        let again = ClientMetadata::from_object(
            doc.as_object().unwrap(),
            Source::Registration,
            &AllowList::default(),
        )
        .unwrap();
        assert_eq!(again, m);
    }
}
