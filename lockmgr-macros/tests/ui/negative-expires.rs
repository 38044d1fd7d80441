use lockmgr::locked;

#[locked(name = "job", expires = -1)]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
