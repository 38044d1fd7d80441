//! The test kit shared by the workspace's integration tests, examples and benchmarks:
//! throwaway PostgreSQL clusters, MariaDB servers (with the `mysql` feature) and temp
//! SQLite files, so that every test runs against a real database.
//!
//! A PostgreSQL cluster is `initdb`-ed in a temp dir and started on a free loopback
//! port (as the `postgres` user when running as root). One cluster serves a whole test
//! binary; each test gets a database of its own. A watchdog process stops the cluster
//! and removes its files once the test process has exited, however it exited.
//!
//! A MariaDB server (`MysqlServer`, with the `mysql` feature) works the same way: `mariadb-install-db` in a
//! temp dir, `mariadbd` on a free loopback port (as the `mysql` user when running as
//! root), a database per test, and a watchdog that kills it and removes its files when
//! the test process has exited.
//!
//! A [`SilentProxy`] sits between a store and its server and can stop forwarding
//! without closing anything: a silent network partition.
//! A PgBouncer (`PgBouncer`) can stand in front of a cluster, in transaction or session
//! pooling mode, on a free loopback port of its own.
//!
//! [`footprint`] reads this process's thread count and CPU time from `/proc`.
//!
//! [`packages`] finds PgBouncer and libfaketime, and installs them from Debian's
//! packages when they are missing and the tests run as root.
//!
//! If a server cannot be started, the tests that need it panic with the reason: a
//! PostgreSQL or MariaDB test is never silently skipped.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use lockmgr::LockStore;

pub mod cpu;
#[cfg(feature = "mysql")]
mod mysql;
pub mod packages;
mod pgbouncer;
#[cfg(feature = "mysql")]
pub use mysql::MysqlServer;
pub mod footprint;
mod proxy;
pub use pgbouncer::{PgBouncer, PoolMode};
pub use proxy::SilentProxy;

/// A database for one test: a SQLite file in a temp dir, or a fresh database in the
/// shared PostgreSQL cluster or MariaDB server.
pub struct TestDb {
    url: String,
    kind: lockmgr::Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new SQLite file in a temp dir (removed when this value is dropped).
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = dir
            .path()
            .join("locks.sqlite3")
            .to_str()
            .expect("utf-8 temp path")
            .to_string();
        TestDb {
            url,
            kind: lockmgr::Backend::Sqlite,
            _dir: Some(dir),
        }
    }

    /// A new, empty database in this test binary's PostgreSQL cluster.
    pub fn postgres() -> TestDb {
        TestDb {
            url: PgCluster::shared().new_database(),
            kind: lockmgr::Backend::Postgres,
            _dir: None,
        }
    }

    /// A new, empty database in this test binary's MariaDB server.
    #[cfg(feature = "mysql")]
    pub fn mysql() -> TestDb {
        TestDb {
            url: MysqlServer::shared().new_database(),
            kind: lockmgr::Backend::Mysql,
            _dir: None,
        }
    }

    /// A database of the given backend.
    pub fn of(backend: lockmgr::Backend) -> TestDb {
        match backend {
            lockmgr::Backend::Postgres => TestDb::postgres(),
            #[cfg(feature = "mysql")]
            lockmgr::Backend::Mysql => TestDb::mysql(),
            #[cfg(not(feature = "mysql"))]
            lockmgr::Backend::Mysql => panic!("MySQL tests need the `mysql` feature"),
            _ => TestDb::sqlite(),
        }
    }

    /// The backends the tests run on: SQLite, PostgreSQL and, with the `mysql`
    /// feature, MySQL (a MariaDB server).
    pub fn backends() -> Vec<lockmgr::Backend> {
        let mut backends = vec![lockmgr::Backend::Sqlite, lockmgr::Backend::Postgres];
        if cfg!(feature = "mysql") {
            backends.push(lockmgr::Backend::Mysql);
        }
        backends
    }

    /// The URL to open.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which backend this is.
    pub fn backend(&self) -> lockmgr::Backend {
        self.kind
    }

    /// A new store on this database.
    pub fn store(&self) -> LockStore {
        LockStore::open(&self.url).unwrap_or_else(|e| panic!("opening {}: {e}", self.url))
    }
}

/// Run each named test function (`fn(&TestDb)`) once on SQLite, once on PostgreSQL
/// and, when the calling crate has the `mysql` feature on, once on MariaDB, as
/// `sqlite::NAME`, `postgres::NAME` and `mysql::NAME`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&$crate::TestDb::sqlite()) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(&$crate::TestDb::postgres()) } )*
        }
        #[cfg(feature = "mysql")]
        mod mysql {
            $( #[test] fn $name() { super::$name(&$crate::TestDb::mysql()) } )*
        }
    };
}

/// A throwaway PostgreSQL cluster on a loopback port.
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    databases: AtomicUsize,
}

impl PgCluster {
    /// The cluster of this process, started on first use.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| PgCluster::start(&[]).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Start a new cluster with extra `postgres -c` settings (`"fsync=on"`, …). The
    /// default settings favour speed (`fsync=off`) as tests do not need durability.
    pub fn start(settings: &[&str]) -> Result<PgCluster, String> {
        let base = tempfile::Builder::new()
            .prefix("lockmgr-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir for PostgreSQL: {e}"))?
            .keep();
        let data = base.join("data");
        let as_root = is_root();
        if as_root {
            let (uid, gid) = postgres_ids()?;
            chown(&base, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", base.display()))?;
        }
        let log = base.join("initdb.log");
        run_pg(
            as_root,
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            &log,
        )?;
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port()?;
            let mut options = format!(
                "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
                 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                path_str(&base)
            );
            for setting in settings {
                options.push_str(" -c ");
                options.push_str(setting);
            }
            let server_log = base.join("server.log");
            let started = run_pg(
                as_root,
                "pg_ctl",
                &[
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    path_str(&data),
                    "-l",
                    path_str(&server_log),
                    "-o",
                    &options,
                ],
                &base.join("pg_ctl.log"),
            );
            match started {
                Ok(()) => {
                    spawn_watchdog(&base, &data, as_root);
                    return Ok(PgCluster {
                        dir: base,
                        port,
                        databases: AtomicUsize::new(0),
                    });
                }
                Err(e) => {
                    let server = fs::read_to_string(&server_log).unwrap_or_default();
                    last_error = format!("{e}\n{server}");
                }
            }
        }
        Err(format!("PostgreSQL could not be started: {last_error}"))
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder of its Unix socket (`host=` for libpq).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of database `db`.
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Create a new empty database; its URL.
    pub fn new_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("test_{n}");
        let mut admin = PgConnection::establish(&self.url_of("postgres"))
            .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url_of(&name)
    }

    /// Stop the server (fast shutdown: open connections are cut).
    pub fn stop(&self) {
        let data = self.dir.join("data");
        run_pg(
            is_root(),
            "pg_ctl",
            &["stop", "-w", "-m", "fast", "-D", path_str(&data)],
            &self.dir.join("stop.log"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Start the server again on the same port, after [`stop`](PgCluster::stop).
    pub fn restart(&self) {
        let data = self.dir.join("data");
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=400",
            self.port,
            path_str(&self.dir)
        );
        let log = self.dir.join("server.log");
        run_pg(
            is_root(),
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
            ],
            &self.dir.join("pg_ctl.log"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn postgres_ids() -> Result<(u32, u32), String> {
    user_ids("postgres").ok_or_else(|| {
        "running as root, PostgreSQL needs the `postgres` user, which this machine does not have".to_string()
    })
}

/// The uid and gid of a system user.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&user) && fields.len() > 3)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
}

/// Find a PostgreSQL program on PATH, else in Debian's versioned folder.
fn pg_program(name: &str) -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let debian = fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten()
                .map(|d| d.path().join("bin").join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path.into_iter().chain(debian).find(|p| p.is_file()).ok_or_else(|| {
        format!("`{name}` was not found on PATH nor under /usr/lib/postgresql: install PostgreSQL (Debian: postgresql)")
    })
}

/// A command for `program`, run as the `postgres` user when we are root (PostgreSQL
/// and PgBouncer refuse to run as root).
pub(crate) fn as_postgres(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Run a PostgreSQL program to completion (as `postgres` when root), its output in `log`.
fn run_pg(as_root: bool, program: &str, args: &[&str], log: &Path) -> Result<(), String> {
    let program_path = pg_program(program)?;
    let out = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut command = as_postgres(as_root, &program_path);
    // Output goes to a file, never to a pipe the server could inherit and keep open.
    let status = command
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program_path.display()))?;
    if status.success() {
        Ok(())
    } else {
        let output = fs::read_to_string(log).unwrap_or_default();
        Err(format!(
            "{program} {} failed ({status}):\n{output}",
            args.join(" ")
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// A detached shell that waits for this process to end, then stops the cluster and
/// removes its files.
fn spawn_watchdog(base: &Path, data: &Path, as_root: bool) {
    let pg_ctl = pg_program("pg_ctl").expect("pg_ctl was found a moment ago");
    let stop = format!(
        "{}{} stop -m immediate -D '{}'",
        if as_root {
            "runuser -u postgres -- "
        } else {
            ""
        },
        pg_ctl.display(),
        data.display()
    );
    after_exit(
        "PostgreSQL",
        &format!("{stop} >/dev/null 2>&1; rm -rf '{}'", base.display()),
    );
}

/// A detached shell that waits for this process to end, however it ends, then runs
/// `cleanup` (shell commands: stop a server, remove its files). `what` names the
/// server in the panic if the shell cannot be started.
pub(crate) fn after_exit(what: &str, cleanup: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {cleanup}",
        pid = std::process::id(),
    );
    // `setsid -f` forks the shell into a session of its own and returns at once.
    Command::new("setsid")
        .args(["-f", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot start the {what} watchdog: {e}"));
}

/// A `--start-at` for workers started one by one that should all begin together: the
/// Unix time in milliseconds `after` from now.
pub fn start_at(after: Duration) -> String {
    let at = std::time::SystemTime::now() + after;
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
        .to_string()
}

/// A small tmpfs mounted on a temp dir, for tests of full and read-only storage;
/// unmounted when dropped. Mounting needs root: [`Tmpfs::mount`] says `None` where this
/// process may not mount.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `size` (as `mount -o size=…` takes it: `1m`, `4m`), or `None` when
    /// this process may not mount (not root, or no permission).
    pub fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fill it to the last byte with a file named `filler`.
    pub fn fill(&self) {
        use std::io::Write;
        let mut file = fs::File::create(self.path().join("filler")).expect("filler file");
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&[0]).is_ok() {}
        let _ = file.sync_all();
    }

    /// Make it read-only (`mount -o remount,ro`).
    pub fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .expect("running mount");
        assert!(status.success(), "remounting read-only failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The notifications a `LISTEN`ing session gets for one event, as (channel,
/// payload): waits up to 20 s for the first (the server delivers a notification to
/// each listening session on its own, so another session may have acted on it
/// already), then reads once more after 200 ms, so that a second one shows too.
/// Empty if none came.
pub fn awaited_notifications(conn: &mut PgConnection) -> Vec<(String, String)> {
    let mut notes = Vec::new();
    let mut drain = |notes: &mut Vec<(String, String)>| {
        notes.extend(
            conn.notifications_iter()
                .map(|n| n.expect("reading notifications"))
                .map(|n| (n.channel, n.payload)),
        );
    };
    if eventually(Duration::from_secs(20), || {
        drain(&mut notes);
        !notes.is_empty()
    }) {
        std::thread::sleep(Duration::from_millis(200));
        drain(&mut notes);
    }
    notes
}

/// Poll `check` until it holds or `timeout` passes; whether it held.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plain SQLite connection to the file at `path`, to use beside lockmgr's stores:
/// with lockmgr's own busy timeout (30 s), so that a write of a store's (its
/// background clean runs on a thread of its own) is waited for instead of failing at
/// once with "database is locked". Panics if the file cannot be opened.
pub fn sqlite_connection(path: &str) -> diesel::SqliteConnection {
    let mut conn = diesel::SqliteConnection::establish(path)
        .unwrap_or_else(|err| panic!("connecting to {path}: {err}"));
    conn.batch_execute("PRAGMA busy_timeout = 30000")
        .unwrap_or_else(|err| panic!("setting a busy timeout on {path}: {err}"));
    conn
}

impl TestDb {
    /// Run SQL statements on this database on a connection of its own, outside
    /// lockmgr (a table made by hand, a row another program writes).
    pub fn execute(&self, sql: &str) {
        let done = match self.kind {
            lockmgr::Backend::Postgres => {
                PgConnection::establish(&self.url).map(|mut c| c.batch_execute(sql))
            }
            #[cfg(feature = "mysql")]
            lockmgr::Backend::Mysql => {
                diesel::MysqlConnection::establish(&self.url).map(|mut c| c.batch_execute(sql))
            }
            // A store open on the file may be writing: wait for it.
            _ => Ok(sqlite_connection(&self.url).batch_execute(sql)),
        };
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => panic!("{sql}: {err}"),
            Err(err) => panic!("connecting to {}: {err}", self.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `execute` beside another writer of the same SQLite file waits for it: before
    /// it set a busy timeout it failed at once with "database is locked" (seen in CI,
    /// beside a store's background clean).
    #[test]
    fn sqlite_execute_waits_for_another_writer() {
        let db = TestDb::sqlite();
        db.execute("CREATE TABLE t (x INTEGER)");
        let mut writer = diesel::SqliteConnection::establish(db.url()).unwrap();
        writer.batch_execute("BEGIN IMMEDIATE").unwrap();
        let commit = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            writer.batch_execute("COMMIT").unwrap();
        });
        db.execute("INSERT INTO t VALUES (1)");
        commit.join().unwrap();
    }
}
