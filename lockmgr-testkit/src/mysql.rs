//! A throwaway MariaDB server for the tests (the `mysql` feature).

use std::fs;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, MysqlConnection};

use super::{free_port, is_root, path_str, user_ids};

/// A throwaway MariaDB server on a loopback port, its files in a temp dir.
///
/// The data directory is made by `mariadb-install-db` (root may log in over TCP
/// without a password), and `mariadbd` runs as the `mysql` user when the tests run
/// as root. A watchdog kills the server and removes its files once the test process
/// has exited, however it exited.
pub struct MysqlServer {
    dir: PathBuf,
    port: u16,
    settings: Vec<String>,
    server: Mutex<Option<Child>>,
    databases: AtomicUsize,
}

impl MysqlServer {
    /// The server of this process, started on first use.
    pub fn shared() -> &'static MysqlServer {
        static SHARED: OnceLock<MysqlServer> = OnceLock::new();
        SHARED.get_or_init(|| MysqlServer::start(&[]).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Start a new server with extra `mariadbd` options
    /// (`"--innodb-flush-log-at-trx-commit=1"`, …). The defaults favour speed
    /// (the redo log is not flushed at every commit) as tests do not need durability.
    pub fn start(settings: &[&str]) -> Result<MysqlServer, String> {
        let base = tempfile::Builder::new()
            .prefix("lockmgr-my-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir for MariaDB: {e}"))?
            .keep();
        if is_root() {
            let (uid, gid) = user_ids("mysql").ok_or_else(|| {
                "running as root, MariaDB needs the `mysql` user, which this machine does not have (Debian: install mariadb-server)".to_string()
            })?;
            chown(&base, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", base.display()))?;
        }
        let data = base.join("data");
        install_db(&base, &data)?;
        let mut server = MysqlServer {
            dir: base,
            port: 0,
            settings: settings.iter().map(|s| s.to_string()).collect(),
            server: Mutex::new(None),
            databases: AtomicUsize::new(0),
        };
        let mut last_error = String::new();
        for _attempt in 0..5 {
            server.port = free_port()?;
            match server.launch() {
                Ok(()) => {
                    spawn_watchdog(&server.dir);
                    return Ok(server);
                }
                Err(e) => last_error = e,
            }
        }
        Err(format!("MariaDB could not be started: {last_error}"))
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`, as root (no password).
    pub fn url_of(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Create a new empty database; its URL.
    pub fn new_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("test_{n}");
        let mut admin = MysqlConnection::establish(&self.url_of("mysql"))
            .unwrap_or_else(|e| panic!("connecting to the test MariaDB server: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url_of(&name)
    }

    /// Stop the server (SIGTERM: open connections are cut, the data kept) and wait
    /// until it has exited.
    pub fn stop(&self) {
        let mut slot = self.server.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = slot.take() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our child's,
            // not yet waited for, so it cannot have been reused.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            child.wait().expect("waiting for mariadbd to stop");
        }
    }

    /// Start the server again on the same port, after [`stop`](MysqlServer::stop).
    pub fn restart(&self) {
        self.launch().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Start `mariadbd` on `self.port` and wait until it accepts connections.
    fn launch(&self) -> Result<(), String> {
        let program = mysql_program(&["mariadbd", "mysqld"])?;
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let out = fs::File::create(self.dir.join("server.out")).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&program);
        // --no-defaults first: nothing from the machine's /etc/mysql applies.
        command.arg("--no-defaults").args([
            format!("--datadir={}", data.display()),
            format!("--port={}", self.port),
            "--bind-address=127.0.0.1".to_string(),
            format!("--socket={}", self.dir.join("mysqld.sock").display()),
            format!("--pid-file={}", self.dir.join("mysqld.pid").display()),
            format!("--log-error={}", log.display()),
            format!("--tmpdir={}", self.dir.display()),
            "--skip-name-resolve".to_string(),
            "--max-connections=400".to_string(),
            "--innodb-flush-log-at-trx-commit=2".to_string(),
            "--innodb-buffer-pool-size=64M".to_string(),
        ]);
        if is_root() {
            // mariadbd drops to this user itself, right after start.
            command.arg("--user=mysql");
        }
        command.args(&self.settings);
        let mut child = command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C meant for the tests does not reach it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;

        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.url_of("mysql");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("mariadbd exited ({status}):\n{text}"));
            }
            if MysqlConnection::establish(&url).is_ok() {
                *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let text = fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "mariadbd did not accept connections within 60 s:\n{text}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Make the data directory: system tables, and root without a password.
fn install_db(base: &Path, data: &Path) -> Result<(), String> {
    let program = mysql_program(&["mariadb-install-db", "mysql_install_db"])?;
    let log = base.join("install.log");
    let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(&program);
    command.arg("--no-defaults").args([
        &format!("--datadir={}", path_str(data)),
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        "--skip-name-resolve",
    ]);
    if is_root() {
        command.arg("--user=mysql");
    }
    let status = command
        .current_dir(base)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        let output = fs::read_to_string(&log).unwrap_or_default();
        Err(format!(
            "{} failed ({status}):\n{output}",
            program.display()
        ))
    }
}

/// The first of `names` found on PATH or where Debian installs it.
fn mysql_program(names: &[&str]) -> Result<PathBuf, String> {
    crate::packages::find_program(names).ok_or_else(|| {
        format!(
            "`{}` was not found on PATH nor in /usr/sbin: install MariaDB (Debian: mariadb-server)",
            names[0]
        )
    })
}

/// A detached shell that waits for this process to end, then kills the server and
/// removes its files.
fn spawn_watchdog(base: &Path) {
    let pid_file = base.join("mysqld.pid");
    let cleanup = format!(
        "server=$(cat '{pid_file}' 2>/dev/null); \
         if [ -n \"$server\" ]; then kill -9 \"$server\" 2>/dev/null; \
         i=0; while kill -0 \"$server\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; fi; \
         rm -rf '{base}'",
        pid_file = pid_file.display(),
        base = base.display()
    );
    crate::after_exit("MariaDB", &cleanup);
}
