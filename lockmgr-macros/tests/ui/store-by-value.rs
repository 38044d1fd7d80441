use lockmgr::{locked, LockStore};

#[locked(name = "job", store = store)]
fn job(store: LockStore) -> lockmgr::Result<()> {
    let _ = store;
    Ok(())
}

fn main() {}
