//! The one test suite every store backend runs (feature `conformance`).
//!
//! Each function checks one behaviour against a store it is given, which must be empty, and
//! panics when the store misbehaves. [`store_conformance_tests!`](crate::store_conformance_tests)
//! turns every function into a `#[tokio::test]` of the same name, so a backend runs the whole
//! suite with one line:
//!
//! ```ignore
//! // tests/store_sqlite.rs
//! use std::sync::Arc;
//! use mcpgate_issuer::store::{Store, sqlite::SqliteStore};
//!
//! mcpgate_issuer::store_conformance_tests!(|| async {
//!     Some(Arc::new(SqliteStore::open_temporary().await.unwrap()) as Arc<dyn Store>)
//! });
//! ```
//!
//! The factory returns `None` when the backend is not available here: a PostgreSQL suite
//! returns `None` unless `MCPGATE_TEST_DATABASE_URL` is set, and otherwise a store in a fresh
//! schema per test. Tests then run in parallel against one server.
//!
//! Times are fixed ([`at`]), never the clock, so every outcome is exact.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    AuthorizationCode, ClientId, ClientKind, ClientRecord, CodeConsumption, Grant, GrantFilter,
    GrantId, KeyState, Kid, PasswordHash, RefreshRotation, RefreshToken, ResourceUrl,
    RotationOutcome, Scope, Scopes, SigningAlgorithm, SigningKeyRecord, Store, StoreError,
    StoredPrivateKey, Subject, User, UserName,
};
use crate::secret::{TokenHash, generate_token};

/// Turns every conformance function into a `#[tokio::test]` of the same name.
///
/// `$make` is a closure returning a future of `Option<Arc<dyn Store>>`: a new, empty store
/// for each test, or `None` to skip (the backend is not configured here). The calling crate
/// needs `tokio` (features `macros`, `rt-multi-thread`).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            clients_round_trip_with_their_hashes_and_metadata,
            a_taken_client_id_is_refused,
            putting_a_client_again_changes_it_and_keeps_its_grants,
            touching_a_client_records_its_last_use,
            deleting_a_client_revokes_its_grants_and_removes_its_tokens,
            clients_unused_since_a_time_are_pruned_and_others_kept,
            a_code_is_consumed_once,
            a_replayed_code_names_its_grant,
            an_expired_code_is_refused,
            an_unknown_code_is_unknown,
            a_code_for_an_unknown_client_is_refused,
            concurrent_consumptions_of_a_code_succeed_once,
            a_refresh_token_rotates_to_its_replacement,
            reuse_outside_the_grace_window_revokes_the_grant_and_its_tokens,
            reuse_inside_the_grace_window_issues_again,
            a_rotation_asking_for_more_than_the_grant_changes_nothing,
            reuse_by_another_client_is_refused_and_changes_nothing,
            an_expired_refresh_token_does_not_rotate,
            a_refresh_token_of_a_revoked_grant_does_not_rotate,
            an_unknown_refresh_token_is_unknown,
            concurrent_rotations_of_one_token_rotate_exactly_once,
            concurrent_rotations_inside_the_grace_window_rotate_exactly_once,
            concurrent_rotations_of_many_tokens_are_each_decided_alone,
            revoking_a_grant_revokes_its_refresh_tokens,
            revoking_by_subject_revokes_only_that_subjects_grants,
            revoking_by_subject_and_client_spares_other_clients,
            an_unknown_grant_counts_as_revoked,
            revoked_grants_are_listed_since_a_time,
            grants_are_listed_by_filter,
            consent_covers_a_subset_not_a_superset,
            consents_accumulate_and_can_be_forgotten,
            consent_is_bound_to_the_redirect_uri_it_was_given_at,
            revoking_a_grant_forgets_the_consent_it_came_from,
            users_are_added_listed_and_disabled,
            a_taken_user_name_is_refused,
            disabling_a_user_revokes_their_grants,
            putting_a_user_again_changes_it_and_disabling_revokes_their_grants,
            a_replayed_jti_is_refused_until_it_expires,
            signing_keys_are_listed_activated_and_retired,
            a_second_active_signing_key_is_refused,
            expired_codes_tokens_and_revoked_grants_are_pruned,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let make = $make;
                match make().await {
                    Some(store) => $crate::store::conformance::$name(store).await,
                    None => eprintln!("skipped: store backend not configured"),
                }
            }
        )*
    };
}

/// A fixed instant, `offset` seconds after an arbitrary origin (November 2023).
pub fn at(offset: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + offset)
}

const MINUTE: Duration = Duration::from_secs(60);

fn scopes(list: &[&str]) -> Scopes {
    list.iter().map(|s| Scope::new(*s)).collect()
}

async fn client(store: &dyn Store, id: &str) -> ClientId {
    let record = ClientRecord {
        client_id: ClientId::new(id),
        secret_hash: None,
        registration_token_hash: None,
        kind: ClientKind::Dynamic,
        metadata: serde_json::json!({ "client_name": id }),
        created_at: at(0),
        last_used_at: None,
    };
    store.insert_client(&record).await.expect("insert client");
    record.client_id
}

async fn grant(store: &dyn Store, subject: &str, client: &ClientId) -> Grant {
    let grant = Grant {
        id: GrantId::generate(),
        subject: Subject::new(subject),
        client_id: client.clone(),
        scopes: scopes(&["mcp:read", "mcp:write"]),
        resource: Some(ResourceUrl::parse("https://mcp.example.com/mcp").expect("resource")),
        created_at: at(10),
        revoked_at: None,
    };
    store.create_grant(&grant).await.expect("create grant");
    grant
}

fn code_for(grant: &Grant, expires_at: SystemTime) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: TokenHash::of(&generate_token()),
        client_id: grant.client_id.clone(),
        redirect_uri: "http://127.0.0.1:33418/callback".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        resource: grant.resource.clone(),
        scopes: grant.scopes.clone(),
        subject: grant.subject.clone(),
        grant_id: grant.id.clone(),
        expires_at,
    }
}

async fn refresh_token(store: &dyn Store, grant: &Grant, expires_at: SystemTime) -> TokenHash {
    let token = RefreshToken {
        token_hash: TokenHash::of(&generate_token()),
        grant_id: grant.id.clone(),
        client_id: grant.client_id.clone(),
        issued_at: at(20),
        expires_at,
    };
    store
        .insert_refresh_token(&token)
        .await
        .expect("insert refresh token");
    token.token_hash
}

fn rotation(
    presented: TokenHash,
    client: &ClientId,
    now: SystemTime,
    grace: Duration,
) -> RefreshRotation {
    RefreshRotation {
        presented,
        replacement: TokenHash::of(&generate_token()),
        replacement_expires_at: now + Duration::from_secs(86_400),
        client_id: client.clone(),
        now,
        grace,
        scopes: None,
        resource: None,
    }
}

async fn is_current(store: &dyn Store, hash: &TokenHash) -> bool {
    let record = store
        .get_refresh_token(hash)
        .await
        .expect("get refresh token")
        .expect("token stored");
    record.rotated_at.is_none() && record.revoked_at.is_none()
}

// ---- clients --------------------------------------------------------------------------------

/// A client reads back as stored, hashes and metadata included.
pub async fn clients_round_trip_with_their_hashes_and_metadata(store: Arc<dyn Store>) {
    let record = ClientRecord {
        client_id: ClientId::new("https://app.example.com/client.json"),
        secret_hash: Some(TokenHash::of("secret")),
        registration_token_hash: Some(TokenHash::of("registration")),
        kind: ClientKind::MetadataDocument,
        metadata: serde_json::json!({
            "redirect_uris": ["https://app.example.com/cb"],
            "token_endpoint_auth_method": "none",
        }),
        created_at: at(5),
        last_used_at: Some(at(6)),
    };
    store.insert_client(&record).await.unwrap();
    assert_eq!(
        store.get_client(&record.client_id).await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(store.list_clients().await.unwrap(), vec![record]);
    assert_eq!(
        store.get_client(&ClientId::new("nobody")).await.unwrap(),
        None
    );
}

/// Registering a `client_id` twice is refused, naming the id.
pub async fn a_taken_client_id_is_refused(store: Arc<dyn Store>) {
    let id = client(&*store, "app").await;
    let again = ClientRecord {
        client_id: id,
        secret_hash: None,
        registration_token_hash: None,
        kind: ClientKind::Static,
        metadata: serde_json::json!({}),
        created_at: at(1),
        last_used_at: None,
    };
    let err = store.insert_client(&again).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { what: "client", id } if id == "app"),
        "{err:?}"
    );
}

/// `put_client` creates a client, then changes it in place: registration time, last use,
/// grants and refresh tokens stay.
pub async fn putting_a_client_again_changes_it_and_keeps_its_grants(store: Arc<dyn Store>) {
    let first = ClientRecord {
        client_id: ClientId::new("claude"),
        secret_hash: None,
        registration_token_hash: None,
        kind: ClientKind::Static,
        metadata: serde_json::json!({"client_name": "Claude"}),
        created_at: at(10),
        last_used_at: None,
    };
    assert!(store.put_client(&first).await.unwrap());
    store.touch_client(&first.client_id, at(20)).await.unwrap();
    let g = grant(&*store, "alice", &first.client_id).await;
    let token = refresh_token(&*store, &g, at(10_000)).await;
    let changed = ClientRecord {
        secret_hash: Some(TokenHash::of("new secret")),
        metadata: serde_json::json!({"client_name": "Claude (renamed)"}),
        created_at: at(30),
        ..first.clone()
    };
    assert!(!store.put_client(&changed).await.unwrap());
    let read = store.get_client(&first.client_id).await.unwrap().unwrap();
    assert_eq!(read.metadata, changed.metadata);
    assert_eq!(read.secret_hash, changed.secret_hash);
    assert_eq!(read.created_at, at(10));
    assert_eq!(read.last_used_at, Some(at(20)));
    assert!(!store.is_grant_revoked(&g.id).await.unwrap());
    assert!(is_current(&*store, &token).await);
    assert_eq!(store.list_clients().await.unwrap().len(), 1);
}

/// Touching a client sets its last use; touching an unknown one says so.
pub async fn touching_a_client_records_its_last_use(store: Arc<dyn Store>) {
    let id = client(&*store, "app").await;
    store.touch_client(&id, at(100)).await.unwrap();
    let record = store.get_client(&id).await.unwrap().unwrap();
    assert_eq!(record.last_used_at, Some(at(100)));
    let err = store
        .touch_client(&ClientId::new("nobody"), at(100))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

/// Deleting a client revokes its grants (kept, so replicas learn of it) and removes its codes,
/// refresh tokens and consents; other clients are untouched.
pub async fn deleting_a_client_revokes_its_grants_and_removes_its_tokens(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let other = client(&*store, "other").await;
    let g = grant(&*store, "alice", &app).await;
    let kept = grant(&*store, "alice", &other).await;
    let token = refresh_token(&*store, &g, at(10_000)).await;
    let code = code_for(&g, at(1_000));
    store.insert_code(&code).await.unwrap();
    store
        .remember_consent(&g.subject, &app, &g.scopes, CB, at(10))
        .await
        .unwrap();

    assert!(store.delete_client(&app, at(50)).await.unwrap());
    assert!(!store.delete_client(&app, at(51)).await.unwrap());

    assert_eq!(store.get_client(&app).await.unwrap(), None);
    let revoked = store.get_grant(&g.id).await.unwrap().expect("grant kept");
    assert_eq!(revoked.revoked_at, Some(at(50)));
    assert!(store.is_grant_revoked(&g.id).await.unwrap());
    assert!(!store.is_grant_revoked(&kept.id).await.unwrap());
    assert_eq!(store.get_refresh_token(&token).await.unwrap(), None);
    assert_eq!(
        store.consume_code(&code.code_hash, at(60)).await.unwrap(),
        CodeConsumption::Unknown
    );
    assert!(
        !store
            .consent_covers(&g.subject, &app, &Scopes::new(), CB)
            .await
            .unwrap()
    );
}

/// Clients of a kind not used since a time are pruned (their grants revoked); clients used
/// since, registered since, or of another kind stay.
pub async fn clients_unused_since_a_time_are_pruned_and_others_kept(store: Arc<dyn Store>) {
    let stale = client(&*store, "stale").await; // registered at(0), never used
    let used = client(&*store, "used").await;
    store.touch_client(&used, at(500)).await.unwrap();
    let used_long_ago = client(&*store, "used-long-ago").await;
    store.touch_client(&used_long_ago, at(50)).await.unwrap();
    let configured = ClientRecord {
        client_id: ClientId::new("configured"),
        secret_hash: Some(TokenHash::of("s")),
        registration_token_hash: None,
        kind: ClientKind::Static,
        metadata: serde_json::json!({}),
        created_at: at(0),
        last_used_at: None,
    };
    store.insert_client(&configured).await.unwrap();
    let g = grant(&*store, "alice", &stale).await;

    let mut pruned = store
        .delete_unused_clients(ClientKind::Dynamic, at(100), at(1_000))
        .await
        .unwrap();
    pruned.sort();
    assert_eq!(pruned, vec![stale.clone(), used_long_ago.clone()]);
    assert_eq!(store.get_client(&stale).await.unwrap(), None);
    assert!(store.get_client(&used).await.unwrap().is_some());
    assert!(
        store
            .get_client(&configured.client_id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.get_grant(&g.id).await.unwrap().unwrap().revoked_at,
        Some(at(1_000))
    );
}

// ---- authorization codes --------------------------------------------------------------------

/// The first consumption of a valid code returns it; the second does not.
pub async fn a_code_is_consumed_once(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let code = code_for(&g, at(600));
    store.insert_code(&code).await.unwrap();
    assert_eq!(
        store.consume_code(&code.code_hash, at(100)).await.unwrap(),
        CodeConsumption::Consumed(Box::new(code.clone()))
    );
    assert_ne!(
        store.consume_code(&code.code_hash, at(101)).await.unwrap(),
        CodeConsumption::Consumed(Box::new(code))
    );
}

/// A code presented again after it was consumed answers with its grant, so the caller can
/// revoke it — even after the code's expiry.
pub async fn a_replayed_code_names_its_grant(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let code = code_for(&g, at(600));
    store.insert_code(&code).await.unwrap();
    store.consume_code(&code.code_hash, at(100)).await.unwrap();
    assert_eq!(
        store.consume_code(&code.code_hash, at(200)).await.unwrap(),
        CodeConsumption::AlreadyUsed(g.id.clone())
    );
    assert_eq!(
        store
            .consume_code(&code.code_hash, at(5_000))
            .await
            .unwrap(),
        CodeConsumption::AlreadyUsed(g.id)
    );
}

/// A code presented at or after its expiry is refused and stays unspent.
pub async fn an_expired_code_is_refused(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let code = code_for(&g, at(600));
    store.insert_code(&code).await.unwrap();
    assert_eq!(
        store.consume_code(&code.code_hash, at(600)).await.unwrap(),
        CodeConsumption::Expired
    );
    assert_eq!(
        store.consume_code(&code.code_hash, at(700)).await.unwrap(),
        CodeConsumption::Expired
    );
}

/// A code never issued is unknown.
pub async fn an_unknown_code_is_unknown(store: Arc<dyn Store>) {
    assert_eq!(
        store
            .consume_code(&TokenHash::of("never issued"), at(0))
            .await
            .unwrap(),
        CodeConsumption::Unknown
    );
}

/// A code for a client the store does not know is refused.
pub async fn a_code_for_an_unknown_client_is_refused(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let mut g = grant(&*store, "alice", &app).await;
    g.client_id = ClientId::new("nobody");
    let err = store.insert_code(&code_for(&g, at(600))).await.unwrap_err();
    assert!(
        matches!(err, StoreError::MissingReference { .. }),
        "{err:?}"
    );
}

/// Of 20 concurrent consumptions of one code, exactly one gets it; the others are told it was
/// used, with its grant.
pub async fn concurrent_consumptions_of_a_code_succeed_once(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let code = code_for(&g, at(600));
    store.insert_code(&code).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            let hash = code.code_hash;
            tokio::spawn(async move { store.consume_code(&hash, at(100)).await })
        })
        .collect();
    let mut consumed = 0;
    for task in tasks {
        match task.await.expect("task").expect("consume") {
            CodeConsumption::Consumed(_) => consumed += 1,
            CodeConsumption::AlreadyUsed(id) => assert_eq!(id, g.id),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(consumed, 1);
}

// ---- refresh tokens -------------------------------------------------------------------------

/// A current token rotates: the grant comes back, the old token is spent and the replacement
/// is current.
pub async fn a_refresh_token_rotates_to_its_replacement(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let old = refresh_token(&*store, &g, at(10_000)).await;
    let r = rotation(old, &app, at(100), Duration::ZERO);
    assert_eq!(
        store.rotate_refresh_token(&r).await.unwrap(),
        RotationOutcome::Rotated(g.clone())
    );
    let spent = store.get_refresh_token(&old).await.unwrap().unwrap();
    assert_eq!(spent.rotated_at, Some(at(100)));
    let new = store
        .get_refresh_token(&r.replacement)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new.token.grant_id, g.id);
    assert_eq!(new.token.client_id, app);
    assert_eq!(new.token.expires_at, r.replacement_expires_at);
    assert!(is_current(&*store, &r.replacement).await);
    // The replacement rotates in turn.
    let next = rotation(r.replacement, &app, at(200), Duration::ZERO);
    assert!(matches!(
        store.rotate_refresh_token(&next).await.unwrap(),
        RotationOutcome::Rotated(_)
    ));
}

/// A rotated token presented again after the grace window revokes the whole grant and every
/// refresh token of it, the attacker's and the legitimate client's alike.
pub async fn reuse_outside_the_grace_window_revokes_the_grant_and_its_tokens(
    store: Arc<dyn Store>,
) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let old = refresh_token(&*store, &g, at(10_000)).await;
    let sibling = refresh_token(&*store, &g, at(10_000)).await;
    let first = rotation(old, &app, at(100), MINUTE);
    store.rotate_refresh_token(&first).await.unwrap();

    let reuse = rotation(old, &app, at(100 + 60), MINUTE);
    assert_eq!(
        store.rotate_refresh_token(&reuse).await.unwrap(),
        RotationOutcome::Reused(g.id.clone())
    );
    assert!(store.is_grant_revoked(&g.id).await.unwrap());
    assert_eq!(
        store.get_grant(&g.id).await.unwrap().unwrap().revoked_at,
        Some(at(160))
    );
    for hash in [first.replacement, sibling] {
        let record = store.get_refresh_token(&hash).await.unwrap().unwrap();
        assert_eq!(record.revoked_at, Some(at(160)), "{hash:?} revoked");
    }
    assert_eq!(
        store.get_refresh_token(&reuse.replacement).await.unwrap(),
        None,
        "no replacement stored for a reuse"
    );
    let later = rotation(first.replacement, &app, at(170), MINUTE);
    assert_eq!(
        store.rotate_refresh_token(&later).await.unwrap(),
        RotationOutcome::Revoked
    );
}

/// A rotated token presented again by its client inside the grace window is answered as
/// within grace, and nothing is stored: the first replacement stays the grant's one current
/// token.
pub async fn reuse_inside_the_grace_window_issues_again(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let old = refresh_token(&*store, &g, at(10_000)).await;
    let first = rotation(old, &app, at(100), MINUTE);
    store.rotate_refresh_token(&first).await.unwrap();

    let retry = rotation(old, &app, at(100 + 59), MINUTE);
    assert_eq!(
        store.rotate_refresh_token(&retry).await.unwrap(),
        RotationOutcome::WithinGrace(g.clone())
    );
    assert!(!store.is_grant_revoked(&g.id).await.unwrap());
    assert!(is_current(&*store, &first.replacement).await);
    assert!(
        store
            .get_refresh_token(&retry.replacement)
            .await
            .unwrap()
            .is_none()
    );
}

/// A rotation that asks for a scope the grant does not hold, or names another resource, is
/// refused and changes nothing: the token stays current, and a later correct request rotates
/// it. A narrower scope and the grant's own resource rotate.
pub async fn a_rotation_asking_for_more_than_the_grant_changes_nothing(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let old = refresh_token(&*store, &g, at(10_000)).await;
    let mut wider = rotation(old, &app, at(100), Duration::ZERO);
    wider.scopes = Some(scopes(&["mcp:read", "admin"]));
    assert_eq!(
        store.rotate_refresh_token(&wider).await.unwrap(),
        RotationOutcome::ScopeNotGranted("admin".into())
    );
    let mut elsewhere = rotation(old, &app, at(101), Duration::ZERO);
    elsewhere.resource = Some(ResourceUrl::parse("https://other.example.com/mcp").unwrap());
    assert_eq!(
        store.rotate_refresh_token(&elsewhere).await.unwrap(),
        RotationOutcome::OtherResource
    );
    assert!(is_current(&*store, &old).await);
    for refused in [&wider, &elsewhere] {
        assert!(
            store
                .get_refresh_token(&refused.replacement)
                .await
                .unwrap()
                .is_none()
        );
    }
    let mut narrower = rotation(old, &app, at(200), Duration::ZERO);
    narrower.scopes = Some(scopes(&["mcp:read"]));
    narrower.resource = g.resource.clone();
    assert_eq!(
        store.rotate_refresh_token(&narrower).await.unwrap(),
        RotationOutcome::Rotated(g.clone())
    );
    assert!(!store.is_grant_revoked(&g.id).await.unwrap());
}

/// A token presented by a client other than its own is refused, rotated or not, and nothing
/// changes.
pub async fn reuse_by_another_client_is_refused_and_changes_nothing(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let thief = client(&*store, "thief").await;
    let g = grant(&*store, "alice", &app).await;
    let old = refresh_token(&*store, &g, at(10_000)).await;
    let stolen = rotation(old, &thief, at(50), MINUTE);
    assert_eq!(
        store.rotate_refresh_token(&stolen).await.unwrap(),
        RotationOutcome::WrongClient
    );
    assert!(is_current(&*store, &old).await);
    let first = rotation(old, &app, at(100), MINUTE);
    store.rotate_refresh_token(&first).await.unwrap();
    let within_grace = rotation(old, &thief, at(101), MINUTE);
    assert_eq!(
        store.rotate_refresh_token(&within_grace).await.unwrap(),
        RotationOutcome::WrongClient
    );
    assert_eq!(
        store
            .get_refresh_token(&within_grace.replacement)
            .await
            .unwrap(),
        None
    );
    assert!(!store.is_grant_revoked(&g.id).await.unwrap());
}

/// A token presented at or after its expiry does not rotate.
pub async fn an_expired_refresh_token_does_not_rotate(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let old = refresh_token(&*store, &g, at(1_000)).await;
    let late = rotation(old, &app, at(1_000), Duration::ZERO);
    assert_eq!(
        store.rotate_refresh_token(&late).await.unwrap(),
        RotationOutcome::Expired
    );
    assert_eq!(
        store.get_refresh_token(&late.replacement).await.unwrap(),
        None
    );
}

/// A token of a revoked grant does not rotate.
pub async fn a_refresh_token_of_a_revoked_grant_does_not_rotate(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let old = refresh_token(&*store, &g, at(10_000)).await;
    assert!(store.revoke_grant(&g.id, at(50)).await.unwrap());
    assert_eq!(
        store
            .rotate_refresh_token(&rotation(old, &app, at(100), MINUTE))
            .await
            .unwrap(),
        RotationOutcome::Revoked
    );
}

/// A token never issued is unknown.
pub async fn an_unknown_refresh_token_is_unknown(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let r = rotation(TokenHash::of("never issued"), &app, at(0), MINUTE);
    assert_eq!(
        store.rotate_refresh_token(&r).await.unwrap(),
        RotationOutcome::Unknown
    );
}

async fn rotate_concurrently(
    store: &Arc<dyn Store>,
    old: TokenHash,
    client: &ClientId,
    grace: Duration,
) -> Vec<RotationOutcome> {
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(store);
            let r = rotation(old, client, at(100), grace);
            tokio::spawn(async move { store.rotate_refresh_token(&r).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("rotate"));
    }
    outcomes
}

/// Of 20 concurrent rotations of one token with no grace window, exactly one rotates; every
/// other is a reuse, and the grant ends revoked.
pub async fn concurrent_rotations_of_one_token_rotate_exactly_once(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let old = refresh_token(&*store, &g, at(10_000)).await;
    let outcomes = rotate_concurrently(&store, old, &app, Duration::ZERO).await;
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, RotationOutcome::Rotated(_)))
        .count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    // The first reuse revokes the grant; later ones find it revoked.
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            RotationOutcome::Rotated(_) | RotationOutcome::Reused(_) | RotationOutcome::Revoked
        )),
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, RotationOutcome::Reused(id) if *id == g.id))
    );
    assert!(store.is_grant_revoked(&g.id).await.unwrap());
}

/// Of 20 concurrent rotations of one token inside the grace window, exactly one rotates and the
/// others are answered within grace.
pub async fn concurrent_rotations_inside_the_grace_window_rotate_exactly_once(
    store: Arc<dyn Store>,
) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let old = refresh_token(&*store, &g, at(10_000)).await;
    let outcomes = rotate_concurrently(&store, old, &app, MINUTE).await;
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, RotationOutcome::Rotated(_)))
        .count();
    let within = outcomes
        .iter()
        .filter(|o| matches!(o, RotationOutcome::WithinGrace(_)))
        .count();
    assert_eq!((rotated, within), (1, 19), "{outcomes:?}");
    assert!(!store.is_grant_revoked(&g.id).await.unwrap());
}

/// Rotations of many tokens at once — current ones, a rotated one presented again, another
/// client's, an expired one, an unknown one — are each decided as if it ran alone, and each
/// replacement is stored (a store that writes rotations together must not mix them up).
pub async fn concurrent_rotations_of_many_tokens_are_each_decided_alone(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let other_app = client(&*store, "other").await;
    let mut current = Vec::new();
    for i in 0..24 {
        let g = grant(&*store, &format!("user-{i}"), &app).await;
        current.push((refresh_token(&*store, &g, at(10_000)).await, g));
    }
    let reused_grant = grant(&*store, "mallory", &app).await;
    let reused = refresh_token(&*store, &reused_grant, at(10_000)).await;
    store
        .rotate_refresh_token(&rotation(reused, &app, at(50), Duration::ZERO))
        .await
        .unwrap();
    let foreign = grant(&*store, "bob", &other_app).await;
    let foreign_token = refresh_token(&*store, &foreign, at(10_000)).await;
    let expired_grant = grant(&*store, "carol", &app).await;
    let expired = refresh_token(&*store, &expired_grant, at(60)).await;

    let mut rotations: Vec<RefreshRotation> = current
        .iter()
        .map(|(hash, _)| rotation(*hash, &app, at(100), Duration::ZERO))
        .collect();
    rotations.push(rotation(reused, &app, at(100), Duration::ZERO));
    rotations.push(rotation(foreign_token, &app, at(100), Duration::ZERO));
    rotations.push(rotation(expired, &app, at(100), Duration::ZERO));
    rotations.push(rotation(
        TokenHash::of(&generate_token()),
        &app,
        at(100),
        Duration::ZERO,
    ));
    let tasks: Vec<_> = rotations
        .iter()
        .cloned()
        .map(|r| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.rotate_refresh_token(&r).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("rotate"));
    }
    for (i, (hash, g)) in current.iter().enumerate() {
        assert!(
            matches!(&outcomes[i], RotationOutcome::Rotated(got) if got.id == g.id),
            "token {i}: {:?}",
            outcomes[i]
        );
        assert!(!is_current(&*store, hash).await);
        assert!(is_current(&*store, &rotations[i].replacement).await);
        let replacement = store
            .get_refresh_token(&rotations[i].replacement)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(replacement.token.grant_id, g.id);
    }
    let n = current.len();
    assert_eq!(
        outcomes[n],
        RotationOutcome::Reused(reused_grant.id.clone())
    );
    assert!(store.is_grant_revoked(&reused_grant.id).await.unwrap());
    assert_eq!(outcomes[n + 1], RotationOutcome::WrongClient);
    assert!(is_current(&*store, &foreign_token).await);
    assert_eq!(outcomes[n + 2], RotationOutcome::Expired);
    assert_eq!(outcomes[n + 3], RotationOutcome::Unknown);
    for r in &rotations[n..] {
        assert!(
            store
                .get_refresh_token(&r.replacement)
                .await
                .unwrap()
                .is_none()
        );
    }
    for (_, g) in &current {
        assert!(!store.is_grant_revoked(&g.id).await.unwrap());
    }
}

// ---- grants ---------------------------------------------------------------------------------

/// Revoking a grant revokes every refresh token of it, and only once.
pub async fn revoking_a_grant_revokes_its_refresh_tokens(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let g = grant(&*store, "alice", &app).await;
    let other = grant(&*store, "alice", &app).await;
    let a = refresh_token(&*store, &g, at(10_000)).await;
    let b = refresh_token(&*store, &g, at(10_000)).await;
    let untouched = refresh_token(&*store, &other, at(10_000)).await;
    assert!(store.revoke_grant(&g.id, at(30)).await.unwrap());
    assert!(!store.revoke_grant(&g.id, at(31)).await.unwrap());
    for hash in [a, b] {
        let record = store.get_refresh_token(&hash).await.unwrap().unwrap();
        assert_eq!(record.revoked_at, Some(at(30)));
    }
    assert!(is_current(&*store, &untouched).await);
    assert_eq!(
        store.get_grant(&g.id).await.unwrap().unwrap().revoked_at,
        Some(at(30)),
        "a second revocation keeps the first time"
    );
}

/// Revoking by subject revokes that subject's grants with every client, and no one else's.
pub async fn revoking_by_subject_revokes_only_that_subjects_grants(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let other = client(&*store, "other").await;
    let a1 = grant(&*store, "alice", &app).await;
    let a2 = grant(&*store, "alice", &other).await;
    let b = grant(&*store, "bob", &app).await;
    let token = refresh_token(&*store, &a2, at(10_000)).await;
    let mut revoked = store
        .revoke_grants(&Subject::new("alice"), None, at(40))
        .await
        .unwrap();
    revoked.sort();
    let mut expected = vec![a1.id.clone(), a2.id.clone()];
    expected.sort();
    assert_eq!(revoked, expected);
    assert!(!store.is_grant_revoked(&b.id).await.unwrap());
    assert!(!is_current(&*store, &token).await);
    assert!(
        store
            .revoke_grants(&Subject::new("alice"), None, at(41))
            .await
            .unwrap()
            .is_empty(),
        "nothing left to revoke"
    );
}

/// Revoking by subject and client spares the subject's grants with other clients.
pub async fn revoking_by_subject_and_client_spares_other_clients(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let other = client(&*store, "other").await;
    let a1 = grant(&*store, "alice", &app).await;
    let a2 = grant(&*store, "alice", &other).await;
    let revoked = store
        .revoke_grants(&Subject::new("alice"), Some(&app), at(40))
        .await
        .unwrap();
    assert_eq!(revoked, vec![a1.id.clone()]);
    assert!(store.is_grant_revoked(&a1.id).await.unwrap());
    assert!(!store.is_grant_revoked(&a2.id).await.unwrap());
}

/// A grant the store does not know counts as revoked.
pub async fn an_unknown_grant_counts_as_revoked(store: Arc<dyn Store>) {
    assert!(
        store
            .is_grant_revoked(&GrantId::new("never-created"))
            .await
            .unwrap()
    );
}

/// Revocations at or after a time are listed with when they happened.
pub async fn revoked_grants_are_listed_since_a_time(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let early = grant(&*store, "alice", &app).await;
    let late = grant(&*store, "bob", &app).await;
    let _active = grant(&*store, "carol", &app).await;
    store.revoke_grant(&early.id, at(100)).await.unwrap();
    store.revoke_grant(&late.id, at(200)).await.unwrap();
    let since = store.revoked_grants_since(at(150)).await.unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].id, late.id);
    assert_eq!(since[0].revoked_at, at(200));
    assert_eq!(store.revoked_grants_since(at(100)).await.unwrap().len(), 2);
}

/// Listing grants filters by subject and client, and leaves revoked ones out unless asked.
pub async fn grants_are_listed_by_filter(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let other = client(&*store, "other").await;
    let a1 = grant(&*store, "alice", &app).await;
    let a2 = grant(&*store, "alice", &other).await;
    let b = grant(&*store, "bob", &app).await;
    store.revoke_grant(&a2.id, at(50)).await.unwrap();
    let ids = |grants: Vec<Grant>| {
        let mut ids: Vec<GrantId> = grants.into_iter().map(|g| g.id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<GrantId>| {
        v.sort();
        v
    };
    let all_active = store.list_grants(&GrantFilter::default()).await.unwrap();
    assert_eq!(ids(all_active), sorted(vec![a1.id.clone(), b.id.clone()]));
    let alice_all = GrantFilter {
        subject: Some(Subject::new("alice")),
        client_id: None,
        include_revoked: true,
    };
    assert_eq!(
        ids(store.list_grants(&alice_all).await.unwrap()),
        sorted(vec![a1.id.clone(), a2.id.clone()])
    );
    let app_only = GrantFilter {
        subject: None,
        client_id: Some(app),
        include_revoked: false,
    };
    let listed = store.list_grants(&app_only).await.unwrap();
    assert_eq!(ids(listed.clone()), sorted(vec![a1.id.clone(), b.id]));
    let first = listed.into_iter().find(|g| g.id == a1.id).unwrap();
    assert_eq!(first, a1, "a listed grant reads back as created");
}

// ---- consents -------------------------------------------------------------------------------

/// The redirect URI consents in these tests are given at.
const CB: &str = "https://app.example/cb";

/// A consent covers what was approved and any part of it, not more.
pub async fn consent_covers_a_subset_not_a_superset(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let alice = Subject::new("alice");
    assert!(
        !store
            .consent_covers(&alice, &app, &Scopes::new(), CB)
            .await
            .unwrap(),
        "no consent yet"
    );
    store
        .remember_consent(&alice, &app, &scopes(&["read", "write"]), CB, at(0))
        .await
        .unwrap();
    for covered in [&[][..], &["read"], &["write", "read"]] {
        assert!(
            store
                .consent_covers(&alice, &app, &scopes(covered), CB)
                .await
                .unwrap(),
            "{covered:?}"
        );
    }
    assert!(
        !store
            .consent_covers(&alice, &app, &scopes(&["read", "admin"]), CB)
            .await
            .unwrap()
    );
    assert!(
        !store
            .consent_covers(&Subject::new("bob"), &app, &scopes(&["read"]), CB)
            .await
            .unwrap(),
        "another subject's consent covers nothing"
    );
}

/// Consents add up across approvals, and forgetting removes all of them.
pub async fn consents_accumulate_and_can_be_forgotten(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let alice = Subject::new("alice");
    store
        .remember_consent(&alice, &app, &scopes(&["read"]), CB, at(0))
        .await
        .unwrap();
    store
        .remember_consent(&alice, &app, &scopes(&["write"]), CB, at(1))
        .await
        .unwrap();
    assert!(
        store
            .consent_covers(&alice, &app, &scopes(&["read", "write"]), CB)
            .await
            .unwrap()
    );
    assert!(store.forget_consent(&alice, &app).await.unwrap());
    assert!(!store.forget_consent(&alice, &app).await.unwrap());
    assert!(
        !store
            .consent_covers(&alice, &app, &scopes(&["read"]), CB)
            .await
            .unwrap()
    );
}

/// A consent covers only the redirect URIs it was given at, exactly; the newest ones are kept.
pub async fn consent_is_bound_to_the_redirect_uri_it_was_given_at(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let alice = Subject::new("alice");
    let read = scopes(&["read"]);
    store
        .remember_consent(&alice, &app, &read, CB, at(0))
        .await
        .unwrap();
    for other in [
        "https://evil.example/cb",
        "https://app.example/cb/",
        "https://app.example/CB",
        "http://127.0.0.1:7777/cb",
    ] {
        assert!(
            !store
                .consent_covers(&alice, &app, &read, other)
                .await
                .unwrap(),
            "{other}"
        );
    }
    store
        .remember_consent(&alice, &app, &read, "http://127.0.0.1:7777/cb", at(1))
        .await
        .unwrap();
    for uri in [CB, "http://127.0.0.1:7777/cb"] {
        assert!(
            store
                .consent_covers(&alice, &app, &read, uri)
                .await
                .unwrap(),
            "{uri}"
        );
    }
    for i in 0..crate::store::MAX_CONSENTED_REDIRECTS {
        store
            .remember_consent(
                &alice,
                &app,
                &read,
                &format!("http://127.0.0.1:{}/cb", 9000 + i),
                at(2),
            )
            .await
            .unwrap();
    }
    assert!(
        !store.consent_covers(&alice, &app, &read, CB).await.unwrap(),
        "the oldest is dropped"
    );
    assert!(
        store
            .consent_covers(&alice, &app, &read, "http://127.0.0.1:9000/cb")
            .await
            .unwrap()
    );
}

/// Revoking a grant — alone, by subject, or by reuse of a rotated refresh token — forgets the
/// consent of its subject and client: the next authorization asks again.
pub async fn revoking_a_grant_forgets_the_consent_it_came_from(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let other = client(&*store, "other").await;
    let read = scopes(&["read"]);
    let given = |subject: &'static str, client: ClientId| {
        let store = store.clone();
        let read = read.clone();
        async move {
            store
                .consent_covers(&Subject::new(subject), &client, &read, CB)
                .await
                .unwrap()
        }
    };
    for (subject, c) in [("alice", &app), ("alice", &other), ("bob", &app)] {
        store
            .remember_consent(&Subject::new(subject), c, &read, CB, at(0))
            .await
            .unwrap();
    }
    let g = grant(&*store, "alice", &app).await;
    assert!(store.revoke_grant(&g.id, at(5)).await.unwrap());
    assert!(!given("alice", app.clone()).await);
    assert!(
        given("alice", other.clone()).await,
        "another client's stays"
    );
    assert!(given("bob", app.clone()).await, "another user's stays");

    grant(&*store, "bob", &app).await;
    store
        .revoke_grants(&Subject::new("bob"), None, at(6))
        .await
        .unwrap();
    assert!(!given("bob", app.clone()).await);

    let g = grant(&*store, "alice", &other).await;
    let token = refresh_token(&*store, &g, at(10_000)).await;
    let first = rotation(token, &other, at(10), Duration::ZERO);
    assert!(matches!(
        store.rotate_refresh_token(&first).await.unwrap(),
        RotationOutcome::Rotated(_)
    ));
    let again = rotation(token, &other, at(20), Duration::ZERO);
    assert!(matches!(
        store.rotate_refresh_token(&again).await.unwrap(),
        RotationOutcome::Reused(_)
    ));
    assert!(!given("alice", other.clone()).await, "reuse forgets it too");
}

// ---- users ----------------------------------------------------------------------------------

fn user(name: &str) -> User {
    User {
        name: UserName::new(name),
        password_hash: PasswordHash::new(format!(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${name}aGFzaA"
        ))
        .expect("argon2id PHC"),
        created_at: at(0),
        disabled_at: None,
        configured: false,
    }
}

/// Users read back as added, list by name, and are disabled once.
pub async fn users_are_added_listed_and_disabled(store: Arc<dyn Store>) {
    store.add_user(&user("bob")).await.unwrap();
    store.add_user(&user("alice")).await.unwrap();
    assert_eq!(
        store.get_user(&UserName::new("alice")).await.unwrap(),
        Some(user("alice"))
    );
    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let bob = UserName::new("bob");
    assert!(store.disable_user(&bob, at(9)).await.unwrap());
    assert!(!store.disable_user(&bob, at(10)).await.unwrap());
    assert_eq!(
        store.get_user(&bob).await.unwrap().unwrap().disabled_at,
        Some(at(9))
    );
    assert!(
        !store
            .disable_user(&UserName::new("nobody"), at(9))
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_user(&UserName::new("nobody")).await.unwrap(),
        None
    );
}

/// Adding a user whose name is taken is refused.
pub async fn a_taken_user_name_is_refused(store: Arc<dyn Store>) {
    store.add_user(&user("alice")).await.unwrap();
    let err = store.add_user(&user("alice")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { what: "user", id } if id == "alice"),
        "{err:?}"
    );
}

/// Disabling a user revokes every grant they gave, with its refresh tokens; other users'
/// grants are untouched.
pub async fn disabling_a_user_revokes_their_grants(store: Arc<dyn Store>) {
    store.add_user(&user("bob")).await.unwrap();
    let app = client(&*store, "app").await;
    let mine = grant(&*store, "bob", &app).await;
    let token = refresh_token(&*store, &mine, at(10_000)).await;
    let theirs = grant(&*store, "alice", &app).await;
    assert!(
        store
            .disable_user(&UserName::new("bob"), at(9))
            .await
            .unwrap()
    );
    assert!(store.is_grant_revoked(&mine.id).await.unwrap());
    assert!(!is_current(&*store, &token).await);
    assert!(!store.is_grant_revoked(&theirs.id).await.unwrap());
}

/// Putting a user adds it, then changes it in place: its password hash, whether configured,
/// whether disabled (a user it disables has their grants revoked; one disabled already keeps
/// its time), never when it was added.
pub async fn putting_a_user_again_changes_it_and_disabling_revokes_their_grants(
    store: Arc<dyn Store>,
) {
    let mut bob = user("bob");
    bob.configured = true;
    assert!(store.put_user(&bob).await.unwrap(), "added");
    let name = UserName::new("bob");
    assert_eq!(store.get_user(&name).await.unwrap(), Some(bob.clone()));
    let app = client(&*store, "app").await;
    let first = grant(&*store, "bob", &app).await;

    let mut changed = bob.clone();
    changed.password_hash = user("bobby").password_hash;
    changed.created_at = at(50);
    assert!(
        !store.put_user(&changed).await.unwrap(),
        "changed, not added"
    );
    let read = store.get_user(&name).await.unwrap().unwrap();
    assert_eq!(read.password_hash, changed.password_hash);
    assert_eq!(read.created_at, at(0), "when it was added is kept");
    assert!(!store.is_grant_revoked(&first.id).await.unwrap());

    changed.disabled_at = Some(at(60));
    store.put_user(&changed).await.unwrap();
    assert_eq!(
        store.get_user(&name).await.unwrap().unwrap().disabled_at,
        Some(at(60))
    );
    assert!(store.is_grant_revoked(&first.id).await.unwrap());
    changed.disabled_at = Some(at(70));
    store.put_user(&changed).await.unwrap();
    assert_eq!(
        store.get_user(&name).await.unwrap().unwrap().disabled_at,
        Some(at(60)),
        "disabled already: keeps its time"
    );

    changed.disabled_at = None;
    changed.configured = false;
    store.put_user(&changed).await.unwrap();
    let read = store.get_user(&name).await.unwrap().unwrap();
    assert_eq!((read.disabled_at, read.configured), (None, false));
    let second = grant(&*store, "bob", &app).await;
    assert!(!store.is_grant_revoked(&second.id).await.unwrap());
}

// ---- replay ---------------------------------------------------------------------------------

/// A `jti` is accepted once per issuer until it expires; after that it may be used again, and
/// pruning forgets it.
pub async fn a_replayed_jti_is_refused_until_it_expires(store: Arc<dyn Store>) {
    assert!(
        store
            .remember_jti("app", "j1", at(100), at(0))
            .await
            .unwrap()
    );
    assert!(
        !store
            .remember_jti("app", "j1", at(100), at(50))
            .await
            .unwrap()
    );
    assert!(
        store
            .remember_jti("other", "j1", at(100), at(50))
            .await
            .unwrap(),
        "another issuer's jti is another jti"
    );
    assert!(
        store
            .remember_jti("app", "j1", at(300), at(100))
            .await
            .unwrap(),
        "an expired entry no longer blocks"
    );
    assert!(
        !store
            .remember_jti("app", "j1", at(300), at(200))
            .await
            .unwrap()
    );
    assert_eq!(
        store.prune_jtis(at(150)).await.unwrap(),
        1,
        "other/j1 expired"
    );
    assert!(
        !store
            .remember_jti("app", "j1", at(300), at(250))
            .await
            .unwrap()
    );
}

// ---- signing keys ---------------------------------------------------------------------------

fn signing_key(kid: &str, state: KeyState, created: u64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: Kid::new(kid),
        algorithm: SigningAlgorithm::Es256,
        private_key: StoredPrivateKey::Aes256Gcm(vec![1, 2, 3, kid.len() as u8]),
        public_jwk: serde_json::json!({ "kty": "EC", "crv": "P-256", "kid": kid }),
        created_at: at(created),
        state,
        retired_at: None,
    }
}

/// Keys list oldest first as stored; activating one makes the previous active key verify
/// until the given time; retiring ends a key.
pub async fn signing_keys_are_listed_activated_and_retired(store: Arc<dyn Store>) {
    let first = signing_key("k1", KeyState::Active, 0);
    let second = signing_key("k2", KeyState::Verifying, 10);
    store.insert_signing_key(&first).await.unwrap();
    store.insert_signing_key(&second).await.unwrap();
    assert_eq!(
        store.list_signing_keys().await.unwrap(),
        vec![first.clone(), second.clone()]
    );

    store
        .activate_signing_key(&second.kid, at(500))
        .await
        .unwrap();
    let keys = store.list_signing_keys().await.unwrap();
    assert_eq!(
        (keys[0].state, keys[0].retired_at),
        (KeyState::Verifying, Some(at(500)))
    );
    assert_eq!(
        (keys[1].state, keys[1].retired_at),
        (KeyState::Active, None)
    );

    assert!(store.retire_signing_key(&first.kid, at(500)).await.unwrap());
    assert!(!store.retire_signing_key(&first.kid, at(501)).await.unwrap());
    let keys = store.list_signing_keys().await.unwrap();
    assert_eq!(
        (keys[0].state, keys[0].retired_at),
        (KeyState::Retired, Some(at(500)))
    );
    let err = store
        .activate_signing_key(&first.kid, at(600))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "a retired key cannot come back: {err:?}"
    );
    let err = store
        .activate_signing_key(&Kid::new("nope"), at(600))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

/// One key is active at a time: inserting a second active key is refused.
pub async fn a_second_active_signing_key_is_refused(store: Arc<dyn Store>) {
    store
        .insert_signing_key(&signing_key("k1", KeyState::Active, 0))
        .await
        .unwrap();
    let err = store
        .insert_signing_key(&signing_key("k2", KeyState::Active, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
}

// ---- pruning --------------------------------------------------------------------------------

/// Pruning deletes codes and refresh tokens expired before a time, and grants revoked before
/// it, and nothing newer.
pub async fn expired_codes_tokens_and_revoked_grants_are_pruned(store: Arc<dyn Store>) {
    let app = client(&*store, "app").await;
    let old = grant(&*store, "alice", &app).await;
    let live = grant(&*store, "bob", &app).await;
    let old_code = code_for(&live, at(100));
    let live_code = code_for(&live, at(1_000));
    store.insert_code(&old_code).await.unwrap();
    store.insert_code(&live_code).await.unwrap();
    let old_token = refresh_token(&*store, &live, at(100)).await;
    let live_token = refresh_token(&*store, &live, at(1_000)).await;
    let revoked_token = refresh_token(&*store, &old, at(1_000)).await;
    store.revoke_grant(&old.id, at(50)).await.unwrap();

    assert_eq!(store.delete_expired_codes(at(500)).await.unwrap(), 1);
    assert_eq!(
        store.delete_expired_refresh_tokens(at(500)).await.unwrap(),
        1
    );
    assert_eq!(store.delete_revoked_grants(at(500)).await.unwrap(), 1);

    assert_eq!(
        store
            .consume_code(&old_code.code_hash, at(0))
            .await
            .unwrap(),
        CodeConsumption::Unknown
    );
    assert!(matches!(
        store
            .consume_code(&live_code.code_hash, at(0))
            .await
            .unwrap(),
        CodeConsumption::Consumed(_)
    ));
    assert_eq!(store.get_refresh_token(&old_token).await.unwrap(), None);
    assert!(
        store
            .get_refresh_token(&live_token)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.get_refresh_token(&revoked_token).await.unwrap(),
        None,
        "a deleted grant takes its tokens"
    );
    assert_eq!(store.get_grant(&old.id).await.unwrap(), None);
    assert!(store.get_grant(&live.id).await.unwrap().is_some());
}
