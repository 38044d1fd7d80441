use lockmgr::locked;

struct Id(u64);

#[locked(name = "job:{id}")]
fn job(id: Id) -> lockmgr::Result<u64> {
    Ok(id.0)
}

fn main() {}
