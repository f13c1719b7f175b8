//! Local users the operator declares in the configuration (`[[issuer.users]]` in the gateway),
//! kept in the store at every start beside the users `mcpgate users add` made.
//!
//! A declared user carries an argon2id hash, never a password (`mcpgate users hash` makes
//! one). At start each is added or changed in place: a new hash takes effect at once, a user
//! marked `disabled` cannot sign in and their grants are revoked, and one removed from the
//! configuration is disabled the same way. A name that `mcpgate users add` already holds is
//! refused rather than taken over.

use std::collections::HashSet;
use std::time::SystemTime;

use crate::store::{PasswordHash, Store, StoreError, User, UserName};

/// Longest user name.
pub const MAX_NAME: usize = 128;

/// Whether `name` can be a user name: 1 to [`MAX_NAME`] characters, no spaces or control
/// characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.chars().count() > MAX_NAME
        || name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "the user name must be 1 to {MAX_NAME} characters without spaces"
        ));
    }
    Ok(())
}

/// A user the operator declares.
#[derive(Debug, Clone)]
pub struct ConfiguredUser {
    /// The login name.
    pub name: UserName,
    /// The argon2id hash of the password.
    pub password_hash: PasswordHash,
    /// Declared but not allowed to sign in.
    pub disabled: bool,
}

impl ConfiguredUser {
    /// Checks a declared user: its name, and that `password_hash` is a well-formed argon2id
    /// PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub fn new(name: &str, password_hash: &str, disabled: bool) -> Result<Self, String> {
        check_name(name)?;
        let phc = argon2::password_hash::phc::PasswordHash::new(password_hash).map_err(|_| {
            "password_hash is not an argon2id PHC string (`$argon2id$…`): make one with `mcpgate users hash --password-stdin`"
                .to_owned()
        })?;
        if phc.algorithm.as_str() != "argon2id" || phc.hash.is_none() || phc.salt.is_none() {
            return Err("password_hash must be an argon2id hash with its salt (`$argon2id$…`): make one with `mcpgate users hash --password-stdin`".into());
        }
        Ok(ConfiguredUser {
            name: UserName::new(name),
            password_hash: PasswordHash::new(password_hash).map_err(|e| e.to_string())?,
            disabled,
        })
    }
}

/// Puts `users` into the store: each added or changed in place; configured users no longer
/// declared are disabled (their grants revoked). Users added on the command line are left
/// alone; a declared name that one of them holds is an error.
pub async fn reconcile(
    store: &dyn Store,
    users: &[ConfiguredUser],
    now: SystemTime,
) -> Result<(), ReconcileError> {
    let mut wanted = HashSet::new();
    for user in users {
        if !wanted.insert(user.name.as_str()) {
            return Err(ReconcileError::Twice(user.name.clone()));
        }
        if let Some(existing) = store.get_user(&user.name).await?
            && !existing.configured
        {
            return Err(ReconcileError::Taken(user.name.clone()));
        }
        not_a_client(store, &user.name).await?;
        let record = User {
            name: user.name.clone(),
            password_hash: user.password_hash.clone(),
            created_at: now,
            disabled_at: user.disabled.then_some(now),
            configured: true,
        };
        if store.put_user(&record).await? {
            tracing::info!(target: "mcpgate::issuer", user = %user.name, "configured user added");
        }
    }
    for existing in store.list_users().await? {
        if existing.configured
            && !wanted.contains(existing.name.as_str())
            && store.disable_user(&existing.name, now).await?
        {
            tracing::info!(target: "mcpgate::issuer", user = %existing.name, "user no longer configured: disabled, their grants revoked");
        }
    }
    Ok(())
}

/// Refuses a user name that is a client's id (a machine client's tokens carry its id as
/// `sub`: the user would be taken for it). Subjects have one namespace.
pub async fn not_a_client(store: &dyn Store, name: &UserName) -> Result<(), ReconcileError> {
    match store
        .get_client(&crate::store::ClientId::new(name.as_str()))
        .await?
    {
        Some(_) => Err(ReconcileError::AClient(name.clone())),
        None => Ok(()),
    }
}

/// Why the configured users could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name belongs to a user added with `mcpgate users add`.
    #[error(
        "user `{0}` exists already and was not configured (added with `mcpgate users add`): pick another name or `mcpgate users disable` it and choose a new one"
    )]
    Taken(UserName),
    /// The name is a client's id (a machine client's tokens carry it as `sub`).
    #[error(
        "`{0}` is a client's id: a user with that name would be taken for the client; pick another name"
    )]
    AClient(UserName),
    /// The name is declared twice.
    #[error("user `{0}` is declared twice")]
    Twice(UserName),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hashes_are_checked() {
        let hash = crate::sign_in::hash_password("correct horse").unwrap();
        assert!(ConfiguredUser::new("alice", hash.as_str(), false).is_ok());
        for name in ["", "a b", "tab\there", &"x".repeat(MAX_NAME + 1)] {
            assert!(
                ConfiguredUser::new(name, hash.as_str(), false).is_err(),
                "{name:?}"
            );
        }
        for phc in [
            "",
            "hunter22",
            "$argon2id$",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
            "$argon2id$v=19$m=19456,t=2,p=1",
            "$2b$12$abcdefghijklmnopqrstuu",
        ] {
            let err = ConfiguredUser::new("alice", phc, false).unwrap_err();
            assert!(err.contains("mcpgate users hash"), "{phc}: {err}");
            assert!(
                phc.len() <= "$argon2id$".len() || !err.contains(phc),
                "the value is not echoed"
            );
        }
    }
}
