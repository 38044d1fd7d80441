use lockmgr::locked;

#[derive(Debug)]
struct MyError;

#[locked(name = "job")]
fn job() -> Result<(), MyError> {
    Ok(())
}

fn main() {}
