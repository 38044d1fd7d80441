//! The `#[locked]` attribute of [lockmgr](https://docs.rs/lockmgr); use it as
//! `lockmgr::locked`.
//!
//! The crate follows the parse / validate / expand split: `attr` reads the arguments,
//! `template` the name template, `valid` checks them against the function, and
//! `expand` writes the guarded function. Every error of one attribute is collected
//! (`errors`) and reported together, each at the offending token.

#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::ToTokens;
use syn::ItemFn;

mod attr;
mod duration;
mod errors;
mod expand;
mod template;
mod valid;

/// Run a function under a named lock from a `lockmgr` store: every call renders the
/// name, acquires the lock (retrying up to `wait`), runs the body, and releases the
/// lock on every way out — return, `?`, panic, and (for `async fn`) a future dropped
/// before it completes. When the lock cannot be had, the call returns
/// `Err(E::from(lockmgr::Error::Locked { .. }))` and the body does not run.
///
/// ```
/// use lockmgr::locked;
///
/// #[derive(Debug)]
/// enum SyncError {
///     Lock(lockmgr::Error),
///     Remote(String),
/// }
///
/// impl From<lockmgr::Error> for SyncError {
///     fn from(err: lockmgr::Error) -> Self {
///         SyncError::Lock(err)
///     }
/// }
///
/// #[locked(name = "sync-account:{id}", expires = 60, wait = 30)]
/// fn sync_account(id: u64) -> Result<u64, SyncError> {
///     // At most one process (on any host sharing the store) runs this for a given
///     // `id` at a time; callers wait up to 30 s for their turn.
///     Ok(id * 2)
/// }
/// # fn main() -> Result<(), SyncError> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
///
/// assert_eq!(sync_account(21)?, 42);
/// # Ok(()) }
/// ```
///
/// The function must return a `Result<T, E>` where `E: From<lockmgr::Error>`
/// (`lockmgr::Error` itself, `anyhow::Error`, or your own error type), under any name:
/// `lockmgr::Result<T>`, `type JobResult = Result<(), MyError>` and other aliases work,
/// as the check is by trait, and a missing `From` is reported at the return type. Its signature
/// is kept exactly — visibility, generics, where-clauses, `self` receivers, other
/// attributes, `async`, `unsafe` — and only the body is wrapped, so `return` and `?`
/// work as usual. It works on free functions, methods (`&self`, `&mut self`, `self`),
/// generic functions and `async fn`s; not on `const fn`.
///
/// # Arguments
///
/// ## `name = "…"` (required)
///
/// A string literal: the lock name template. `{param}` is replaced by that
/// parameter's `Display`; `{{` and `}}` are literal braces. The fixed text may hold
/// `A-Z a-z 0-9 _ . : / @ -`; a placeholder may render anything a lock name allows.
/// The rendered name must be 1 to 255 bytes without control characters; otherwise the
/// call returns `Err(E::from(lockmgr::Error::InvalidName { .. }))` (it never panics).
///
/// ```
/// # use lockmgr::locked;
/// #[locked(name = "report:{kind}/{day}")]
/// fn build_report(kind: &str, day: u32) -> lockmgr::Result<String> {
///     Ok(format!("{kind} report for day {day}"))
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
/// build_report("sales", 3)?; // holds the lock "report:sales/3" while it runs
///
/// // A rendered name that is not a valid lock name is an error, not a panic:
/// let err = build_report(&"x".repeat(300), 1).unwrap_err();
/// assert!(matches!(err, lockmgr::Error::InvalidName { .. }));
/// # Ok(()) }
/// ```
///
/// ## Durations
///
/// `expires`, `wait`, `min_hold` and `once_per` take an integer number of seconds
/// (`60`), a string with a unit checked at compile time (`"500ms"`, `"90s"`, `"5m"`,
/// `"1h"`, `"1d"`), or the path of a `const` of type `std::time::Duration`:
///
/// ```
/// # use lockmgr::locked;
/// use std::time::Duration;
///
/// const LEASE: Duration = Duration::from_millis(1500);
///
/// #[locked(name = "poll", expires = LEASE, wait = "250ms")]
/// fn poll() -> lockmgr::Result<()> {
///     Ok(())
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
/// # poll()?;
/// # Ok(()) }
/// ```
///
/// ## `expires = DURATION` (default: a 60 s lease, kept alive)
///
/// How long the lock lives without a renewal, so how long a job whose process died
/// keeps others out; zero = never expires. With keep-alive (the default, see
/// `keepalive`), the lock is renewed every third of it while the body runs, so a job
/// may run far longer: without `expires`, a crashed job's lock frees itself within 60 s
/// (`lockmgr::DEFAULT_JOB_LEASE`). With `keepalive = false` the lock is not renewed and
/// `expires` defaults to 600 s, like `get_lock` and `LockMgr`.
///
/// ```
/// # use lockmgr::locked;
/// #[locked(name = "nightly-import", expires = 3600)]
/// fn nightly_import() -> lockmgr::Result<()> {
///     Ok(())
/// }
///
/// #[locked(name = "one-time-migration", expires = 0)] // held until released
/// fn one_time_migration() -> lockmgr::Result<()> {
///     Ok(())
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
/// # nightly_import()?; one_time_migration()?;
/// # Ok(()) }
/// ```
///
/// ## `wait = DURATION` (default: don't wait)
///
/// While someone else holds the lock, keep retrying for up to this long (short,
/// growing, jittered sleeps) before giving up with `Error::Locked`. Without `wait`, a
/// held lock fails the call at once. A sync function with `wait` blocks its thread
/// while it waits: called on an async runtime's thread (detected with lockmgr's `tokio`
/// feature), it logs a warning once, naming the function; make it an `async fn` or
/// call it through `tokio::task::spawn_blocking`.
///
/// ```
/// # use lockmgr::locked;
/// #[locked(name = "mailer", wait = 10)]
/// fn send_mail() -> lockmgr::Result<()> {
///     Ok(())
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
/// # lockmgr::set_default_store(store.clone());
/// let _busy = store.get_lock("mailer", Some(std::time::Duration::from_millis(300)))?;
/// send_mail()?; // waits until the other holder's lock expires (≈ 0.3 s), then runs
/// # Ok(()) }
/// ```
///
/// ## `store = EXPR` (default: `lockmgr::default_store()`)
///
/// An expression giving the `&LockStore` to lock in, evaluated at each call before the
/// body; it may use the parameters (`&self.store`, a `&LockStore` parameter, a
/// static). Without it, the default store is used (`lockmgr::set_default_store`, else
/// the environment), and an error opening it is returned through `E::from`.
///
/// ```
/// use lockmgr::{locked, LockStore};
///
/// struct Billing {
///     store: LockStore,
/// }
///
/// impl Billing {
///     #[locked(name = "invoice:{number}", store = &self.store)]
///     fn send_invoice(&self, number: u32) -> lockmgr::Result<bool> {
///         self.store.is_locked(&format!("invoice:{number}"))
///     }
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
/// let billing = Billing { store };
/// assert!(billing.send_invoice(7)?); // locked while the body ran
/// assert!(!billing.store.is_locked("invoice:7")?); // released after
/// # Ok(()) }
/// ```
///
/// ## `guard = IDENT`
///
/// Binds the lock's guard in the body as `IDENT: &mut lockmgr::LockGuard`, to read its
/// fencing token (`fence()`), renew it (`renew()`), or take extra locks released with
/// it (`lock(..)`). The guard stays owned by the generated code, so the lock is still
/// released when the body ends, however it ends.
///
/// ```
/// # use lockmgr::locked;
/// #[locked(name = "ledger", expires = 30, guard = g)]
/// fn post_to_ledger(amount: i64) -> lockmgr::Result<i64> {
///     let fence = g.fence(); // pass it along so the ledger can refuse stale writers
///     g.renew()?; // a long step: 120 s more
///     g.lock("ledger-archive")?; // an extra lock, released with the main one
///     Ok(fence * amount)
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
/// assert!(post_to_ledger(5)? > 0);
/// assert!(!lockmgr::is_locked("ledger-archive")?);
/// # Ok(()) }
/// ```
///
/// ## `keepalive = BOOL` (default `true`)
///
/// Renews the lock in the background (at about a third of `expires`, owner-checked)
/// while the body runs, so a job may run longer than its expiry. If a renewal finds
/// the lock gone or taken over, the guard is marked lost: bind it with `guard = g` and
/// check `g.is_lost()` (or wait on `g.lost_signal()`) between steps. `keepalive = false`
/// opts out: the lock then simply expires after `expires` (default 600 s). A kept-alive
/// `expires` under `lockmgr::MIN_KEEPALIVE_EXPIRES` (3 s) is raised to it.
///
/// ```
/// # use lockmgr::locked;
/// #[locked(name = "reindex", expires = 3, keepalive = true, guard = g)]
/// fn reindex() -> lockmgr::Result<bool> {
///     std::thread::sleep(std::time::Duration::from_millis(3500)); // > expires
///     Ok(!g.is_lost() && lockmgr::is_locked("reindex")?)
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
/// assert!(reindex()?);
/// # Ok(()) }
/// ```
///
/// ## `min_hold = DURATION`
///
/// Keeps the lock at least this long after it was taken, by the database clock: a call
/// that finishes sooner leaves the lock in place until then. For jobs that must run at
/// most once per window that starts when they run. For a job fired on a fixed schedule,
/// use `once_per` instead: a window that starts at the acquisition drops ticks when it
/// equals the interval, and runs a tick twice under clock skew when it is shorter.
///
/// ```
/// # use lockmgr::locked;
/// #[locked(name = "hourly-digest", min_hold = "50m")]
/// fn send_digest() -> lockmgr::Result<()> {
///     Ok(()) // fast; but no other host sends the digest again for 50 minutes
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
/// send_digest()?;
/// assert!(send_digest().unwrap_err().is_locked());
/// # Ok(()) }
/// ```
///
/// ## `on_locked = "skip"` (default `"error"`)
///
/// What a call does when the lock is taken: `"error"` returns
/// `Err(E::from(Error::Locked { .. }))`; `"skip"` returns `Ok(())` (for `Result<(), E>`)
/// or `Ok(None)` (for `Result<Option<T>, E>`) without running the body, and logs a
/// `lockmgr: skipped` debug event. Other return types are a compile error with
/// `"skip"`. For a job on many replicas, a lost race is not an error.
///
/// ```
/// # use lockmgr::locked;
/// #[locked(name = "refresh-cache", on_locked = "skip")]
/// fn refresh_cache() -> lockmgr::Result<Option<usize>> {
///     Ok(Some(42)) // entries refreshed
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
/// assert_eq!(refresh_cache()?, Some(42));
/// let _elsewhere = lockmgr::get_lock("refresh-cache", None)?;
/// assert_eq!(refresh_cache()?, None); // skipped: another process runs it
/// # Ok(()) }
/// ```
///
/// ## `once_per = DURATION`
///
/// For a job that a scheduler fires on every replica at every tick: at most one call per
/// tick runs the body, across all processes sharing the store. Tick `k` starts at
/// `k × DURATION` after the Unix epoch; a call belongs to the tick *nearest* to it, by the
/// database clock (SQLite: the process's clock). So a replica whose fire time is off by
/// less than half a period (clock skew, scheduler jitter and the database round trip
/// together) still names the right tick. The first call of a tick takes the row
/// `NAME@TICK-START` (kept until two periods after the tick's start, never released), then
/// the job's own lock `NAME` for the run; every other call returns `Ok(())` / `Ok(None)`
/// as with `on_locked = "skip"`, which `once_per` implies.
///
/// Promised: at most one run per tick; every tick that some replica fires runs. Not
/// promised: a tick whose previous run is still going is skipped, not queued (runs
/// never overlap); a tick whose winner crashes mid-run is lost (as with ShedLock), and
/// the job's lease frees the job for a later tick within a minute. `once_per` takes no
/// `wait`, `min_hold` or `on_locked = "error"`.
///
/// ```
/// # use lockmgr::locked;
/// #[locked(name = "cron:digest", once_per = "1h")]
/// fn send_digest() -> lockmgr::Result<()> {
///     Ok(()) // fired by every replica's scheduler at the hour; runs once
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
/// send_digest()?; // runs: the first call of this hour's tick
/// send_digest()?; // Ok(()) without running: the tick is taken
/// # Ok(()) }
/// ```
///
/// # Methods
///
/// In a method, the name may use `{self.field}` (a named or tuple field of the
/// receiver) and `{self}` (when `Self: Display`):
///
/// ```
/// # use lockmgr::locked;
/// struct Account {
///     id: u64,
/// }
///
/// impl Account {
///     #[locked(name = "account:{self.id}", guard = g)]
///     fn sync(&self) -> lockmgr::Result<String> {
///         Ok(g.name().to_string())
///     }
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
/// assert_eq!(Account { id: 7 }.sync()?, "account:7");
/// # Ok(()) }
/// ```
///
/// # `async fn`
///
/// An `async fn` acquires when first polled and holds the guard inside its future, so
/// dropping the future (a timeout, a cancelled task) releases the lock. Without a
/// `wait`, it runs on any executor. Waiting sleeps asynchronously and never blocks the
/// executor's thread between attempts: with lockmgr's `tokio` feature inside a tokio
/// runtime, with `tokio::time::sleep`, the database calls going to tokio's blocking
/// pool; otherwise with a `futures-timer` delay, the database calls going to the
/// `blocking` crate's pool. See `lockmgr::LockMgr::acquire_async`.
/// When the body returns (`?` included), the call awaits the guard's
/// `unlock_async()`: the release runs on the same blocking pool, never on the
/// executor's thread. A future dropped half-way (a timeout, a cancelled task) or a
/// panicking body releases through the guard's drop: with the `tokio` feature, on a
/// tokio task, that release is handed to tokio's blocking pool too; elsewhere it is
/// one short statement on the dropping thread. The future is `Send` whenever the
/// body's is, so it can be spawned.
///
/// ```
/// # use lockmgr::locked;
/// #[locked(name = "refresh:{user}", wait = 5)]
/// async fn refresh_token(user: &str) -> lockmgr::Result<String> {
///     Ok(format!("new token for {user}"))
/// }
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// refresh_token("ada").await?;
/// # Ok(()) })
/// # }
/// ```
///
/// # Checked at compile time
///
/// Each of these is a compile error pointing at the offending token, all errors of one
/// attribute reported together: a missing or empty `name`; a placeholder that is not a
/// parameter (or `self…` outside a method); unbalanced braces; a character outside
/// `A-Z a-z 0-9 _ . : / @ -` in the fixed text; an unknown or repeated argument; a
/// duration that is not one (a negative or fractional number, a string without a known
/// unit, a `const` that is not a `Duration`); a zero `once_per`, or `once_per` with
/// `wait`, `min_hold` or `on_locked = "error"`; an `on_locked` other than `"skip"` or
/// `"error"`; a `keepalive` that is not `true` or `false`; a `guard` that is not an
/// identifier or hides a parameter; a `const fn`. The compiler checks, at the return
/// type, that it is a `Result` whose error converts from `lockmgr::Error` (and, with
/// `"skip"` or `once_per`, that its success type is `()` or an `Option`). Generated
/// code triggers no warning, also under `#![deny(warnings)]`.
///
/// # Registry
///
/// Every `#[locked]` function registers a `lockmgr::DeclaredLock` (the name template,
/// `expires`, `wait`, `keepalive`, `min_hold`, `once_per`, `on_locked`,
/// `module_path!()::fn_name`, file and line) at program start;
/// `lockmgr::declared_locks()` lists those linked into the running binary.
#[proc_macro_attribute]
pub fn locked(args: TokenStream, item: TokenStream) -> TokenStream {
    locked_impl(args.into(), item.into()).into()
}

fn locked_impl(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(err) => {
            // Not a function with a body (or a half-typed one): say so, and keep the
            // item so its own errors, if any, are the compiler's usual ones.
            let mut tokens = syn::Error::new(
                err.span(),
                format!("#[locked] goes on a function with a body: {err}"),
            )
            .to_compile_error();
            tokens.extend(item);
            return tokens;
        }
    };
    let mut errors = errors::Errors::default();
    let args = attr::parse(args, &mut errors);
    let template = args
        .name
        .as_ref()
        .map(|lit| template::parse(lit, &mut errors));
    valid::check(&func, &args, template.as_ref(), &mut errors);
    match (errors.finish(), template) {
        (Ok(()), Some(template)) => expand::expand(func, args, template),
        (result, _) => {
            // Emit the function unchanged beside the errors, so that its callers do
            // not add a cascade of follow-up errors.
            let mut tokens = result.err().map_or_else(
                || {
                    syn::Error::new(proc_macro2::Span::call_site(), "invalid #[locked]")
                        .to_compile_error()
                },
                |err| err.to_compile_error(),
            );
            func.to_tokens(&mut tokens);
            tokens
        }
    }
}
