use lockmgr::locked;

const NAME: &str = "job";

#[locked(name = NAME)]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
