use lockmgr::locked;

#[locked(name = "job:{id}", guard = id)]
fn job(id: u64) -> lockmgr::Result<u64> {
    Ok(id)
}

fn main() {}
