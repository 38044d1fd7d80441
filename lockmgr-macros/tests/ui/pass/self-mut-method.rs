use lockmgr::{locked, LockStore};

struct Counter {
    store: LockStore,
    count: u32,
}

impl Counter {
    #[locked(name = "counter", store = &self.store.clone())]
    fn bump(&mut self) -> lockmgr::Result<u32> {
        self.count += 1;
        Ok(self.count)
    }
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    let mut counter = Counter { store: store.clone(), count: 0 };
    counter.bump().unwrap();
    assert_eq!(counter.bump().unwrap(), 2);
}
