//! A throwaway PgBouncer in front of a test [`PgCluster`].
//!
//! PgBouncer (Debian's `pgbouncer` package) runs as a plain process on a free loopback
//! port, with its config, auth file, log and pid file in a temp dir. Clients log in
//! with md5 auth (user `postgres`, password [`PgBouncer::PASSWORD`]); PgBouncer
//! reaches the cluster through its Unix socket, so in `pg_stat_activity` its server
//! connections are the ones without a `client_addr`, while direct loopback clients
//! have `127.0.0.1`. Every database of the cluster is served (a `*` entry).
//!
//! PgBouncer refuses to run as root: when the tests run as root it runs as the
//! `postgres` user, like the cluster. Dropping the value stops it; a watchdog process
//! also stops it and removes its files once the test process has exited, however it
//! exited. If it cannot be started, [`PgBouncer::start`] says why: tests panic with
//! that, they never skip.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{as_postgres, free_port, is_root, path_str, postgres_ids, PgCluster};

/// How PgBouncer hands server connections to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per transaction (`pool_mode = transaction`): a client's
    /// statements outside a transaction may each run on a different server session.
    Transaction,
    /// A server connection per client connection (`pool_mode = session`).
    Session,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        }
    }
}

/// A running PgBouncer; stopped when dropped.
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    pid: u32,
}

impl PgBouncer {
    /// The password of user `postgres` at the pooler (md5 auth).
    pub const PASSWORD: &'static str = "bouncer-secret";

    /// Start a PgBouncer in front of `cluster`, in `mode`, with at most `pool_size`
    /// server connections per database (`default_pool_size`).
    pub fn start(cluster: &PgCluster, mode: PoolMode, pool_size: u32) -> Result<PgBouncer, String> {
        let program = crate::packages::pgbouncer()?;
        let dir = tempfile::Builder::new()
            .prefix("lockmgr-pgbouncer-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir for PgBouncer: {e}"))?
            .keep();
        let as_root = is_root();
        let auth_file = dir.join("userlist.txt");
        fs::write(&auth_file, format!("\"postgres\" \"{}\"\n", Self::PASSWORD))
            .map_err(|e| format!("{}: {e}", auth_file.display()))?;
        let mut last_error = String::new();
        for attempt in 0..5 {
            let port = free_port()?;
            let log = dir.join(format!("pgbouncer-{attempt}.log"));
            let pidfile = dir.join("pgbouncer.pid");
            let _ = fs::remove_file(&pidfile);
            let config = dir.join("pgbouncer.ini");
            fs::write(
                &config,
                format!(
                    "[databases]\n\
                     * = host={socket} port={pg_port}\n\
                     [pgbouncer]\n\
                     listen_addr = 127.0.0.1\n\
                     listen_port = {port}\n\
                     unix_socket_dir =\n\
                     auth_type = md5\n\
                     auth_file = {auth}\n\
                     admin_users = postgres\n\
                     pool_mode = {mode}\n\
                     default_pool_size = {pool_size}\n\
                     min_pool_size = 0\n\
                     reserve_pool_size = 0\n\
                     max_client_conn = 500\n\
                     server_login_retry = 1\n\
                     logfile = {log}\n\
                     pidfile = {pid}\n",
                    socket = path_str(cluster.socket_dir()),
                    pg_port = cluster.port(),
                    auth = path_str(&auth_file),
                    mode = mode.as_str(),
                    log = path_str(&log),
                    pid = path_str(&pidfile),
                ),
            )
            .map_err(|e| format!("{}: {e}", config.display()))?;
            if as_root {
                let (uid, gid) = postgres_ids()?;
                for path in [&dir, &auth_file, &config] {
                    chown(path, Some(uid), Some(gid))
                        .map_err(|e| format!("chown {}: {e}", path.display()))?;
                }
            }
            let mut command = as_postgres(as_root, &program);
            // `-d`: PgBouncer detaches and writes its pid file; output goes to its log.
            let status = command
                .arg("-d")
                .arg(&config)
                .current_dir(std::env::temp_dir())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
            let started = status.success() && wait_until_listening(port, &pidfile);
            match read_pid(&pidfile) {
                Some(pid) if started => {
                    spawn_watchdog(&dir, pid);
                    return Ok(PgBouncer { dir, port, pid });
                }
                Some(pid) => kill(pid),
                None => {}
            }
            last_error = format!(
                "{} exited with {status}; its log:\n{}",
                program.display(),
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Err(format!("PgBouncer could not be started: {last_error}"))
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` through this pooler, with its password.
    pub fn url_of(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            Self::PASSWORD,
            self.port
        )
    }

    /// The URL of the same database as `direct_url` (a URL of the cluster), through
    /// this pooler.
    pub fn url_for(&self, direct_url: &str) -> String {
        let db = direct_url
            .rsplit('/')
            .next()
            .and_then(|tail| tail.split('?').next())
            .unwrap_or_default();
        self.url_of(db)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        kill(self.pid);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn wait_until_listening(port: u16, pidfile: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let alive = read_pid(pidfile).is_some_and(process_alive);
        if alive && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn read_pid(pidfile: &Path) -> Option<u32> {
    fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn kill(pid: u32) {
    let _ = Command::new("kill")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Once this process has ended, stop PgBouncer (if `pid` is still PgBouncer) and
/// remove its files.
fn spawn_watchdog(dir: &Path, pid: u32) {
    crate::after_exit(
        "PgBouncer",
        &format!(
            "[ \"$(cat /proc/{pid}/comm 2>/dev/null)\" = pgbouncer ] && kill {pid}; rm -rf '{}'",
            dir.display()
        ),
    );
}
