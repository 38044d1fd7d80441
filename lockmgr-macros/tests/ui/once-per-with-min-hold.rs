use lockmgr::locked;

#[locked(name = "tick", min_hold = 60, once_per = 60)]
fn tick() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
