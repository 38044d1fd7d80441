// One attribute with many mistakes: every one is reported, each at its token.
use lockmgr::locked;

#[locked(name = "job {user}", expires = -5, wait = "x", timeout = 1, wait = 2)]
const fn job(id: u64) -> u64 {
    id
}

fn main() {}
