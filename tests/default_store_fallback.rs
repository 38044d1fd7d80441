//! With no database URL from the caller or the environment, the library falls back to
//! `./lockmgr.sqlite3` — and says so, once per process, naming the file's absolute
//! path. (Its own test binary: it changes the working directory and environment.)

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn falling_back_to_the_default_file_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    std::env::remove_var(lockmgr::LOCKMGR_DATABASE_URL);
    std::env::remove_var(lockmgr::DATABASE_URL);
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let store = lockmgr::LockStore::from_env().unwrap();
        store.get_lock("fallback", None).unwrap();
        lockmgr::LockStore::from_env().unwrap();
    });
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let file = dir.path().canonicalize().unwrap().join("lockmgr.sqlite3");
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("no database URL set"), "{text}");
    assert!(
        warnings[0].contains(&file.display().to_string()),
        "names {}: {text}",
        file.display()
    );
    assert!(file.exists());

    // A URL in the environment: no warning.
    std::env::set_var(lockmgr::LOCKMGR_DATABASE_URL, "other.sqlite3");
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        lockmgr::LockStore::from_env().unwrap();
    });
    assert!(captured.0.lock().unwrap().is_empty());
}
