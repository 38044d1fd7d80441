//! An application whose jobs are guarded by `#[locked]`, so that each runs at most once
//! at a time across all the processes and hosts sharing the lock database.
//!
//! Its command line (`src/main.rs`) has the lockmgr commands as a subcommand:
//! `cargo run -p lockmgr-example-app -- locks list-declared` lists the jobs below with
//! their name templates, expiry and wait, and whether each is held right now. The
//! binary `app-locks` (`src/bin/app-locks.rs`) shows the other way: the lockmgr
//! command line as a binary of the application's own.

use std::fmt;

use lockmgr::locked;

/// What a job of this application fails with. `From<lockmgr::Error>` is what lets
/// `#[locked]` report a lock held by someone else (`lockmgr::Error::Locked`).
#[derive(Debug)]
pub enum JobError {
    /// The job's lock could not be had (or the lock database failed).
    Lock(lockmgr::Error),
    /// The job's own failure.
    Failed(String),
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Lock(err) => write!(f, "{err}"),
            JobError::Failed(why) => write!(f, "job failed: {why}"),
        }
    }
}

impl std::error::Error for JobError {}

impl From<lockmgr::Error> for JobError {
    fn from(err: lockmgr::Error) -> Self {
        JobError::Lock(err)
    }
}

/// Build and send the nightly report: one run at a time across all hosts; a crashed run
/// frees the lock after an hour.
#[locked(name = "report:nightly", expires = 3600)]
pub fn nightly_report() -> Result<usize, JobError> {
    let lines = 3;
    Ok(lines)
}

/// Sync one account with the billing system: one sync per account at a time, waiting up
/// to 5 s for a running one to finish.
#[locked(name = "sync:account:{id}", expires = 60, wait = 5)]
pub fn sync_account(id: u64) -> Result<u64, JobError> {
    if id == 0 {
        return Err(JobError::Failed("account 0 does not exist".to_string()));
    }
    Ok(id)
}

/// Rebuild the search index. Its lock never expires: if a run crashes, an operator
/// looks at it and runs `lockmgr clear-lock search:reindex`.
#[locked(name = "search:reindex", expires = 0)]
pub fn reindex() -> Result<(), JobError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("locks.sqlite3");
        lockmgr::set_default_store(lockmgr::LockStore::open(url.to_str().unwrap()).unwrap());
        assert_eq!(nightly_report().unwrap(), 3);
        assert_eq!(sync_account(7).unwrap(), 7);
        assert!(matches!(sync_account(0), Err(JobError::Failed(_))));
        reindex().unwrap();
        // Every lock was released on the way out.
        assert!(lockmgr::list_locks().unwrap().is_empty());
    }
}
