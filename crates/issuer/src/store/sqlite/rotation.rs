//! Refresh-token rotation in batches: the rotations that arrive while one batch is being
//! written are written together, in the next single `BEGIN IMMEDIATE` transaction, with one
//! statement each to read the presented tokens, mark them rotated and store the replacements.
//! Under load this turns five database round trips and one commit per refresh into a few per
//! batch; a lone refresh is a batch of one, with no wait added.
//!
//! Every rotation is still decided under the write lock, on rows read inside the transaction,
//! and in arrival order: two presentations of one token in the same batch are decided as two
//! transactions one after the other would be (the second sees the first's rotation). An
//! answer is given only after its batch committed, so a client never holds a token the store
//! does not have; a batch that fails is rolled back whole and every rotation in it fails.
//!
//! The batch is written by a task of its own, so that a caller that goes away (its client
//! hung up) cannot cancel a batch that carries other callers' rotations.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqlitePool;
use tokio::sync::oneshot;

use super::{
    backend, column, duration_secs, grant_from_row, insert_error, revoke_refresh_tokens_of, secs,
};
use crate::store::{Grant, GrantId, RefreshRotation, RotationOutcome, StoreError};

/// Most rotations written in one transaction (five bound values each in the insert).
const MAX_BATCH: usize = 64;

type Answer = oneshot::Sender<Result<RotationOutcome, StoreError>>;

/// Rotations waiting for the next batch, and whether a task is writing batches.
#[derive(Default)]
pub(super) struct RotationQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    waiting: Vec<(RefreshRotation, Answer)>,
    writing: bool,
}

impl std::fmt::Debug for RotationQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RotationQueue")
    }
}

impl RotationQueue {
    /// Queues `rotation` and waits for the batch that carries it to commit.
    pub(super) async fn rotate(
        self: &Arc<Self>,
        pool: &SqlitePool,
        rotation: &RefreshRotation,
    ) -> Result<RotationOutcome, StoreError> {
        let (answer, outcome) = oneshot::channel();
        let start = {
            let mut state = self.state.lock().expect("rotation queue lock");
            state.waiting.push((rotation.clone(), answer));
            !std::mem::replace(&mut state.writing, true)
        };
        if start {
            // The guard goes with the task from the start: a task dropped before it ever ran
            // hands the queue back too.
            let writer = Writer {
                queue: Arc::clone(self),
                finished: false,
            };
            tokio::spawn(write_batches(writer, pool.clone()));
        }
        outcome.await.unwrap_or_else(|_| {
            Err(StoreError::Backend(
                "the refresh rotation was not written".into(),
            ))
        })
    }
}

/// Writes batches until none is waiting.
async fn write_batches(mut writer: Writer, pool: SqlitePool) {
    loop {
        let batch = {
            let mut state = writer.queue.state.lock().expect("rotation queue lock");
            if state.waiting.is_empty() {
                state.writing = false;
                writer.finished = true;
                return;
            }
            let n = state.waiting.len().min(MAX_BATCH);
            state.waiting.drain(..n).collect::<Vec<_>>()
        };
        let (rotations, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match write_batch(&pool, &rotations).await {
            Ok(outcomes) => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for answer in answers {
                    let _ = answer.send(Err(StoreError::Backend(reason.clone().into())));
                }
            }
        }
    }
}

/// Hands the queue back if the writing task ends early — its runtime shut down, before or
/// while it ran: the rotations still waiting fail, and the next one starts a new task
/// instead of waiting for this one.
struct Writer {
    queue: Arc<RotationQueue>,
    finished: bool,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(mut state) = self.queue.state.lock() {
            state.writing = false;
            state.waiting.clear();
        }
    }
}

/// A presented token as read at the start of the batch, updated as the batch decides.
struct Presented {
    client_id: String,
    expires_at: i64,
    rotated_at: Option<i64>,
    revoked: bool,
    grant: Grant,
}

/// What the batch writes once every rotation in it is decided.
#[derive(Default)]
struct Writes<'a> {
    /// Presented tokens to mark rotated, by the second of their rotation.
    rotated: Vec<(&'a RefreshRotation, i64)>,
    /// Replacements to store, with their grant.
    replacements: Vec<(&'a RefreshRotation, GrantId)>,
    /// Grants revoked by reuse, with when.
    revoked: Vec<(GrantId, &'a RefreshRotation)>,
}

async fn write_batch(
    pool: &SqlitePool,
    rotations: &[RefreshRotation],
) -> Result<Vec<RotationOutcome>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
    let mut presented = read_presented(&mut tx, rotations).await?;
    let mut writes = Writes::default();
    let mut revoked_grants = HashSet::new();
    let outcomes = rotations
        .iter()
        .map(|r| decide(r, &mut presented, &mut revoked_grants, &mut writes))
        .collect();

    // The replacements first, so that a grant revoked later in the batch takes them along.
    if !writes.replacements.is_empty() {
        let mut sql = String::from(
            "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, issued_at, expires_at) VALUES ",
        );
        push_placeholders(&mut sql, writes.replacements.len(), 5);
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for (r, grant) in &writes.replacements {
            insert = insert
                .bind(r.replacement.as_bytes().to_vec())
                .bind(grant.as_str().to_owned())
                .bind(r.client_id.as_str().to_owned())
                .bind(secs(r.now))
                .bind(secs(r.replacement_expires_at));
        }
        insert
            .execute(&mut *tx)
            .await
            .map_err(insert_error("refresh token", "(replacement hash)"))?;
    }
    // Rotated in the same second: one update.
    let mut by_second: HashMap<i64, Vec<&RefreshRotation>> = HashMap::new();
    for (r, second) in &writes.rotated {
        by_second.entry(*second).or_default().push(r);
    }
    for (second, tokens) in by_second {
        let mut sql = String::from(
            "UPDATE refresh_tokens SET rotated_at = ? WHERE rotated_at IS NULL AND token_hash IN (",
        );
        push_list(&mut sql, tokens.len());
        sql.push(')');
        let mut update = sqlx::query(AssertSqlSafe(sql)).bind(second);
        for r in tokens {
            update = update.bind(r.presented.as_bytes().to_vec());
        }
        update.execute(&mut *tx).await.map_err(backend)?;
    }
    for (grant, r) in &writes.revoked {
        sqlx::query("UPDATE grants SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL")
            .bind(secs(r.now))
            .bind(grant.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        revoke_refresh_tokens_of(&mut tx, grant, r.now).await?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(outcomes)
}

/// Reads every presented token of the batch (and its grant) in one statement.
async fn read_presented(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    rotations: &[RefreshRotation],
) -> Result<HashMap<[u8; 32], Presented>, StoreError> {
    let hashes: Vec<[u8; 32]> = {
        let mut seen = HashSet::new();
        rotations
            .iter()
            .map(|r| *r.presented.as_bytes())
            .filter(|h| seen.insert(*h))
            .collect()
    };
    let mut sql = String::from(
        "SELECT t.token_hash AS token_hash, t.client_id AS token_client_id, \
         t.expires_at AS token_expires_at, t.rotated_at AS token_rotated_at, \
         t.revoked_at AS token_revoked_at, g.* \
         FROM refresh_tokens t JOIN grants g ON g.grant_id = t.grant_id \
         WHERE t.token_hash IN (",
    );
    push_list(&mut sql, hashes.len());
    sql.push(')');
    let mut select = sqlx::query(AssertSqlSafe(sql));
    for h in &hashes {
        select = select.bind(h.to_vec());
    }
    let rows = select.fetch_all(&mut **tx).await.map_err(backend)?;
    const WHAT: &str = "refresh token";
    let mut presented = HashMap::with_capacity(rows.len());
    for row in &rows {
        let hash: Vec<u8> = column(row, WHAT, "token_hash")?;
        let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
            continue;
        };
        let token_revoked_at: Option<i64> = column(row, WHAT, "token_revoked_at")?;
        presented.insert(
            hash,
            Presented {
                client_id: column(row, WHAT, "token_client_id")?,
                expires_at: column(row, WHAT, "token_expires_at")?,
                rotated_at: column(row, WHAT, "token_rotated_at")?,
                revoked: token_revoked_at.is_some(),
                grant: grant_from_row(row)?,
            },
        );
    }
    Ok(presented)
}

/// Decides one rotation on the batch's view of the store, and records what it writes: the
/// same checks, in the same order, as one transaction for this rotation alone would make.
fn decide<'a>(
    r: &'a RefreshRotation,
    presented: &mut HashMap<[u8; 32], Presented>,
    revoked_grants: &mut HashSet<GrantId>,
    writes: &mut Writes<'a>,
) -> RotationOutcome {
    let Some(token) = presented.get_mut(r.presented.as_bytes()) else {
        return RotationOutcome::Unknown;
    };
    if token.client_id != r.client_id.as_str() {
        return RotationOutcome::WrongClient;
    }
    if token.revoked || token.grant.revoked_at.is_some() || revoked_grants.contains(&token.grant.id)
    {
        return RotationOutcome::Revoked;
    }
    let now = secs(r.now);
    let within_grace = token
        .rotated_at
        .is_some_and(|at| now < at.saturating_add(duration_secs(r.grace)));
    match token.rotated_at {
        Some(_) if !within_grace => {
            revoked_grants.insert(token.grant.id.clone());
            writes.revoked.push((token.grant.id.clone(), r));
            RotationOutcome::Reused(token.grant.id.clone())
        }
        _ if token.expires_at <= now => RotationOutcome::Expired,
        _ => {
            if let Some(refused) = not_granted(r, &token.grant) {
                return refused;
            }
            if within_grace {
                return RotationOutcome::WithinGrace(token.grant.clone());
            }
            token.rotated_at = Some(now);
            writes.rotated.push((r, now));
            writes.replacements.push((r, token.grant.id.clone()));
            RotationOutcome::Rotated(token.grant.clone())
        }
    }
}

/// Why `grant` cannot give what `r` asks for, if it cannot.
fn not_granted(r: &RefreshRotation, grant: &Grant) -> Option<RotationOutcome> {
    if let Some(asked) = &r.scopes
        && let Some(extra) = asked.iter().find(|s| !grant.scopes.contains(s.as_str()))
    {
        return Some(RotationOutcome::ScopeNotGranted(extra.as_str().to_owned()));
    }
    match (&grant.resource, &r.resource) {
        (Some(bound), Some(asked)) if bound != asked => Some(RotationOutcome::OtherResource),
        _ => None,
    }
}

/// `?, ?, …` (`n` of them). The statements built here hold nothing but these placeholders
/// around fixed text: every value is bound.
fn push_list(sql: &mut String, n: usize) {
    for i in 0..n {
        sql.push_str(if i == 0 { "?" } else { ", ?" });
    }
}

/// `(?, …), (?, …), …`: `rows` rows of `columns` values.
fn push_placeholders(sql: &mut String, rows: usize, columns: usize) {
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        push_list(sql, columns);
        sql.push(')');
    }
}
