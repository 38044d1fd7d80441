// Parameters and locals named like the macro's own pieces do not clash with it.
use lockmgr::{locked, LockStore};

#[locked(name = "job:{name}/{lock}", store = store, guard = g)]
fn job(name: &str, lock: u32, store: &LockStore, guard: bool) -> lockmgr::Result<String> {
    let name = format!("{name}{lock}{guard}");
    let lock = g.fence();
    let store = store.is_locked("job:a/1")?;
    let guard = name.len();
    let __lockmgr_guard = "mine";
    Ok(format!("{name} {} {store} {guard} {__lockmgr_guard}", lock > 0))
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    assert_eq!(job("a", 1, &store, true).unwrap(), "a1true true true 6 mine");
    assert!(!store.is_locked("job:a/1").unwrap());
}
