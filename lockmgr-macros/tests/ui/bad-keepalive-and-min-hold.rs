use lockmgr::locked;

#[locked(name = "job", keepalive = 1, min_hold = -5)]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
