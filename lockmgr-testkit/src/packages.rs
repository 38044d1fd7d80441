//! Programs and libraries from Debian's packages that some tests need beyond
//! PostgreSQL: PgBouncer (`tests/pgbouncer.rs`, the benches) and libfaketime
//! (`tests/cron_multiprocess.rs`).
//!
//! Each is looked for where Debian installs it. When it is missing and the tests run
//! as root with `apt-get` at hand (a fresh CI machine or container), it is installed
//! from Debian's packages, once, with a line on stderr saying so: `cargo test
//! --workspace` then works on such a machine with nothing done by hand. Otherwise, or
//! with `LOCKMGR_TESTKIT_NO_INSTALL=1`, the test fails with what to install.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The environment variable that turns installing off.
pub const NO_INSTALL: &str = "LOCKMGR_TESTKIT_NO_INSTALL";

/// `pgbouncer`: on PATH, else where Debian installs it; installed if missing (see
/// the module docs).
pub fn pgbouncer() -> Result<PathBuf, String> {
    ensure("pgbouncer", || find_program(&["pgbouncer"]))
}

/// The first of `names` found on PATH or in /usr/sbin, /usr/bin, /usr/local/bin (where
/// Debian puts server programs that are not on a user's PATH).
pub(crate) fn find_program(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Debian's libfaketime, the multi-threaded variant (for `LD_PRELOAD`); installed if
/// missing (see the module docs).
pub fn libfaketime() -> Result<PathBuf, String> {
    ensure("libfaketime", || {
        [
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
            "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
            "/usr/lib/faketime/libfaketimeMT.so.1",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    })
}

/// What `find` finds, after installing Debian's `package` if it found nothing.
fn ensure(package: &str, find: impl Fn() -> Option<PathBuf>) -> Result<PathBuf, String> {
    let allowed = std::env::var_os(NO_INSTALL).is_none_or(|v| v.is_empty() || v == "0");
    ensure_with(package, find, allowed)
}

fn ensure_with(
    package: &str,
    find: impl Fn() -> Option<PathBuf>,
    install_allowed: bool,
) -> Result<PathBuf, String> {
    if let Some(found) = find() {
        return Ok(found);
    }
    // One install at a time in this process (apt-get takes dpkg's lock, and waits
    // for it below if another process holds it).
    static APT: Mutex<()> = Mutex::new(());
    let _one = APT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = find() {
        return Ok(found);
    }
    let missing = format!("{package} is missing: install it (Debian: apt-get install {package})");
    if !install_allowed {
        return Err(format!("{missing}; {NO_INSTALL} is set"));
    }
    if !crate::is_root() {
        return Err(format!(
            "{missing}; not running as root, so not installed here"
        ));
    }
    // Straight to stderr, past the test harness's capture: installing is news.
    let _ = writeln!(
        std::io::stderr(),
        "testkit: {package} is missing; installing it from Debian's packages (apt-get)"
    );
    // With the package lists the machine has; if they are stale or absent, fetch
    // them and try again.
    if apt_get(&["install", package]).is_err() {
        apt_get(&["update"])
            .and_then(|()| apt_get(&["install", package]))
            .map_err(|err| format!("{missing}; installing it failed: {err}"))?;
    }
    find().ok_or_else(|| format!("{missing}; apt-get installed it, but it is not where expected"))
}

/// `apt-get -qq ARGS`, non-interactive, waiting up to 5 minutes for dpkg's lock.
fn apt_get(args: &[&str]) -> Result<(), String> {
    let out = Command::new("apt-get")
        .args(["-qq", "-y", "--no-install-recommends"])
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "apt-get {} exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_found_is_used_as_it_is() {
        let here = PathBuf::from("/usr/sbin/pgbouncer");
        assert_eq!(
            ensure_with("pgbouncer", || Some(here.clone()), true),
            Ok(here)
        );
    }

    #[test]
    fn a_missing_package_is_named_and_left_alone_when_installing_is_off() {
        let err = ensure_with("lockmgr-no-such-package", || None, false).unwrap_err();
        assert!(
            err.contains("apt-get install lockmgr-no-such-package") && err.contains(NO_INSTALL),
            "{err}"
        );
    }
}
