// `{self.field}` and `{self}` in methods.
#![deny(warnings)]

use std::fmt;

use lockmgr::locked;

struct Account {
    id: u64,
    region: &'static str,
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.region, self.id)
    }
}

struct Pair(u8, u8);

impl Account {
    #[locked(name = "account:{self.region}/{self.id}", guard = g)]
    fn sync(&self) -> lockmgr::Result<String> {
        Ok(g.name().to_string())
    }

    #[locked(name = "whole:{self}", guard = g)]
    async fn whole(&mut self) -> lockmgr::Result<String> {
        self.id += 1;
        Ok(g.name().to_string())
    }
}

impl Pair {
    #[locked(name = "pair:{self.0}:{self.1}", guard = g)]
    fn both(self) -> lockmgr::Result<String> {
        Ok(g.name().to_string())
    }
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    let mut account = Account { id: 7, region: "eu" };
    assert_eq!(account.sync().unwrap(), "account:eu/7");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let name = runtime.block_on(account.whole());
    assert_eq!(name.unwrap(), "whole:eu-7");
    assert_eq!(Pair(1, 2).both().unwrap(), "pair:1:2");
}
