//! lockmgr's `tracing` events: what is logged on acquire (with attempts and wait),
//! release, renewal, a lost lock and a failed release, at which level, with the lock
//! name and fence as fields. One capturing subscriber serves the whole test binary;
//! each test looks only at the events of its own lock names.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use testkit::TestDb;
use tracing::field::{Field, Visit};
use tracing::Level;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[derive(Debug, Clone)]
struct Event {
    level: Level,
    message: String,
    fields: BTreeMap<String, String>,
}

impl Event {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn number(&self, name: &str) -> i64 {
        self.field(name)
            .unwrap_or_else(|| panic!("no field {name} in {self:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("field {name} is not a number in {self:?}"))
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

struct Capture;

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !event.metadata().target().starts_with("lockmgr") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        captured().lock().unwrap().push(Event {
            level: *event.metadata().level(),
            message,
            fields: fields.0,
        });
    }
}

fn captured() -> &'static Mutex<Vec<Event>> {
    static EVENTS: OnceLock<Mutex<Vec<Event>>> = OnceLock::new();
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .expect("a subscriber was already installed");
    });
    EVENTS.get_or_init(Default::default)
}

/// The events about lock `name` so far, oldest first.
fn events_of(name: &str) -> Vec<Event> {
    captured()
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.field("name") == Some(name))
        .cloned()
        .collect()
}

/// The only event about `name` with this message.
fn one(name: &str, message: &str) -> Event {
    let found: Vec<Event> = events_of(name)
        .into_iter()
        .filter(|e| e.message == message)
        .collect();
    assert_eq!(found.len(), 1, "{message:?} about {name}: {found:#?}");
    found.into_iter().next().unwrap()
}

fn store() -> (TestDb, lockmgr::LockStore) {
    captured(); // installed before the first event
    let db = TestDb::sqlite();
    let store = db.store();
    (db, store)
}

#[test]
fn a_waited_acquisition_logs_its_attempts_and_wait_then_its_release() {
    let (_db, store) = store();
    let name = "trace:wait";
    let held = store.get_lock(name, Some(Duration::from_secs(60))).unwrap();
    let releaser = {
        let store = store.clone();
        let held = held.clone();
        std::thread::spawn(move || {
            // 300 ms into the wait: counted from the waiter's "waiting" event, not
            // from this thread's start, which may come before the wait began.
            assert!(
                testkit::eventually(Duration::from_secs(20), || events_of(name)
                    .iter()
                    .any(|e| e.message == "lockmgr: waiting")),
                "the waiter never logged that it waits"
            );
            std::thread::sleep(Duration::from_millis(300));
            store.unlock(&held).unwrap();
        })
    };
    let guard = store
        .lock_mgr(name)
        .wait(Duration::from_secs(10))
        .acquire()
        .unwrap();
    releaser.join().unwrap();
    let fence = guard.fence();
    drop(guard);

    let mut events = events_of(name);
    // The holder's release and the waiter's acquire are logged by two threads: the
    // release is logged before it wakes the waiter, but a waiter that polled at that
    // very moment may log first. Order those two by fence.
    if events.len() == 5 && events[2].message.ends_with("acquired") {
        events.swap(2, 3);
    }
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "lockmgr: acquired",
            "lockmgr: waiting",
            "lockmgr: released",
            "lockmgr: acquired",
            "lockmgr: released"
        ],
        "{events:#?}"
    );
    assert!(
        events.iter().all(|e| e.level == Level::DEBUG),
        "{events:#?}"
    );

    let first = &events[0];
    assert_eq!(first.number("fence"), held.fence);
    assert_eq!(
        (first.number("attempts"), first.number("waited_ms")),
        (1, 0)
    );
    let waiting = &events[1];
    assert_eq!(waiting.field("holder"), Some(store.locked_by()));
    assert_eq!(waiting.number("holder_pid"), i64::from(std::process::id()));
    assert_eq!(waiting.number("wait_ms"), 10_000);
    assert_eq!(events[2].number("fence"), held.fence);

    let acquired = &events[3];
    assert_eq!(acquired.number("fence"), fence);
    assert!(acquired.number("attempts") >= 2, "{acquired:?}");
    assert!(acquired.number("waited_ms") >= 250, "{acquired:?}");
    assert!(
        acquired.field("expires").unwrap().starts_with("20"),
        "{acquired:?}"
    );

    let released = &events[4];
    assert_eq!(released.number("fence"), fence);
    assert_eq!(released.field("released"), Some("true"));
    assert!(released.number("held_ms") >= 0, "{released:?}");
}

#[test]
fn giving_up_logs_not_acquired_with_the_holder() {
    let (_db, store) = store();
    let name = "trace:give-up";
    let _held = store.get_lock(name, None).unwrap();
    let err = store
        .lock_mgr(name)
        // Long enough that the first attempt ends inside it on a loaded machine,
        // so that there is a second one.
        .wait(Duration::from_millis(600))
        .acquire()
        .unwrap_err();
    assert!(err.is_locked());
    let event = one(name, "lockmgr: not acquired");
    assert_eq!(event.level, Level::DEBUG);
    assert!(event.number("attempts") >= 2, "{event:?}");
    assert!(event.number("waited_ms") >= 600, "{event:?}");
    assert_eq!(event.field("holder"), Some(store.locked_by()));
    // A plain get_lock logs its single try too.
    assert!(store.get_lock(name, None).is_err());
    assert_eq!(
        events_of(name)
            .iter()
            .filter(|e| e.message == "lockmgr: not acquired")
            .count(),
        2
    );
}

#[test]
fn keepalive_renewals_are_debug_and_a_lost_lock_is_one_warning() {
    let (_db, store) = store();
    let name = "trace:keepalive";
    let guard = store
        .lock_mgr(name)
        .expires(Some(Duration::from_secs(1)))
        .keepalive(true)
        .acquire()
        .unwrap();
    let fence = guard.fence();
    assert!(testkit::eventually(Duration::from_secs(5), || {
        events_of(name)
            .iter()
            .any(|e| e.message == "lockmgr: renewed")
    }));
    let renewed = events_of(name)
        .into_iter()
        .find(|e| e.message == "lockmgr: renewed")
        .unwrap();
    assert_eq!(
        (renewed.level, renewed.number("fence")),
        (Level::DEBUG, fence)
    );

    store.unlock(name).unwrap(); // an admin clears it from outside
    assert!(guard.lost_signal().wait_timeout(Duration::from_secs(5)));
    drop(guard);
    let lost = one(name, "lockmgr: lock lost");
    assert_eq!(lost.level, Level::WARN);
    assert_eq!(lost.number("fence"), fence);
    assert!(
        lost.field("reason").unwrap().contains("keep-alive"),
        "{lost:?}"
    );
}

#[test]
fn a_guard_whose_lock_was_cleared_warns_at_release() {
    let (_db, store) = store();
    let name = "trace:cleared";
    let guard = store.lock_mgr(name).acquire().unwrap();
    let fence = guard.fence();
    store.unlock(name).unwrap();
    drop(guard);
    let lost = one(name, "lockmgr: lock lost");
    assert_eq!((lost.level, lost.number("fence")), (Level::WARN, fence));
    assert!(
        lost.field("reason").unwrap().contains("release"),
        "{lost:?}"
    );
}

#[test]
fn a_failed_release_is_a_warning_with_the_error() {
    let (db, store) = store();
    let name = "trace:release-fails";
    let guard = store.lock_mgr(name).acquire().unwrap();
    let fence = guard.fence();
    // The table goes away under the holder: its release cannot work.
    db.execute("DROP TABLE lockmgr_lock");
    drop(guard);
    let failed = one(name, "lockmgr: release failed");
    assert_eq!((failed.level, failed.number("fence")), (Level::WARN, fence));
    assert!(
        failed.field("error").unwrap().contains("lockmgr_lock"),
        "{failed:?}"
    );
    let op = one(name, "lockmgr: operation failed");
    assert_eq!((op.level, op.field("op")), (Level::DEBUG, Some("release")));
}

/// A sync `#[locked(wait = …)]` job whose store is given.
#[lockmgr::locked(name = "blocking:job", wait = 1, store = store)]
fn sync_waiting_job(store: &lockmgr::LockStore) -> Result<(), lockmgr::Error> {
    Ok(())
}

/// Called on a tokio runtime's thread, a sync `#[locked(wait = …)]` function would
/// stall the runtime while it waits: that is a warning, once per function, naming it
/// and the async alternative. On the blocking pool, or outside a runtime, it is not.
#[test]
fn a_waiting_sync_job_on_a_runtime_thread_warns_once() {
    let (_db, store) = store();
    let warnings = || -> Vec<Event> {
        captured()
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                e.level == Level::WARN
                    && e.field("function")
                        .is_some_and(|f| f.ends_with("sync_waiting_job"))
            })
            .cloned()
            .collect()
    };
    sync_waiting_job(&store).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let on_pool = store.clone();
    let on_pool = runtime.spawn_blocking(move || sync_waiting_job(&on_pool));
    runtime.block_on(on_pool).unwrap().unwrap();
    assert!(warnings().is_empty(), "{:#?}", warnings());
    runtime.block_on(async {
        sync_waiting_job(&store).unwrap();
        sync_waiting_job(&store).unwrap();
    });
    let found = warnings();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("async fn"), "{:?}", found[0]);
}
