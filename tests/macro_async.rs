//! `#[locked]` on `async fn`s and async methods, on SQLite and PostgreSQL: on tokio
//! (lockmgr's `tokio` feature) and on a bare executor that is not tokio.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use lockmgr::{declared_locks, locked, LockStore};
use testkit::TestDb;

/// Awaits `body` under the lock `a:{key}` of `store`.
#[locked(name = "a:{key}", store = store)]
async fn run<F: Future>(store: &LockStore, key: &str, body: F) -> lockmgr::Result<F::Output> {
    Ok(body.await)
}

/// Runs once `aw:{key}` is free, waiting up to 10 s.
#[locked(name = "aw:{key}", store = store, wait = 10)]
async fn run_when_free(store: &LockStore, key: &str) -> lockmgr::Result<Instant> {
    Ok(Instant::now())
}

#[derive(Debug)]
enum TaskError {
    Lock(lockmgr::Error),
    Body(&'static str),
}

impl From<lockmgr::Error> for TaskError {
    fn from(err: lockmgr::Error) -> Self {
        TaskError::Lock(err)
    }
}

/// A service owning its store, as tasks spawned on tokio need.
#[derive(Clone)]
struct Worker {
    store: LockStore,
    /// Bodies of `job` started.
    runs: Arc<AtomicU32>,
    /// Bodies of `job` running now, and the most seen at once.
    active: Arc<(AtomicU32, AtomicU32)>,
}

impl Worker {
    /// Holds `job:{id}` across an await point.
    #[locked(name = "job:{id}", store = &self.store, guard = guard)]
    async fn job(&self, id: u32, pause: Duration) -> Result<i64, TaskError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let (now, most) = &*self.active;
        most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        tokio::time::sleep(pause).await;
        now.fetch_sub(1, Ordering::SeqCst);
        Ok(guard.fence())
    }

    /// Fails with `?` after an await.
    #[locked(name = "job:{id}", store = &self.store)]
    async fn failing(&mut self, id: u32) -> Result<(), TaskError> {
        tokio::task::yield_now().await;
        Err(TaskError::Body("failed"))?;
        Ok(())
    }

    /// Panics after an await.
    #[locked(name = "job:{id}", store = &self.store.clone())]
    async fn panicking(self, id: u32) -> Result<(), TaskError> {
        tokio::task::yield_now().await;
        panic!("job {id} blew up");
    }
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn worker(db: &TestDb) -> Worker {
    Worker {
        store: db.store(),
        runs: Arc::default(),
        active: Arc::default(),
    }
}

/// A minimal executor that is not tokio: poll on this thread, park between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

fn held_while_running_and_reentry_is_locked(db: &TestDb) {
    let store = db.store();
    tokio_runtime().block_on(async {
        let inner_ran = AtomicBool::new(false);
        let (held, inner) = run(&store, "x", async {
            let held = store.is_locked("a:x").unwrap();
            tokio::task::yield_now().await;
            let inner = run(&store, "x", async {
                inner_ran.store(true, Ordering::SeqCst)
            })
            .await;
            let other = run(&store, "y", async { store.is_locked("a:y").unwrap() }).await;
            assert!(other.unwrap(), "a different name works inside");
            (held, inner)
        })
        .await
        .unwrap();
        assert!(held, "the body ran without the lock");
        assert!(inner.unwrap_err().is_locked());
        assert!(
            !inner_ran.load(Ordering::SeqCst),
            "the inner body ran without the lock"
        );
    });
    assert!(!store.is_locked("a:x").unwrap() && !store.is_locked("a:y").unwrap());
}

fn released_after_question_mark_and_panic(db: &TestDb) {
    let mut worker = worker(db);
    let store = worker.store.clone();
    tokio_runtime().block_on(async {
        let err = worker.failing(1).await.unwrap_err();
        assert!(matches!(err, TaskError::Body("failed")), "{err:?}");
        assert!(!store.is_locked("job:1").unwrap());

        let joined = tokio::spawn(worker.clone().panicking(2)).await;
        let panic = joined.unwrap_err();
        assert!(panic.is_panic(), "{panic}");
        // Dropped on the runtime's thread, the guard handed its release to the
        // blocking pool: it happens promptly, though maybe not before the join.
        assert!(released_soon(&store, "job:2").await);
    });
}

fn released_when_a_half_run_future_is_dropped(db: &TestDb) {
    let worker = worker(db);
    let store = worker.store.clone();
    tokio_runtime().block_on(async {
        let mut job = pin!(worker.job(3, Duration::from_secs(60)));
        // Run it into its long sleep (polling it until its body has started:
        // the acquisition goes through the blocking pool), then give up on it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while worker.runs.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the body never started");
            let timed_out = tokio::time::timeout(Duration::from_millis(20), job.as_mut()).await;
            assert!(timed_out.is_err(), "the job finished early");
        }
        assert_eq!(worker.runs.load(Ordering::SeqCst), 1, "the body ran once");
        assert!(store.is_locked("job:3").unwrap(), "not held mid-run");
    });
    // The pinned future was dropped with the block: the lock with it. (Its release
    // went to the blocking pool, and a runtime waits for that pool's work when it
    // shuts down.)
    assert!(!store.is_locked("job:3").unwrap());
    // Same for a spawned task that is aborted.
    tokio_runtime().block_on(async {
        let task = tokio::spawn({
            let worker = worker.clone();
            async move { worker.job(4, Duration::from_secs(60)).await }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !store.is_locked("job:4").unwrap() {
            assert!(Instant::now() < deadline, "the task never took its lock");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        let err = task.await.unwrap_err();
        assert!(err.is_cancelled());
        assert!(released_soon(&store, "job:4").await);
    });
}

/// Whether `name` is free within 10 s, checking without blocking the runtime.
async fn released_soon(store: &LockStore, name: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let store = store.clone();
        let name = name.to_string();
        let locked = tokio::task::spawn_blocking(move || store.is_locked(&name).unwrap());
        if !locked.await.unwrap() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn tokio_wait_does_not_block_the_executor(db: &TestDb) {
    let store = db.store();
    let held = store.get_lock("aw:t", None).unwrap();
    // One thread runs both the waiter and the task that releases the lock: the
    // release can only happen if the waiter yields the thread while it waits.
    let (ran_at, released_at) = tokio_runtime().block_on(async {
        let releaser = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let released_at = Instant::now();
            assert!(store.unlock(&held).unwrap());
            released_at
        };
        let (ran_at, released_at) = tokio::join!(run_when_free(&store, "t"), releaser);
        (ran_at.unwrap(), released_at)
    });
    assert!(ran_at >= released_at, "ran while the lock was held");
    assert!(!store.is_locked("aw:t").unwrap());
}

fn any_executor_runs_and_waits(db: &TestDb) {
    let store = db.store();
    // No wait: one attempt, on an executor that is not tokio.
    let value = block_on(run(&store, "bare", async {
        store.is_locked("a:bare").unwrap()
    }));
    assert!(value.unwrap());
    assert!(!store.is_locked("a:bare").unwrap());
    // With a wait: the holder (another thread) releases after 300 ms.
    let held = store.get_lock("aw:bare", None).unwrap();
    let releaser = store.clone();
    let release_at = Instant::now() + Duration::from_millis(300);
    let thread = std::thread::spawn(move || {
        std::thread::sleep(release_at.saturating_duration_since(Instant::now()));
        assert!(releaser.unlock(&held).unwrap());
    });
    let ran_at = block_on(run_when_free(&store, "bare")).unwrap();
    thread.join().unwrap();
    assert!(ran_at >= release_at, "ran while the lock was held");
}

fn spawned_tasks_take_turns(db: &TestDb) {
    let worker = worker(db);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fences = runtime.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let worker = worker.clone();
                tokio::spawn(async move { worker.job(5, Duration::from_millis(300)).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    });
    let won: Vec<_> = fences.iter().filter(|outcome| outcome.is_ok()).collect();
    assert!(!won.is_empty());
    for outcome in &fences {
        if let Err(err) = outcome {
            assert!(
                matches!(err, TaskError::Lock(e) if e.is_locked()),
                "{err:?}"
            );
        }
    }
    // No wait: a task arriving while another holds the lock is turned away without
    // running its body, and bodies never overlap.
    assert!(
        won.len() < 4,
        "four 300 ms bodies started together never met"
    );
    assert_eq!(worker.runs.load(Ordering::SeqCst) as usize, won.len());
    assert_eq!(
        worker.active.1.load(Ordering::SeqCst),
        1,
        "bodies overlapped"
    );
    assert!(!worker.store.is_locked("job:5").unwrap());
}

testkit::backend_tests!(
    held_while_running_and_reentry_is_locked,
    released_after_question_mark_and_panic,
    released_when_a_half_run_future_is_dropped,
    tokio_wait_does_not_block_the_executor,
    any_executor_runs_and_waits,
    spawned_tasks_take_turns,
);

/// Compile-time: a `#[locked]` async method's future is `Send` (it can be spawned).
#[allow(dead_code)]
fn futures_are_send(worker: &Worker) {
    fn is_send<T: Send>(_: T) {}
    is_send(worker.job(1, Duration::ZERO));
    is_send(worker.clone().panicking(1));
}

#[test]
fn declared_locks_lists_the_async_declarations() {
    let mut mine: Vec<(&str, Option<u64>, &str)> = declared_locks()
        .into_iter()
        .filter(|decl| decl.file == file!())
        .map(|decl| {
            (
                decl.name,
                decl.wait.map(|d| d.as_secs()),
                decl.function.rsplit("::").next().unwrap(),
            )
        })
        .collect();
    mine.sort();
    assert_eq!(
        mine,
        [
            ("a:{key}", None, "run"),
            ("aw:{key}", Some(10), "run_when_free"),
            ("job:{id}", None, "failing"),
            ("job:{id}", None, "job"),
            ("job:{id}", None, "panicking"),
        ]
    );
}
