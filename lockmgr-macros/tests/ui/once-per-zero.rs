use lockmgr::locked;

#[locked(name = "tick", once_per = "0s")]
fn tick() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
