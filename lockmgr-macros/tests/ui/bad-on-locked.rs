use lockmgr::locked;

#[locked(name = "job", on_locked = "ignore")]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
