use lockmgr::locked;

#[locked(name = "job")]
fn job() -> Option<u32> {
    Some(1)
}

fn main() {}
