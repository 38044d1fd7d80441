use std::time::Duration;
use testkit::TestDb;

fn basic(db: &TestDb) {
    let store = db.store();
    let lock = store
        .get_lock("job:1", Some(Duration::from_secs(60)))
        .unwrap();
    println!("{lock:?} {:?}", lock.expires_in());
    let err = store.get_lock("job:1", None).unwrap_err();
    println!("{err}");
    assert!(err.is_locked());
    let r = store
        .renew_lock(&lock, Some(Duration::from_secs(120)), true, false)
        .unwrap();
    println!("{r:?} {:?}", r.expires_in());
    assert!(store.unlock(&lock).unwrap());
    let l2 = store.get_lock("job:1", None).unwrap();
    println!("{l2:?}");
    let l3 = store
        .get_lock("job:2", Some(Duration::from_micros(1)))
        .unwrap();
    println!("{l3:?}");
    std::thread::sleep(Duration::from_millis(5));
    let l4 = store
        .get_lock("job:2", Some(Duration::from_micros(1500)))
        .unwrap();
    println!("{l4:?}");
    assert!(l4.fence > l3.fence);
    println!("{:?}", store.list_locks().unwrap());
    println!(
        "{:?}",
        store
            .set_lock(["a", "job:1", "b"], None, false, true, true)
            .unwrap()
    );
}
testkit::backend_tests!(basic);
