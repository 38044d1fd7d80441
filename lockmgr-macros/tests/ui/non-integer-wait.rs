use lockmgr::locked;

#[locked(name = "job", wait = 1.5)]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
