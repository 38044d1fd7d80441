use lockmgr::{locked, LockStore};

struct Importer {
    store: LockStore,
}

impl Importer {
    #[locked(name = "import:{source}", store = &self.store, wait = 1)]
    async fn import(&self, source: &str) -> lockmgr::Result<String> {
        tokio::task::yield_now().await;
        Ok(source.to_uppercase())
    }

    #[locked(name = "import:all", store = &self.store.clone())]
    async fn import_all(&mut self) -> lockmgr::Result<()> {
        Ok(())
    }
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    let mut importer = Importer { store: store.clone() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        assert_eq!(importer.import("csv").await.unwrap(), "CSV");
        importer.import_all().await.unwrap();
    });
}
