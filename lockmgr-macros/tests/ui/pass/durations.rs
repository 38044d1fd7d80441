// Durations: seconds, strings with a unit (sub-second too), and const paths.
#![deny(warnings)]

use std::time::Duration;

use lockmgr::locked;

const LEASE: Duration = Duration::from_millis(1500);

mod settings {
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(2);
}

#[locked(name = "ints", expires = 90, wait = 0)]
fn ints() -> lockmgr::Result<()> {
    Ok(())
}

#[locked(name = "units", expires = "1d", wait = "500ms", min_hold = "5m")]
fn units() -> lockmgr::Result<()> {
    Ok(())
}

#[locked(name = "consts", expires = LEASE, wait = settings::WAIT)]
fn consts() -> lockmgr::Result<()> {
    Ok(())
}

const HOURLY: Duration = Duration::from_secs(3600);

#[locked(name = "hourly", once_per = HOURLY)]
fn hourly() -> lockmgr::Result<()> {
    Ok(())
}

fn declared(name: &str) -> &'static lockmgr::DeclaredLock {
    lockmgr::declared_locks().into_iter().find(|d| d.name == name).unwrap()
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    ints().unwrap();
    units().unwrap();
    consts().unwrap();
    hourly().unwrap();
    let secs = Duration::from_secs;
    assert_eq!((declared("ints").expires, declared("ints").wait), (Some(secs(90)), Some(secs(0))));
    let units = declared("units");
    assert_eq!(
        (units.expires, units.wait, units.min_hold),
        (Some(secs(86_400)), Some(Duration::from_millis(500)), Some(secs(300)))
    );
    let consts = declared("consts");
    assert_eq!((consts.expires, consts.wait), (Some(LEASE), Some(secs(2))));
    assert_eq!(declared("hourly").once_per, Some(secs(3600)));
}
