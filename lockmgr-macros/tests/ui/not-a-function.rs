use lockmgr::locked;

#[locked(name = "job")]
struct Job;

fn main() {}
