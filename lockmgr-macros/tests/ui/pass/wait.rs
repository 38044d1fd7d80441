use lockmgr::locked;

#[locked(name = "mailer:{queue}", expires = 60, wait = 30)]
fn send_mail(queue: u8) -> lockmgr::Result<()> {
    let _ = queue;
    Ok(())
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    send_mail(1).unwrap();
}
