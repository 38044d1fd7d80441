//! What this process uses, read from `/proc/self` (Linux): its threads and its CPU
//! time. A test that measures either should run alone in its test binary (one test
//! per file), since the harness runs a binary's tests in parallel threads.

use std::time::{Duration, Instant};

/// Threads of this process now (the entries of `/proc/self/task`).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap_or_else(|e| panic!("/proc/self/task: {e}"))
        .count()
}

/// CPU time this process has used so far, user and system, every thread included
/// (`utime + stime` of `/proc/self/stat`; a clock tick, usually 10 ms, is its grain).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .unwrap_or_else(|e| panic!("/proc/self/stat: {e}"));
    // The command name (field 2) is in parentheses and may hold spaces: count the
    // fields after its closing one. utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').expect("a stat line has the name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// Run `f`; its result, with the CPU time this whole process used meanwhile and the
/// wall time it took.
pub fn cpu_used_by<R>(f: impl FnOnce() -> R) -> (R, Duration, Duration) {
    let (cpu, wall) = (cpu_time(), Instant::now());
    let result = f();
    (result, cpu_time().saturating_sub(cpu), wall.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_threads_and_cpu() {
        // Sixteen more threads show up, whatever the other tests of this binary do
        // meanwhile (their threads may end between the two counts: a few at most).
        let before = thread_count();
        // Each thread stays until all sixteen and this one meet at the barrier.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(17));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let barrier = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                })
            })
            .collect();
        let during = thread_count();
        assert!(during > before + 8, "{before} threads, then {during}");
        barrier.wait();
        for thread in threads {
            thread.join().unwrap();
        }
        // Spinning uses CPU: 100 ms of it show up (however busy the machine is).
        let start = cpu_time();
        let deadline = Instant::now() + Duration::from_secs(30);
        while cpu_time() < start + Duration::from_millis(100) {
            assert!(Instant::now() < deadline, "spinning used no CPU");
            std::hint::black_box(0u64);
        }
        // Sleeping uses next to none.
        let ((), used, wall) = cpu_used_by(|| std::thread::sleep(Duration::from_millis(300)));
        assert!(used < Duration::from_millis(100), "{used:?} in {wall:?}");
    }
}
