//! The application's own command line, with lockmgr's commands as its `locks`
//! subcommand: `example-app locks list-declared` lists this application's jobs and
//! whether each is held right now; `example-app run JOB` runs one of them.
//!
//! `cargo run -p lockmgr-example-app -- locks list-declared`

use clap::{Parser, Subcommand};
use lockmgr_example_app::{nightly_report, reindex, sync_account, JobError};

/// An application whose jobs are guarded by `#[locked]`.
#[derive(Debug, Parser)]
#[command(name = "example-app", version, arg_required_else_help = true)]
struct App {
    #[command(subcommand)]
    command: AppCommand,
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// Run one job now: nightly-report, reindex, or sync ACCOUNT_ID
    Run {
        /// The job to run
        job: String,
        /// The account, for `sync`
        account: Option<u64>,
    },
    /// See and manage the locks of this application's jobs (the lockmgr commands)
    Locks(lockmgr_cli::Cli),
}

fn run_job(job: &str, account: Option<u64>) -> Result<String, JobError> {
    match (job, account) {
        ("nightly-report", None) => Ok(format!("report of {} lines sent", nightly_report()?)),
        ("reindex", None) => reindex().map(|()| "search index rebuilt".to_string()),
        ("sync", Some(id)) => Ok(format!("account {} synced", sync_account(id)?)),
        _ => Err(JobError::Failed(format!("no such job: {job}"))),
    }
}

fn main() {
    match App::parse().command {
        AppCommand::Run { job, account } => match run_job(&job, account) {
            Ok(done) => println!("{done}"),
            Err(err) => {
                eprintln!("example-app: {err}");
                std::process::exit(1);
            }
        },
        AppCommand::Locks(cli) => std::process::exit(lockmgr_cli::run_cli(cli)),
    }
}
