//! What the unit tests share.

use crate::store::LockStore;

/// A store on a fresh SQLite file; keep the directory alive as long as the store.
pub(crate) fn temp_store() -> (tempfile::TempDir, LockStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("l.sqlite3").to_str().unwrap().to_string();
    (dir, LockStore::open(&url).unwrap())
}
