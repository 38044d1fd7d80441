use lockmgr::locked;

#[locked(name = "job")]
const fn job() -> Result<(), lockmgr::Error> {
    Ok(())
}

fn main() {}
