use lockmgr::locked;

#[locked(expires = 60)]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
