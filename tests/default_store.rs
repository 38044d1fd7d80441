//! The module-level functions on the default store. One test per binary touches the
//! process-wide default, so this file holds a single test.

use std::time::Duration;

use lockmgr::Error;

#[test]
fn module_functions_use_the_default_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.sqlite3");
    // The default store comes from the environment on first use.
    std::env::set_var(lockmgr::LOCKMGR_DATABASE_URL, path.to_str().unwrap());
    let store = lockmgr::default_store().unwrap();
    assert_eq!(store.url(), path.to_str().unwrap());

    let lock = lockmgr::get_lock("mod:job", Some(Duration::from_secs(20))).unwrap();
    assert!(lockmgr::is_locked("mod:job").unwrap());
    assert!(lockmgr::get_lock("mod:job", None).unwrap_err().is_locked());
    let renewed = lockmgr::renew_lock(
        &lock,
        lockmgr::RenewOptions::new(Some(Duration::from_secs(60))),
    )
    .unwrap();
    assert!(renewed.expires_seconds().unwrap() >= 50);
    assert_eq!(lockmgr::list_locks().unwrap().len(), 1);
    let report = lockmgr::set_lock(["mod:a", "mod:b"], lockmgr::SetLockOptions::new(None)).unwrap();
    assert_eq!(report.created, 2);
    {
        let _guard = lockmgr::lock_mgr("mod:guard").unwrap().acquire().unwrap();
        assert!(lockmgr::is_locked("mod:guard").unwrap());
    }
    assert!(!lockmgr::is_locked("mod:guard").unwrap());
    assert!(lockmgr::unlock(&lock).unwrap());
    assert!(lockmgr::unlock("mod:a").unwrap());
    assert_eq!(lockmgr::clean_locks().unwrap(), 0);
    assert!(matches!(
        lockmgr::renew_lock("mod:a", lockmgr::RenewOptions::new(None)),
        Err(Error::LockNotFound { .. })
    ));
    assert_eq!(lockmgr::reset_locks().unwrap(), 1);

    // set_default_store swaps the store the functions use.
    let other = dir.path().join("other.sqlite3");
    let previous =
        lockmgr::set_default_store(lockmgr::LockStore::open(other.to_str().unwrap()).unwrap());
    assert_eq!(previous.unwrap().url(), path.to_str().unwrap());
    lockmgr::get_lock("mod:elsewhere", None).unwrap();
    assert!(!store.is_locked("mod:elsewhere").unwrap());
    assert!(lockmgr::default_store()
        .unwrap()
        .is_locked("mod:elsewhere")
        .unwrap());
}
