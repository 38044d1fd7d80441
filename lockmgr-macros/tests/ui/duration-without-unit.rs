use lockmgr::locked;

#[locked(name = "job", min_hold = "5 minutes")]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
