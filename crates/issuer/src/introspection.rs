//! `POST /introspect` (RFC 7662): for authenticated confidential clients and resource
//! servers; a public or unauthenticated caller is refused, and a client that registered
//! itself learns only about its own tokens. Access tokens are checked as the
//! resource server would (signature, issuer, audience, expiry, revoked grant); refresh tokens
//! by their record. Anything else is `{"active": false}`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Response, StatusCode};
use mcpgate_guard::TokenVerifier;
use serde_json::{Value, json};

use crate::clients::authentication::authenticate;
use crate::clients::metadata::AuthMethod;
use crate::error::OAuthError;
use crate::issuer::Issuer;
use crate::secret::TokenHash;
use crate::store::ClientKind;

/// `POST /introspect`.
pub async fn introspect(
    State(issuer): State<Arc<Issuer>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response<Body> {
    let answer = async {
        let params = crate::form::read(&headers, body).await?;
        let client = authenticate(&issuer, &headers, &params).await?;
        if client.authenticated_by == AuthMethod::None {
            return Err(OAuthError::invalid_client(
                "introspection is for confidential clients and resource servers",
            ));
        }
        let token = params.require("token")?;
        let answer = describe(&issuer, token).await;
        // Clients the operator admitted (resource servers among them) may ask about any
        // token; a client that registered itself only about its own, so that introspection
        // is no oracle for tokens someone else holds (RFC 7662 §4).
        let own = answer["client_id"].as_str() == Some(client.id.as_str());
        if client.kind != ClientKind::Static && !own {
            return Ok(json!({"active": false}));
        }
        Ok(answer)
    }
    .await;
    match answer {
        Ok(body) => crate::routes::private_json(StatusCode::OK, &body),
        Err(e) => e.json(),
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// What the issuer knows of `token`.
pub(crate) async fn describe(issuer: &Issuer, token: &str) -> Value {
    if token.matches('.').count() == 2 {
        return match issuer.own_tokens.verify(token).await {
            Ok(p) => {
                let mut body = json!({
                    "active": true,
                    "token_type": "Bearer",
                    "sub": p.subject.as_str(),
                    "scope": p.scopes.to_space_delimited(),
                    "iss": issuer.settings.issuer.as_str(),
                });
                for claim in ["client_id", "aud", "exp", "iat", "nbf", "jti"] {
                    if let Some(v) = p.claims.get(claim) {
                        body[claim] = v.clone();
                    }
                }
                body
            }
            Err(_) => json!({"active": false}),
        };
    }
    let Ok(Some(record)) = issuer.store.get_refresh_token(&TokenHash::of(token)).await else {
        return json!({"active": false});
    };
    let now = SystemTime::now();
    if record.rotated_at.is_some() || record.revoked_at.is_some() || record.token.expires_at <= now
    {
        return json!({"active": false});
    }
    match issuer.store.get_grant(&record.token.grant_id).await {
        Ok(Some(grant)) if grant.revoked_at.is_none() => json!({
            "active": true,
            "token_type": "refresh_token",
            "sub": grant.subject.as_str(),
            "client_id": record.token.client_id.as_str(),
            "scope": grant.scopes.to_space_delimited(),
            "exp": unix(record.token.expires_at),
            "iat": unix(record.token.issued_at),
            "iss": issuer.settings.issuer.as_str(),
        }),
        _ => json!({"active": false}),
    }
}
