use lockmgr::locked;

// A skipped call returns Ok(()) or Ok(None): a bare u32 has no "skipped" value.
#[locked(name = "job", on_locked = "skip")]
fn job() -> lockmgr::Result<u32> {
    Ok(1)
}

fn main() {}
