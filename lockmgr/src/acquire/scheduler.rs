//! One scheduler for the whole process: a timer heap of jobs (keep-alive renewals),
//! one thread that sleeps until the next one is due, and a small bounded set of
//! worker threads that run the due jobs.
//!
//! A job may block (a renewal waits for its database, up to the statement timeout and
//! its retries), so the timer thread never runs one itself: it hands each due job to
//! a worker. Jobs belong to a *group* (the database they talk to): at most
//! [`PER_GROUP`] jobs of one group run at once, so a database that hangs holds at most
//! that many workers and the jobs of other databases still run on time; at most
//! [`MAX_WORKERS`] workers exist in all. The thread count therefore does not grow
//! with the number of jobs. Idle workers, and the timer thread when it has nothing
//! left to time, end after a while; they are started again on demand.
//!
//! Cancelling a job ([`Scheduler::cancel`]) never waits: a run under way finishes on
//! its worker, and the job is then forgotten.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Workers running jobs of one group at most.
pub(crate) const PER_GROUP: usize = 4;

/// Workers in all, at most.
pub(crate) const MAX_WORKERS: usize = 16;

/// How long an idle worker, or a timer thread with nothing to time, stays.
const IDLE: Duration = Duration::from_secs(10);

/// Something to run now and then, on a worker thread.
pub(crate) trait Job: Send + Sync + 'static {
    /// Run once; when to run again (`None`: never, forget the job).
    fn run(&self) -> Option<Instant>;
}

/// A job's handle, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct JobId(u64);

/// The scheduler; [`Scheduler::global`] is the process's one.
pub(crate) struct Scheduler {
    state: Mutex<State>,
    /// Wakes the timer thread: a job is due sooner than it thought.
    timer: Condvar,
    /// Wakes a worker: a job is ready.
    work: Condvar,
}

#[derive(Default)]
struct State {
    next_id: u64,
    jobs: HashMap<JobId, Entry>,
    /// When each job is due; entries of cancelled or moved jobs are skipped.
    timers: BinaryHeap<Reverse<(Instant, JobId)>>,
    /// Due jobs handed to the workers, in order.
    ready: VecDeque<(JobId, u64, Arc<dyn Job>)>,
    /// Due jobs waiting because their group has [`PER_GROUP`] jobs running.
    backlog: HashMap<u64, VecDeque<JobId>>,
    /// Jobs of each group ready or running, and of all groups.
    busy: HashMap<u64, usize>,
    busy_total: usize,
    timer_running: bool,
    workers: usize,
}

struct Entry {
    job: Arc<dyn Job>,
    group: u64,
    /// When it is due, unless it is queued or running (then `None`).
    due: Option<Instant>,
}

impl Scheduler {
    /// The process's scheduler, created on first use (its threads start on demand).
    pub(crate) fn global() -> &'static Arc<Scheduler> {
        static GLOBAL: OnceLock<Arc<Scheduler>> = OnceLock::new();
        GLOBAL.get_or_init(Scheduler::new)
    }

    pub(crate) fn new() -> Arc<Scheduler> {
        Arc::new(Scheduler {
            state: Mutex::new(State::default()),
            timer: Condvar::new(),
            work: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `job` first at `due`, then whenever its run says; `group`: the database it
    /// talks to (see the module's doc). Never blocks on a job.
    pub(crate) fn schedule(self: &Arc<Self>, job: Arc<dyn Job>, group: u64, due: Instant) -> JobId {
        let mut state = self.state();
        state.next_id += 1;
        let id = JobId(state.next_id);
        state.jobs.insert(
            id,
            Entry {
                job,
                group,
                due: Some(due),
            },
        );
        self.set_timer(&mut state, id, due);
        id
    }

    /// Forget `id`: it does not run again. A run under way is not waited for.
    pub(crate) fn cancel(&self, id: JobId) {
        self.state().jobs.remove(&id);
    }

    /// Time `id` for `due`, waking (or starting) the timer thread.
    fn set_timer(self: &Arc<Self>, state: &mut State, id: JobId, due: Instant) {
        let sooner = state
            .timers
            .peek()
            .is_none_or(|Reverse((next, _))| due < *next);
        state.timers.push(Reverse((due, id)));
        if !state.timer_running {
            let scheduler = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("lockmgr-keepalive".into())
                .spawn(move || scheduler.time());
            match spawned {
                Ok(_) => state.timer_running = true,
                Err(err) => tracing::warn!(error = %err, "lockmgr: cannot start keep-alive"),
            }
        } else if sooner {
            self.timer.notify_one();
        }
    }

    /// The timer thread: hand each job to the workers when it is due.
    fn time(self: Arc<Self>) {
        let mut state = self.state();
        loop {
            let now = Instant::now();
            while let Some(&Reverse((due, id))) = state.timers.peek() {
                if due > now {
                    break;
                }
                state.timers.pop();
                // Skip what was cancelled, or timed again since.
                let group = match state.jobs.get_mut(&id) {
                    Some(entry) if entry.due == Some(due) => {
                        entry.due = None;
                        entry.group
                    }
                    _ => continue,
                };
                self.dispatch(&mut state, id, group);
            }
            let wait = match state.timers.peek() {
                Some(Reverse((due, _))) => due.saturating_duration_since(now),
                None => IDLE,
            };
            let (next, waited) = self
                .timer
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            if waited.timed_out() && state.timers.is_empty() {
                state.timer_running = false;
                return;
            }
        }
    }

    /// Queue a due job for a worker, or behind its group's running jobs.
    fn dispatch(self: &Arc<Self>, state: &mut State, id: JobId, group: u64) {
        let Some(job) = state.jobs.get(&id).map(|entry| Arc::clone(&entry.job)) else {
            return;
        };
        let busy = state.busy.entry(group).or_default();
        if *busy >= PER_GROUP {
            state.backlog.entry(group).or_default().push_back(id);
            return;
        }
        *busy += 1;
        state.busy_total += 1;
        state.ready.push_back((id, group, job));
        // A worker for each job ready or running, up to the cap.
        if state.workers < state.busy_total.min(MAX_WORKERS) {
            let scheduler = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("lockmgr-renew".into())
                .spawn(move || scheduler.serve());
            match spawned {
                Ok(_) => state.workers += 1,
                Err(err) => {
                    tracing::warn!(error = %err, "lockmgr: cannot start a keep-alive worker")
                }
            }
        }
        self.work.notify_one();
    }

    /// A worker: run ready jobs; end after a while without any.
    fn serve(self: Arc<Self>) {
        let mut state = self.state();
        loop {
            if let Some((id, group, job)) = state.ready.pop_front() {
                // A job cancelled while it was queued is not run.
                let next = if state.jobs.contains_key(&id) {
                    drop(state);
                    // A job that panics is forgotten; its worker and its group's slot
                    // carry on.
                    let run = std::panic::AssertUnwindSafe(|| job.run());
                    let next = std::panic::catch_unwind(run).unwrap_or(None);
                    drop(job);
                    state = self.state();
                    next
                } else {
                    None
                };
                self.finished(&mut state, id, group, next);
                continue;
            }
            let (next, waited) = self
                .work
                .wait_timeout(state, IDLE)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            if waited.timed_out() && state.ready.is_empty() {
                state.workers -= 1;
                return;
            }
        }
    }

    /// A run of `id` ended: time its next run, and let its group's next job go.
    fn finished(self: &Arc<Self>, state: &mut State, id: JobId, group: u64, next: Option<Instant>) {
        match (state.jobs.get_mut(&id), next) {
            (Some(entry), Some(due)) => {
                entry.due = Some(due);
                self.set_timer(state, id, due);
            }
            (Some(_), None) => {
                state.jobs.remove(&id);
            }
            (None, _) => {}
        }
        if let Some(busy) = state.busy.get_mut(&group) {
            *busy = busy.saturating_sub(1);
            state.busy_total = state.busy_total.saturating_sub(1);
        }
        while let Some(waiting) = state.backlog.get_mut(&group).and_then(VecDeque::pop_front) {
            if state.jobs.contains_key(&waiting) {
                self.dispatch(state, waiting, group);
                break;
            }
        }
        if state.busy.get(&group) == Some(&0) {
            state.busy.remove(&group);
            state.backlog.remove(&group);
        }
    }

    /// Threads this scheduler runs now: (timer, workers).
    #[cfg(test)]
    fn threads(&self) -> (bool, usize) {
        let state = self.state();
        (state.timer_running, state.workers)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::RwLock;

    use super::*;

    /// Counts its runs; each run blocks for `block`, and, if gated, until the
    /// test opens the gate (drops its write guard); runs `every` so often.
    struct Counter {
        runs: AtomicUsize,
        block: Duration,
        gate: Option<Arc<RwLock<()>>>,
        every: Duration,
    }

    impl Counter {
        fn new(block: Duration, every: Duration) -> Arc<Counter> {
            Counter::with_gate(block, None, every)
        }

        /// A job whose runs hang until `gate` is no longer write-locked.
        fn gated(gate: &Arc<RwLock<()>>, every: Duration) -> Arc<Counter> {
            Counter::with_gate(Duration::ZERO, Some(Arc::clone(gate)), every)
        }

        fn with_gate(
            block: Duration,
            gate: Option<Arc<RwLock<()>>>,
            every: Duration,
        ) -> Arc<Counter> {
            Arc::new(Counter {
                runs: AtomicUsize::new(0),
                block,
                gate,
                every,
            })
        }

        fn runs(&self) -> usize {
            self.runs.load(Ordering::SeqCst)
        }
    }

    impl Job for Counter {
        fn run(&self) -> Option<Instant> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.block);
            if let Some(gate) = &self.gate {
                drop(gate.read());
            }
            Some(Instant::now() + self.every)
        }
    }

    fn eventually(mut check: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn jobs_run_when_due_and_again_until_cancelled() {
        let scheduler = Scheduler::new();
        let job = Counter::new(Duration::ZERO, Duration::from_millis(20));
        let started = Instant::now();
        let id = scheduler.schedule(job.clone(), 1, started + Duration::from_millis(100));
        assert!(eventually(|| job.runs() >= 1));
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(eventually(|| job.runs() >= 3), "not run again");
        scheduler.cancel(id);
        std::thread::sleep(Duration::from_millis(500)); // a run under way ends
        let runs = job.runs();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(job.runs(), runs, "ran after it was cancelled");
    }

    #[test]
    fn a_hung_group_holds_few_workers_and_delays_no_other_group() {
        let scheduler = Scheduler::new();
        let now = Instant::now();
        // Ten jobs of a database that hangs until the test lets it go on.
        let gate = Arc::new(RwLock::new(()));
        let closed = gate.write().unwrap();
        let hung: Vec<_> = (0..10)
            .map(|_| {
                let job = Counter::gated(&gate, Duration::from_secs(60));
                scheduler.schedule(job.clone(), 1, now);
                job
            })
            .collect();
        assert!(eventually(
            || hung.iter().map(|j| j.runs()).sum::<usize>() == PER_GROUP
        ));
        // A job of another database, due now, runs while they hang.
        let healthy = Counter::new(Duration::ZERO, Duration::from_secs(60));
        scheduler.schedule(healthy.clone(), 2, Instant::now());
        assert!(eventually(|| healthy.runs() == 1));
        assert_eq!(hung.iter().map(|j| j.runs()).sum::<usize>(), PER_GROUP);
        let (timer, workers) = scheduler.threads();
        assert!(timer && workers <= PER_GROUP + 1, "{workers} workers");
        // The hung group's other jobs get their turn as the first ones return.
        drop(closed);
        assert!(eventually(|| hung.iter().all(|j| j.runs() == 1)));
    }

    struct Panics;

    impl Job for Panics {
        fn run(&self) -> Option<Instant> {
            panic!("a job that panics");
        }
    }

    #[test]
    fn a_panicking_job_is_dropped_and_the_others_run_on() {
        let scheduler = Scheduler::new();
        let now = Instant::now();
        for _ in 0..2 * PER_GROUP {
            scheduler.schedule(Arc::new(Panics), 1, now);
        }
        let job = Counter::new(Duration::ZERO, Duration::from_secs(60));
        scheduler.schedule(job.clone(), 1, now + Duration::from_millis(50));
        assert!(eventually(|| job.runs() == 1));
        assert!(eventually(|| scheduler.state().jobs.len() == 1));
    }

    #[test]
    fn many_jobs_share_a_bounded_set_of_threads() {
        let scheduler = Scheduler::new();
        let now = Instant::now();
        let jobs: Vec<_> = (0..500)
            .map(|i| {
                let job = Counter::new(Duration::from_millis(1), Duration::from_millis(200));
                scheduler.schedule(job.clone(), i % 3, now + Duration::from_millis(i));
                job
            })
            .collect();
        assert!(eventually(|| jobs.iter().all(|j| j.runs() >= 2)));
        let (_, workers) = scheduler.threads();
        assert!(workers <= 3 * PER_GROUP, "{workers} workers");
    }
}
