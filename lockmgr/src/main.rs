//! The `lockmgr` command: all of it lives in the library.
fn main() {
    let store = match lockmgr::LockStore::from_env() {
        Ok(store) => store,
        Err(err) => {
            eprintln!("lockmgr: {err}");
            std::process::exit(1);
        }
    };
    match store.list_locks() {
        Ok(locks) if locks.is_empty() => println!("There are no active locks."),
        Ok(locks) => locks.iter().for_each(|lock| println!("{lock}")),
        Err(err) => {
            eprintln!("lockmgr: {err}");
            std::process::exit(1);
        }
    }
}
