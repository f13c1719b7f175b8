//! `POST /revoke` (RFC 7009): a client revokes a refresh token or an access token it holds;
//! the grant behind it is revoked, so that every token of that sign-in stops working — access
//! tokens within a second at every verifier that consults the issuer's revocations. Unknown
//! tokens and tokens of other clients are answered 200 and change nothing (RFC 7009 §2.2).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Response, StatusCode};
use mcpgate_guard::TokenVerifier;

use crate::clients::authentication::authenticate;
use crate::issuer::Issuer;
use crate::secret::TokenHash;
use crate::store::GRANT_ID_CLAIM;
use crate::store::GrantId;

/// `POST /revoke`.
pub async fn revoke(
    State(issuer): State<Arc<Issuer>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response<Body> {
    let answer = async {
        let params = crate::form::read(&headers, body).await?;
        let client = authenticate(&issuer, &headers, &params).await?;
        let token = params.require("token")?;
        let now = SystemTime::now();
        let grant = if token.matches('.').count() == 2 {
            match issuer.own_tokens.verify(token).await {
                Ok(p) if p.client_id.as_ref().map(|c| c.as_str()) == Some(client.id.as_str()) => p
                    .claims
                    .get(GRANT_ID_CLAIM)
                    .and_then(|g| g.as_str())
                    .map(GrantId::new),
                _ => None,
            }
        } else {
            match issuer.store.get_refresh_token(&TokenHash::of(token)).await {
                Ok(Some(r)) if r.token.client_id == client.id => Some(r.token.grant_id),
                _ => None,
            }
        };
        if let Some(grant) = grant {
            let _ = issuer.revocations.revoke_grant(&grant, now).await;
            tracing::info!(target: "mcpgate::issuer", client_id = %client.id, grant = %grant, "grant revoked by its client");
        }
        Ok::<_, crate::error::OAuthError>(())
    }
    .await;
    match answer {
        Ok(()) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::OK;
            r
        }
        Err(e) => e.json(),
    }
}
