//! The store conformance suite against the embedded SQLite store: every test gets its own
//! database file in a temporary directory.

use std::sync::Arc;

use mcpgate_issuer::store::{Store, sqlite::SqliteStore};

mcpgate_issuer::store_conformance_tests!(|| async {
    let store = SqliteStore::open_temporary()
        .await
        .expect("open a temporary SQLite store");
    Some(Arc::new(store) as Arc<dyn Store>)
});
