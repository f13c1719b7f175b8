//! [`Revocations`]: `mcpgate-guard`'s [`RevocationCheck`] over the store's grants, so that an
//! access token of a revoked grant is refused at once, cached verifications included.
//!
//! The guard asks on every request and must not wait, so the answer comes from memory: the
//! ids of grants revoked within the last `window` (the longest access-token lifetime — an
//! older revocation concerns only expired tokens). The set is filled two ways:
//!
//! - at once, by revocations made through this value ([`Revocations::revoke_grant`],
//!   [`Revocations::revoke_grants`]) or announced to it ([`Revocations::mark_revoked`]);
//! - from the store, by [`Revocations::refresh`]: run it every
//!   [`DEFAULT_REFRESH_INTERVAL`] (one second; [`Revocations::spawn_refresh`] does that), so
//!   a revocation made by another replica, or by the admin command, takes effect within a
//!   second. Run it once before serving, too.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use mcpgate_guard::{Principal, RevocationCheck};
//! use mcpgate_issuer::store::{GRANT_ID_CLAIM, GrantStore, Revocations, sqlite::SqliteStore};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
//! let revocations = Revocations::new(store.clone(), Duration::from_secs(3600));
//! revocations.refresh().await.unwrap();
//!
//! let claims = serde_json::json!({ "sub": "alice", GRANT_ID_CLAIM: "g1" });
//! let principal = Principal::from_claims(claims.as_object().unwrap().clone()).unwrap();
//! assert!(!revocations.is_revoked(&principal));
//! revocations.mark_revoked(&mcpgate_issuer::store::GrantId::new("g1"), SystemTime::now());
//! assert!(revocations.is_revoked(&principal));
//! # });
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use mcpgate_guard::{Principal, RevocationCheck};
use serde_json::Value;

use super::{ClientId, GrantId, GrantStore, StoreError, Subject};

/// The access-token claim naming the grant a token was issued from.
pub const GRANT_ID_CLAIM: &str = "grant_id";

/// How often [`Revocations::spawn_refresh`] reads the store unless told otherwise.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How far back each refresh looks beyond the previous one: revocations written by a replica
/// whose clock runs behind, or committed a little after they were stamped, are still seen.
const CLOCK_ALLOWANCE: Duration = Duration::from_secs(30);

/// The grants revoked lately, kept in memory for [`RevocationCheck`].
pub struct Revocations {
    store: Arc<dyn GrantStore>,
    window: Duration,
    /// Grant id → when it was revoked.
    revoked: RwLock<HashMap<String, SystemTime>>,
    /// When the last successful refresh started.
    last_refresh: Mutex<Option<SystemTime>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("window", &self.window)
            .field("known", &self.read().len())
            .field("last_refresh", &self.last_refresh())
            .finish_non_exhaustive()
    }
}

impl Revocations {
    /// Revocations of `store`'s grants; `window` is the longest access-token lifetime plus
    /// clock leeway. Empty until the first [`refresh`](Self::refresh).
    pub fn new(store: Arc<dyn GrantStore>, window: Duration) -> Self {
        Revocations {
            store,
            window,
            revoked: RwLock::new(HashMap::new()),
            last_refresh: Mutex::new(None),
        }
    }

    /// Reads the revocations made since the last refresh (the whole window the first time)
    /// and forgets those older than the window. Returns how many revoked grants are known.
    /// On error nothing changes, and the next refresh looks back far enough to catch up.
    pub async fn refresh(&self) -> Result<usize, StoreError> {
        let started = SystemTime::now();
        let horizon = started.checked_sub(self.window).unwrap_or(started);
        let since = match *self
            .last_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(previous) => previous.checked_sub(CLOCK_ALLOWANCE).unwrap_or(previous),
            None => horizon,
        };
        let since = since.max(horizon.checked_sub(CLOCK_ALLOWANCE).unwrap_or(horizon));
        let fresh = self.store.revoked_grants_since(since).await?;
        let known = {
            let mut revoked = self.write();
            for grant in fresh {
                revoked.insert(grant.id.as_str().to_owned(), grant.revoked_at);
            }
            let forget_before = horizon.checked_sub(CLOCK_ALLOWANCE).unwrap_or(horizon);
            revoked.retain(|_, at| *at >= forget_before);
            revoked.len()
        };
        *self
            .last_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(started);
        Ok(known)
    }

    /// Runs [`refresh`](Self::refresh) every `every` until the task is aborted; failures are
    /// logged and retried at the next tick.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = this.refresh().await {
                    tracing::warn!(error = %e, "cannot refresh grant revocations; will retry");
                }
            }
        })
    }

    /// When the last successful refresh started (`None` before the first): a readiness check
    /// can refuse to serve when it is too old.
    pub fn last_refresh(&self) -> Option<SystemTime> {
        *self
            .last_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes note of a revocation already written to the store, effective at once here.
    pub fn mark_revoked(&self, id: &GrantId, revoked_at: SystemTime) {
        self.write().insert(id.as_str().to_owned(), revoked_at);
    }

    /// Revokes a grant in the store and here at once; see [`GrantStore::revoke_grant`].
    pub async fn revoke_grant(&self, id: &GrantId, now: SystemTime) -> Result<bool, StoreError> {
        let revoked = self.store.revoke_grant(id, now).await?;
        self.mark_revoked(id, now);
        Ok(revoked)
    }

    /// Revokes a subject's grants (to one client, when given) in the store and here at once;
    /// see [`GrantStore::revoke_grants`].
    pub async fn revoke_grants(
        &self,
        subject: &Subject,
        client: Option<&ClientId>,
        now: SystemTime,
    ) -> Result<Vec<GrantId>, StoreError> {
        let ids = self.store.revoke_grants(subject, client, now).await?;
        let mut revoked = self.write();
        for id in &ids {
            revoked.insert(id.as_str().to_owned(), now);
        }
        Ok(ids)
    }

    /// Whether the grant is known to be revoked.
    pub fn is_grant_revoked(&self, id: &str) -> bool {
        self.read().contains_key(id)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, SystemTime>> {
        // A panic elsewhere while holding the lock leaves a set that is still a valid set.
        self.revoked.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, SystemTime>> {
        self.revoked.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RevocationCheck for Revocations {
    /// A token naming a revoked grant is revoked. A token with no grant claim (a
    /// client-credentials token, or one this issuer did not make) is not judged here; a grant
    /// claim that is not a string is refused.
    fn is_revoked(&self, principal: &Principal) -> bool {
        match principal.claims.get(GRANT_ID_CLAIM) {
            None => false,
            Some(Value::String(id)) => self.is_grant_revoked(id),
            Some(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{ClientKind, ClientRecord, ClientStore as _, Grant, Scopes};

    const HOUR: Duration = Duration::from_secs(3600);

    fn principal(claims: Value) -> Principal {
        Principal::from_claims(claims.as_object().unwrap().clone()).unwrap()
    }

    fn with_grant(id: &GrantId) -> Principal {
        principal(serde_json::json!({ "sub": "alice", GRANT_ID_CLAIM: id.as_str() }))
    }

    async fn store_with_grant(subject: &str) -> (Arc<SqliteStore>, GrantId) {
        let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
        let grant = add_grant(&store, subject).await;
        (store, grant)
    }

    async fn add_grant(store: &SqliteStore, subject: &str) -> GrantId {
        let client = ClientRecord {
            client_id: ClientId::new("app"),
            secret_hash: None,
            registration_token_hash: None,
            kind: ClientKind::Dynamic,
            metadata: serde_json::json!({}),
            created_at: SystemTime::now(),
            last_used_at: None,
        };
        // The client may be there from an earlier grant.
        let _ = store.insert_client(&client).await;
        let grant = Grant {
            id: GrantId::generate(),
            subject: Subject::new(subject),
            client_id: client.client_id,
            scopes: Scopes::new(),
            resource: None,
            created_at: SystemTime::now(),
            revoked_at: None,
        };
        store.create_grant(&grant).await.unwrap();
        grant.id
    }

    #[tokio::test]
    async fn a_revocation_made_through_it_takes_effect_at_once() {
        let (store, grant) = store_with_grant("alice").await;
        let revocations = Revocations::new(store.clone(), HOUR);
        assert!(!revocations.is_revoked(&with_grant(&grant)));
        assert!(
            revocations
                .revoke_grant(&grant, SystemTime::now())
                .await
                .unwrap()
        );
        assert!(revocations.is_revoked(&with_grant(&grant)));
        assert!(store.is_grant_revoked(&grant).await.unwrap());
    }

    #[tokio::test]
    async fn a_revocation_made_elsewhere_is_seen_after_a_refresh() {
        let (store, grant) = store_with_grant("alice").await;
        let revocations = Revocations::new(store.clone(), HOUR);
        revocations.refresh().await.unwrap();
        // Another replica, or the admin command, revokes through the store.
        store.revoke_grant(&grant, SystemTime::now()).await.unwrap();
        assert!(!revocations.is_revoked(&with_grant(&grant)), "not yet");
        assert_eq!(revocations.refresh().await.unwrap(), 1);
        assert!(revocations.is_revoked(&with_grant(&grant)));
    }

    #[tokio::test]
    async fn the_first_refresh_reads_the_whole_window_and_no_further() {
        let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
        let recent = add_grant(&store, "alice").await;
        let ancient = add_grant(&store, "bob").await;
        let now = SystemTime::now();
        store
            .revoke_grant(&recent, now - Duration::from_secs(600))
            .await
            .unwrap();
        store.revoke_grant(&ancient, now - 3 * HOUR).await.unwrap();
        let revocations = Revocations::new(store, HOUR);
        assert_eq!(revocations.refresh().await.unwrap(), 1);
        assert!(revocations.is_grant_revoked(recent.as_str()));
        assert!(
            !revocations.is_grant_revoked(ancient.as_str()),
            "its tokens expired long ago"
        );
        assert!(revocations.last_refresh().is_some());
    }

    #[tokio::test]
    async fn revocations_older_than_the_window_are_forgotten() {
        let (store, grant) = store_with_grant("alice").await;
        let revocations = Revocations::new(store, HOUR);
        revocations.mark_revoked(&grant, SystemTime::now() - 2 * HOUR);
        assert!(revocations.is_grant_revoked(grant.as_str()));
        assert_eq!(revocations.refresh().await.unwrap(), 0);
        assert!(!revocations.is_grant_revoked(grant.as_str()));
    }

    #[tokio::test]
    async fn revoking_by_subject_marks_every_grant_revoked() {
        let (store, first) = store_with_grant("alice").await;
        let second = add_grant(&store, "alice").await;
        let other = add_grant(&store, "bob").await;
        let revocations = Revocations::new(store, HOUR);
        let ids = revocations
            .revoke_grants(&Subject::new("alice"), None, SystemTime::now())
            .await
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert!(revocations.is_revoked(&with_grant(&first)));
        assert!(revocations.is_revoked(&with_grant(&second)));
        assert!(!revocations.is_revoked(&with_grant(&other)));
    }

    #[tokio::test]
    async fn tokens_without_a_grant_claim_are_not_judged_and_odd_claims_are_refused() {
        let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
        let revocations = Revocations::new(store, HOUR);
        assert!(!revocations.is_revoked(&principal(serde_json::json!({ "sub": "svc" }))));
        assert!(revocations.is_revoked(&principal(
            serde_json::json!({ "sub": "svc", GRANT_ID_CLAIM: 7 })
        )));
    }

    #[tokio::test]
    async fn the_guard_refuses_a_token_of_a_revoked_grant_even_from_its_cache() {
        use crate::keys::{SigningKeys, SigningKeysOptions};
        use mcpgate_guard::{Audience, ClaimRules, JwtVerifier, TokenError, TokenVerifier};

        let (store, grant) = store_with_grant("alice").await;
        let keys = SigningKeys::load(store.clone(), SigningKeysOptions::default())
            .await
            .unwrap();
        let revocations = Arc::new(Revocations::new(store.clone(), HOUR));
        let verifier = JwtVerifier::builder(ClaimRules::for_audience(Audience::new("https://mcp")))
            .key_ring(keys.key_ring())
            .revocation(revocations.clone())
            .build()
            .unwrap();
        let token = keys
            .sign(&serde_json::json!({
                "sub": "alice", "aud": "https://mcp", "exp": 4_000_000_000u64,
                GRANT_ID_CLAIM: grant.as_str(),
            }))
            .unwrap();
        assert!(verifier.verify(&token).await.is_ok());
        revocations
            .revoke_grant(&grant, SystemTime::now())
            .await
            .unwrap();
        let rejection = verifier.verify(&token).await.unwrap_err();
        assert_eq!(rejection.reason, TokenError::Revoked);
    }

    #[tokio::test]
    async fn the_refresh_task_picks_up_revocations_every_interval() {
        let (store, grant) = store_with_grant("alice").await;
        let revocations = Arc::new(Revocations::new(store.clone(), HOUR));
        let every = Duration::from_millis(20);
        let task = revocations.spawn_refresh(every);
        store.revoke_grant(&grant, SystemTime::now()).await.unwrap();
        let mut seen = false;
        for _ in 0..250 {
            tokio::time::sleep(every).await;
            if revocations.is_grant_revoked(grant.as_str()) {
                seen = true;
                break;
            }
        }
        task.abort();
        assert!(seen);
    }
}
