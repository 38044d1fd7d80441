use lockmgr::locked;

// Every call but one per tick is skipped: it needs a value that says so.
#[locked(name = "tick", once_per = "1m")]
async fn tick() -> Result<String, lockmgr::Error> {
    Ok(String::new())
}

fn main() {}
