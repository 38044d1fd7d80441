use lockmgr::locked;

#[locked(name = "tick", once_per = 60, wait = 5)]
fn tick() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
