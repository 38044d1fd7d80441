use lockmgr::locked;

#[locked(name = "job")]
fn job() {}

fn main() {}
