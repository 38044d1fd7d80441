use lockmgr::locked;

#[locked(name = "tick", once_per = 60, on_locked = "error")]
fn tick() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
