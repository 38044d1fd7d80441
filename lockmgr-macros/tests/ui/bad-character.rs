use lockmgr::locked;

#[locked(name = "nightly report")]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
