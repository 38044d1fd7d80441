use lockmgr::locked;

#[locked(name = "refresh:{user}", wait = 5)]
async fn refresh(user: String) -> lockmgr::Result<usize> {
    tokio::task::yield_now().await;
    Ok(user.len())
}

#[tokio::main]
async fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    // The future is Send + 'static: it can be spawned.
    let len = tokio::spawn(refresh("ada".to_string())).await.unwrap();
    assert_eq!(len.unwrap(), 3);
}
