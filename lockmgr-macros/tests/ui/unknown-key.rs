use lockmgr::locked;

#[locked(name = "job", timeout = 60)]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
