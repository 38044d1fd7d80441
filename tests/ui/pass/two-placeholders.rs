use lockmgr::locked;

#[locked(name = "sync:{tenant}/{account_id}")]
fn sync(tenant: &str, account_id: u64) -> lockmgr::Result<bool> {
    lockmgr::is_locked(&format!("sync:{tenant}/{account_id}"))
}

fn main() {
    let db = testkit::TestDb::sqlite();
    lockmgr::set_default_store(db.store());
    assert!(sync("acme", 42).unwrap());
}
