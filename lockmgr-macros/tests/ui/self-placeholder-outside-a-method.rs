use lockmgr::locked;

#[locked(name = "account:{self.id}")]
fn sync(id: u64) -> lockmgr::Result<u64> {
    Ok(id)
}

fn main() {}
