use lockmgr::locked;

#[locked(name = "job", guard = self.guard)]
fn job() -> lockmgr::Result<()> {
    Ok(())
}

fn main() {}
