use lockmgr::locked;

#[locked(name = "job", expires = 60, expires = 120)]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
