use lockmgr::locked;

#[locked(name = "job", expires = "60")]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
