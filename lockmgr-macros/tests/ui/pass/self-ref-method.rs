use lockmgr::{locked, LockStore};

struct Reports {
    store: LockStore,
}

impl Reports {
    #[locked(name = "report:{day}", store = &self.store)]
    pub fn build(&self, day: u32) -> lockmgr::Result<bool> {
        self.store.is_locked(&format!("report:{day}"))
    }
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    let reports = Reports { store: store.clone() };
    assert!(reports.build(3).unwrap());
}
