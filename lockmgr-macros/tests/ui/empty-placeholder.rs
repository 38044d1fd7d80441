use lockmgr::locked;

#[locked(name = "job:{}")]
fn job(id: u64) -> lockmgr::Result<()> {
    let _ = id;
    Ok(())
}

fn main() {}
