use lockmgr::locked;

const TIMEOUT_SECS: u64 = 60;

#[locked(name = "job", expires = TIMEOUT_SECS)]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
