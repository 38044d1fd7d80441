use lockmgr::locked;

#[locked(name = "job:{user}")]
fn job(id: u64, kind: &str) -> lockmgr::Result<()> {
    let _ = (id, kind);
    Ok(())
}

fn main() {}
