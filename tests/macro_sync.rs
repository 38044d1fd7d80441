//! `#[locked]` on plain functions and methods, on SQLite and PostgreSQL: the lock is
//! held exactly while the body runs, and released on every way out.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use lockmgr::{declared_locks, locked, DeclaredLock, LockGuard, LockStore};
use testkit::TestDb;

/// Run `body` under the lock `t:{key}` of `store`.
#[locked(name = "t:{key}", store = store)]
fn run<R>(store: &LockStore, key: &str, body: impl FnOnce() -> R) -> lockmgr::Result<R> {
    Ok(body())
}

/// An error type of the caller's own, as most users have.
#[derive(Debug)]
enum JobError {
    Lock(lockmgr::Error),
    Parse(std::num::ParseIntError),
}

impl From<lockmgr::Error> for JobError {
    fn from(err: lockmgr::Error) -> Self {
        JobError::Lock(err)
    }
}

impl From<std::num::ParseIntError> for JobError {
    fn from(err: std::num::ParseIntError) -> Self {
        JobError::Parse(err)
    }
}

/// Parses `input` under the lock `parse:{key}`; `held` records whether the lock was
/// held when the body ran.
#[locked(name = "parse:{key}", store = store)]
fn parse_locked(
    store: &LockStore,
    key: u32,
    input: &str,
    held: &Cell<bool>,
) -> Result<u32, JobError> {
    held.set(store.is_locked(&format!("parse:{key}"))?);
    let n: u32 = input.parse()?;
    Ok(n)
}

/// Runs once the lock `wait:{key}` is free, waiting up to 10 s for it.
#[locked(name = "wait:{key}", store = store, wait = 10)]
fn run_when_free(store: &LockStore, key: &str) -> lockmgr::Result<Instant> {
    Ok(Instant::now())
}

/// Gives up on `short:{key}` after 1 s.
#[locked(name = "short:{key}", store = store, wait = 1)]
fn run_if_free_soon(store: &LockStore, key: &str) -> lockmgr::Result<()> {
    Ok(())
}

/// Reports the guard's view of its lock.
#[locked(name = "guarded:{a}-{b}", store = store, expires = 0, guard = g)]
fn with_guard(store: &LockStore, a: u8, b: &str) -> lockmgr::Result<(String, i64, bool)> {
    let expires_never = g.main_lock().locked_until.is_none();
    g.lock("guarded:extra")?;
    Ok((g.name().to_string(), g.fence(), expires_never))
}

/// A service whose methods lock in its own store.
struct Account {
    store: LockStore,
    id: u64,
    balance: i64,
}

impl Account {
    #[locked(name = "account:{self_id}", store = &self.store)]
    fn balance(&self, self_id: u64) -> lockmgr::Result<i64> {
        assert_eq!(self_id, self.id);
        assert!(self.store.is_locked(&format!("account:{}", self.id))?);
        Ok(self.balance)
    }

    #[locked(name = "account:{id}", store = &self.store.clone(), guard = guard)]
    fn deposit(&mut self, id: u64, amount: i64) -> lockmgr::Result<(i64, LockGuardInfo)> {
        assert_eq!(id, self.id);
        self.balance += amount;
        let info = LockGuardInfo::of(guard);
        Ok((self.balance, info))
    }
}

/// What a body saw of its guard.
#[derive(Debug)]
struct LockGuardInfo {
    name: String,
    fence: i64,
}

impl LockGuardInfo {
    fn of(guard: &LockGuard) -> Self {
        LockGuardInfo {
            name: guard.name().to_string(),
            fence: guard.fence(),
        }
    }
}

fn reentrant_call_is_locked_without_running_the_body(db: &TestDb) {
    let store = db.store();
    let inner_ran = Cell::new(false);
    let outcome = run(&store, "a", || run(&store, "a", || inner_ran.set(true))).unwrap();
    let err = outcome.unwrap_err();
    assert!(err.is_locked(), "{err}");
    assert_eq!(err.lock_name(), Some("t:a"));
    assert!(!inner_ran.get(), "the inner body ran without the lock");
    assert!(!store.is_locked("t:a").unwrap());
}

fn a_different_name_works_inside(db: &TestDb) {
    let store = db.store();
    let seen = run(&store, "outer", || {
        run(&store, "inner", || {
            (
                store.is_locked("t:outer").unwrap(),
                store.is_locked("t:inner").unwrap(),
            )
        })
    })
    .unwrap()
    .unwrap();
    assert_eq!(seen, (true, true));
    assert!(!store.is_locked("t:outer").unwrap() && !store.is_locked("t:inner").unwrap());
}

fn released_after_return(db: &TestDb) {
    let store = db.store();
    let held = run(&store, "ret", || store.is_locked("t:ret").unwrap()).unwrap();
    assert!(held, "the body ran without the lock");
    assert!(!store.is_locked("t:ret").unwrap());
    // And it can be had again at once.
    assert!(run(&store, "ret", || ()).is_ok());
}

fn released_after_question_mark(db: &TestDb) {
    let store = db.store();
    let held = Cell::new(false);
    let err = parse_locked(&store, 7, "not a number", &held).unwrap_err();
    match err {
        JobError::Parse(err) => assert_eq!(err.to_string(), "invalid digit found in string"),
        other => panic!("expected the body's parse error, got {other:?}"),
    }
    assert!(held.get(), "the body ran without the lock");
    assert!(!store.is_locked("parse:7").unwrap());
    assert_eq!(parse_locked(&store, 7, "12", &held).unwrap(), 12);
}

fn released_after_panic(db: &TestDb) {
    let store = db.store();
    let result = catch_unwind(AssertUnwindSafe(|| {
        run(&store, "boom", || {
            assert!(store.is_locked("t:boom").unwrap());
            panic!("the job failed");
        })
    }));
    assert!(result.is_err(), "the panic went missing");
    assert!(!store.is_locked("t:boom").unwrap());
}

fn locked_error_goes_through_from(db: &TestDb) {
    let store = db.store();
    let _held = store.get_lock("parse:1", None).unwrap();
    let held = Cell::new(false);
    let err = parse_locked(&store, 1, "5", &held).unwrap_err();
    match err {
        JobError::Lock(lockmgr::Error::Locked {
            name, lock_process, ..
        }) => {
            assert_eq!(name, "parse:1");
            assert_eq!(lock_process, Some(i64::from(std::process::id())));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(!held.get(), "the body ran although the lock was held");
}

fn wait_acquires_after_the_holder_releases(db: &TestDb) {
    let store = db.store();
    let held = store.get_lock("wait:w", None).unwrap();
    let releaser = store.clone();
    let release_at = Instant::now() + Duration::from_millis(300);
    let thread = std::thread::spawn(move || {
        std::thread::sleep(release_at.saturating_duration_since(Instant::now()));
        assert!(releaser.unlock(&held).unwrap());
    });
    let ran_at = run_when_free(&store, "w").unwrap();
    thread.join().unwrap();
    assert!(
        ran_at >= release_at,
        "ran while the other holder had the lock"
    );
    assert!(!store.is_locked("wait:w").unwrap());
}

fn wait_gives_up_when_the_holder_stays(db: &TestDb) {
    let store = db.store();
    let _held = store.get_lock("short:s", None).unwrap();
    let started = Instant::now();
    let err = run_if_free_soon(&store, "s").unwrap_err();
    assert!(err.is_locked(), "{err}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "gave up after {took:?}");
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
}

fn guard_binding_sees_the_lock(db: &TestDb) {
    let store = db.store();
    let before = store.get_lock("other", None).unwrap().fence;
    let (name, fence, never) = with_guard(&store, 3, "x").unwrap();
    assert_eq!(name, "guarded:3-x");
    assert!(fence > before);
    assert!(never, "expires = 0 must never expire");
    assert!(!store.is_locked("guarded:3-x").unwrap());
    assert!(
        !store.is_locked("guarded:extra").unwrap(),
        "an extra lock taken through the guard outlived the call"
    );
}

fn methods_lock_in_their_own_store(db: &TestDb) {
    let mut account = Account {
        store: db.store(),
        id: 9,
        balance: 10,
    };
    assert_eq!(account.balance(9).unwrap(), 10);
    let (balance, info) = account.deposit(9, 5).unwrap();
    assert_eq!(balance, 15);
    assert_eq!(info.name, "account:9");
    assert!(info.fence > 0);
    assert!(!account.store.is_locked("account:9").unwrap());
    // Held elsewhere: the method's body does not run.
    let _held = account.store.get_lock("account:9", None).unwrap();
    assert!(account.deposit(9, 100).unwrap_err().is_locked());
    assert_eq!(account.balance, 15);
}

fn invalid_rendered_name_is_an_error(db: &TestDb) {
    let store = db.store();
    let ran = Cell::new(false);
    let long = "k".repeat(300);
    let err = run(&store, &long, || ran.set(true)).unwrap_err();
    assert!(matches!(err, lockmgr::Error::InvalidName { .. }), "{err}");
    let huge = "h".repeat(1 << 20);
    for bad in ["line\nbreak", "nul\0", "esc\u{1b}", huge.as_str()] {
        let err = run(&store, bad, || ran.set(true)).unwrap_err();
        assert!(matches!(err, lockmgr::Error::InvalidName { .. }), "{err}");
    }
    assert!(!ran.get());
    assert!(store.list_locks().unwrap().is_empty());
    // Odd but valid keys render into names that round-trip exactly.
    for odd in ["quote'\"; DROP TABLE lockmgr_lock; --", "日本語 ✓ 🔒", "%_"] {
        let name = format!("t:{odd}");
        let held = run(&store, odd, || store.is_locked(&name).unwrap()).unwrap();
        assert!(
            held,
            "{name:?} was held under its exact name during the call"
        );
        assert!(!store.is_locked(&name).unwrap());
    }
}

testkit::backend_tests!(
    reentrant_call_is_locked_without_running_the_body,
    a_different_name_works_inside,
    released_after_return,
    released_after_question_mark,
    released_after_panic,
    locked_error_goes_through_from,
    wait_acquires_after_the_holder_releases,
    wait_gives_up_when_the_holder_stays,
    guard_binding_sees_the_lock,
    methods_lock_in_their_own_store,
    invalid_rendered_name_is_an_error,
);

// The registry: every declaration of this file, with its arguments, function path
// and line.

#[test]
fn declared_locks_lists_every_declaration_of_this_file() {
    let mine: Vec<&DeclaredLock> = declared_locks()
        .into_iter()
        .filter(|decl| decl.file == file!())
        .collect();
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
    let described: Vec<(&str, Option<u64>, Option<u64>, &str)> = mine
        .iter()
        .map(|d| (d.name, secs(d.expires), secs(d.wait), d.function))
        .collect();
    let module = module_path!();
    let f = |name: &str| format!("{module}::{name}");
    // Without `expires`, a job's lock is a 60 s lease renewed while the body runs.
    let expected = [
        ("account:{id}", Some(60), None, f("deposit")),
        ("account:{self_id}", Some(60), None, f("balance")),
        ("g/{{}}/{a}", Some(60), None, f("grammar_braces")),
        ("grammar:{a}-{b}:{{x}}", Some(60), None, f("grammar_two")),
        ("guarded:{a}-{b}", None, None, f("with_guard")),
        ("parse:{key}", Some(60), None, f("parse_locked")),
        ("short:{key}", Some(60), Some(1), f("run_if_free_soon")),
        ("t:{key}", Some(60), None, f("run")),
        ("wait:{key}", Some(60), Some(10), f("run_when_free")),
        ("{a}{b}@g", Some(60), None, f("grammar_adjacent")),
    ];
    assert!(
        mine.iter().all(|d| d.keepalive),
        "keep-alive is the default"
    );
    let expected: Vec<(&str, Option<u64>, Option<u64>, &str)> = expected
        .iter()
        .map(|(n, e, w, f)| (*n, *e, *w, f.as_str()))
        .collect();
    assert_eq!(described, expected);
    // Every line points at the `fn` of its declaration in this very file.
    let source = include_str!("macro_sync.rs");
    let lines: Vec<&str> = source.lines().collect();
    for decl in &mine {
        let line = lines[decl.line as usize - 1];
        let fn_name = decl.function.rsplit("::").next().unwrap();
        assert!(
            line.contains(&format!("fn {fn_name}")),
            "{decl:?} points at {line:?}"
        );
    }
}

/// Templates that exercise the grammar: adjacent placeholders, escaped braces, a
/// placeholder at each end. Each body returns the name it was called under.
#[locked(name = "grammar:{a}-{b}:{{x}}", store = store, guard = g)]
fn grammar_two(store: &LockStore, a: &str, b: u32) -> lockmgr::Result<String> {
    Ok(g.name().to_string())
}

#[locked(name = "{a}{b}@g", store = store, guard = g)]
fn grammar_adjacent(store: &LockStore, a: &str, b: &str) -> lockmgr::Result<String> {
    Ok(g.name().to_string())
}

#[locked(name = "g/{{}}/{a}", store = store, guard = g)]
fn grammar_braces(store: &LockStore, a: u8) -> lockmgr::Result<String> {
    Ok(g.name().to_string())
}

/// The runtime never parses a template: it matches names against the pieces the
/// macro parsed. A name each declaration rendered is matched by it (and by no other
/// of these); a name that differs in the literal text, or leaves a placeholder
/// empty, is not.
#[test]
fn the_runtime_matches_names_by_the_macros_grammar() {
    let db = TestDb::sqlite();
    let store = db.store();
    let decl = |template: &str| -> &'static DeclaredLock {
        declared_locks()
            .into_iter()
            .find(|d| d.name == template)
            .unwrap_or_else(|| panic!("{template} is declared"))
    };
    let two = decl("grammar:{a}-{b}:{{x}}");
    let adjacent = decl("{a}{b}@g");
    let braces = decl("g/{{}}/{a}");
    let rendered = [
        (two, grammar_two(&store, "p-q", 7).unwrap()),
        (adjacent, grammar_adjacent(&store, "x", "y").unwrap()),
        (braces, grammar_braces(&store, 9).unwrap()),
    ];
    assert_eq!(
        rendered.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
        ["grammar:p-q-7:{x}", "xy@g", "g/{}/9"]
    );
    for (own, name) in &rendered {
        for (other, _) in &rendered {
            assert_eq!(
                other.matches(name),
                std::ptr::eq(*own, *other),
                "{} matching {name}",
                other.name
            );
        }
    }
    for (decl, name) in [
        (two, "grammar:-7:{x}"),
        (two, "grammar:p-7:x"),
        (two, "grammar:p-7:{x}!"),
        (adjacent, "x@g"),
        (adjacent, "xy@h"),
        (braces, "g/{{}}/9"),
        (braces, "g/{}/"),
    ] {
        assert!(!decl.matches(name), "{} matched {name}", decl.name);
    }
}
