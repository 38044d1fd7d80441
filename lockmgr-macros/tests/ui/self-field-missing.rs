use lockmgr::locked;

struct Account {
    id: u64,
}

impl Account {
    #[locked(name = "account:{self.number}")]
    fn sync(&self) -> lockmgr::Result<u64> {
        Ok(self.id)
    }
}

fn main() {}
