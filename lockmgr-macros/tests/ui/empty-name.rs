use lockmgr::locked;

#[locked(name = "")]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
