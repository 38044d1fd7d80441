//! The backends are cargo features of `lockmgr`: an application that builds it with
//! `default-features = false, features = ["sqlite"]` links neither libpq nor the MySQL
//! client (nor the CLI's clap), and a URL of a backend it left out is a clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The target dir this test was built in (`target/`), where the throwaway app builds
/// too: the crates it shares with the workspace's build (SQLite's C library, chrono,
/// url, …) are already there, so only those built with other features are compiled
/// (12 s instead of 46 s in CI). Cargo holds its lock on the dir only while it builds,
/// not while `cargo test` runs this test. (It builds with the workspace's
/// `.cargo/config.toml` too, whose debug-info settings are part of what makes a
/// compiled crate the same one.)
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir.parent().unwrap().to_path_buf()
}

fn cargo(dir: &Path, args: &[&str]) -> Output {
    let workspace_config = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cargo/config.toml");
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .arg("--config")
        .arg(workspace_config)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "cargo {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn an_application_with_only_sqlite_links_no_other_database_client() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("Cargo.toml"),
        format!(
            "[package]\n\
             name = \"sqlite-only-app\"\n\
             version = \"0.0.0\"\n\
             edition = \"2021\"\n\
             publish = false\n\n\
             [dependencies]\n\
             lockmgr = {{ path = {:?}, default-features = false, features = [\"sqlite\"] }}\n\n\
             [workspace]\n",
            workspace.join("lockmgr")
        ),
    )
    .unwrap();
    std::fs::create_dir(app.path().join("src")).unwrap();
    std::fs::write(
        app.path().join("src/main.rs"),
        "fn main() {\n    \
             let url = std::env::args().nth(1).expect(\"a database URL\");\n    \
             match lockmgr::LockStore::open(&url).and_then(|s| s.get_lock(\"job\", None)) {\n        \
                 Ok(lock) => println!(\"fence {}\", lock.fence),\n        \
                 Err(err) => {\n            \
                     eprintln!(\"{err}\");\n            \
                     std::process::exit(1);\n        \
                 }\n    \
             }\n\
         }\n",
    )
    .unwrap();
    // The workspace's lock file: the same versions, already downloaded.
    std::fs::copy(workspace.join("Cargo.lock"), app.path().join("Cargo.lock")).unwrap();

    let tree = cargo(
        app.path(),
        &[
            "tree",
            "--offline",
            "--prefix",
            "none",
            "-e",
            "normal,build",
        ],
    );
    let tree = String::from_utf8_lossy(&tree.stdout);
    for absent in ["pq-sys", "pq-src", "mysqlclient-sys", "clap"] {
        assert!(
            !tree
                .lines()
                .any(|line| line.starts_with(&format!("{absent} "))),
            "{absent} is in the tree:\n{tree}"
        );
    }
    assert!(tree.contains("libsqlite3-sys"), "{tree}");

    cargo(app.path(), &["build", "--offline", "--quiet"]);
    let exe = target_dir().join("debug").join("sqlite-only-app");
    let db = app.path().join("locks.sqlite3");
    let out = Command::new(&exe).arg(&db).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("fence "));
    for (url, feature) in [
        (
            "postgres://app:hunter2@127.0.0.1:1/app",
            "`postgres` cargo feature",
        ),
        (
            "mysql://app:hunter2@127.0.0.1:1/app",
            "`mysql` cargo feature",
        ),
    ] {
        let out = Command::new(&exe).arg(url).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("invalid database URL"), "{err}");
        assert!(err.contains(feature), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
