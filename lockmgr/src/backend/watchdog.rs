//! Bounding blocking database calls in time, whatever the network does.
//!
//! libpq and the MySQL client block in `read()` until the server answers. Behind a
//! link that goes silent (a proxy or firewall that stops forwarding but whose kernel
//! still acknowledges, a peer that vanished without a RST), that wait lasts until the
//! TCP retransmission timeout — about 15 minutes — or forever if the socket is still
//! acknowledged. TCP keepalives and `tcp_user_timeout` do not help there, and
//! diesel exposes neither the socket nor the drivers' own timeouts.
//!
//! So lockmgr keeps its own handle on each connection's socket: right after a
//! connection is established, the socket that appeared in this process during the
//! connect (`/proc/self/fd`, compared by socket inode, with establishments to the same
//! target serialized) is duplicated. Before each call the connection is [armed](arm)
//! with a deadline; one watchdog thread per process `shutdown()`s the socket of any
//! call still running at its deadline, so the driver's blocked read returns an error
//! at once. The call then reports [`Error::Timeout`](crate::Error::Timeout) and the
//! connection is thrown away.
//!
//! Connecting is bounded the same way ([`arm_connect`]): at the deadline, the sockets
//! opened since the connect began towards the target's port are shut down.
//!
//! Only Linux has `/proc/self/fd`; elsewhere connections are not watched (a warning
//! says so once) and only the drivers' own timeouts apply.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

/// Our own duplicate of a connection's socket descriptor: shutting it down ends the
/// driver's blocked read or write, and as we own the descriptor it can never be a
/// number reused by someone else.
pub(crate) struct Socket {
    /// Any stream socket (TCP or Unix): `shutdown` is the same call for both.
    dup: TcpStream,
    /// Set when the watchdog shut the socket down.
    tripped: AtomicBool,
}

/// Sockets open in this process: descriptor → socket inode.
fn open_sockets() -> HashMap<RawFd, u64> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let fd: RawFd = entry.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(entry.path()).ok()?;
            let inode = link
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()?;
            Some((fd, inode))
        })
        .collect()
}

/// The stream sockets of this process before a connect, to find the one it opens.
pub(crate) struct Snapshot {
    before: HashSet<u64>,
    /// The server's TCP port, when known: only sockets connected to it count.
    port: Option<u16>,
}

impl Snapshot {
    /// The sockets open now. `port`: the TCP port the connection will go to.
    pub(crate) fn take(port: Option<u16>) -> Snapshot {
        Snapshot {
            before: open_sockets().into_values().collect(),
            port,
        }
    }

    /// Duplicates of the sockets opened since the snapshot that go to the target:
    /// connected to `port` over TCP, or any connected Unix socket.
    fn opened_since(&self) -> Vec<Socket> {
        let mut found = Vec::new();
        for (fd, inode) in open_sockets() {
            if self.before.contains(&inode) {
                continue;
            }
            // SAFETY: `fd` was open a moment ago; it is only borrowed to duplicate it,
            // and the duplicate is checked below to be the same socket (by inode), so
            // a descriptor closed and reused in between is never taken for ours.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let Ok(owned) = borrowed.try_clone_to_owned() else {
                continue;
            };
            let file = std::fs::File::from(owned);
            let same = std::os::unix::fs::MetadataExt::ino(&match file.metadata() {
                Ok(meta) => meta,
                Err(_) => continue,
            }) == inode;
            let stream = TcpStream::from(std::os::fd::OwnedFd::from(file));
            let towards_target = match stream.peer_addr() {
                Ok(peer) => self.port.is_none_or(|port| peer.port() == port),
                // Not an IP socket: a Unix socket is ours if it is connected.
                Err(_) => is_connected_unix(&stream),
            };
            if same && towards_target {
                found.push(Socket {
                    dup: stream,
                    tripped: AtomicBool::new(false),
                });
            }
        }
        found
    }

    /// The one socket the connect just opened, if it can be told apart.
    pub(crate) fn opened_socket(&self) -> Option<Arc<Socket>> {
        let mut found = self.opened_since();
        (found.len() == 1).then(|| Arc::new(found.remove(0)))
    }
}

/// Whether `stream` is a connected Unix socket.
fn is_connected_unix(stream: &TcpStream) -> bool {
    stream
        .try_clone()
        .map(|dup| std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(dup)))
        .is_ok_and(|unix| unix.peer_addr().is_ok())
}

impl Socket {
    /// Whether the watchdog has shut this socket down (a call overran its deadline).
    pub(crate) fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    fn trip(&self) {
        self.tripped.store(true, Ordering::SeqCst);
        let _ = self.dup.shutdown(Shutdown::Both);
    }
}

#[cfg(feature = "postgres")]
impl Socket {
    /// Sleep until the socket has something to read (or was closed), or `timeout`
    /// passed; whether it has. Our descriptor is a duplicate of the driver's: reading
    /// is left to the driver.
    pub(crate) fn wait_readable(&self, timeout: std::time::Duration) -> bool {
        let mut fd = libc::pollfd {
            fd: self.dup.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid `pollfd`, whose descriptor stays open while `self` lives.
        unsafe { libc::poll(&mut fd, 1, millis) > 0 }
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Socket(fd {})", self.dup.as_raw_fd())
    }
}

/// What the watchdog does at a deadline.
enum Watched {
    /// Shut down this connection's socket.
    Call(Arc<Socket>),
    /// A connect still running: shut down the sockets it opened.
    Connect(Arc<Snapshot>),
}

#[derive(Default)]
struct State {
    armed: BTreeMap<(Instant, u64), Watched>,
    /// When the watchdog thread wakes up next on its own; `None`: not before it is
    /// notified (nothing armed, or it has not looked yet). A new deadline only
    /// notifies it when it comes earlier: calls arm and disarm on every statement,
    /// and waking the thread for each (a futex wake and a context switch) would
    /// cost the lock path more than the statement's own work on the client.
    wakes_at: Option<Instant>,
}

struct Watchdog {
    state: Mutex<State>,
    changed: Condvar,
}

fn lock(watchdog: &Watchdog) -> MutexGuard<'_, State> {
    watchdog.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The process's watchdog, its thread started on first use; `None` if the thread
/// cannot be started (calls are then not bounded by lockmgr, and a warning says so).
fn watchdog() -> Option<&'static Watchdog> {
    static WATCHDOG: OnceLock<Option<&'static Watchdog>> = OnceLock::new();
    *WATCHDOG.get_or_init(|| {
        let watchdog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }));
        match std::thread::Builder::new()
            .name("lockmgr-watchdog".into())
            .spawn(move || watchdog.run())
        {
            Ok(_) => Some(watchdog),
            Err(err) => {
                tracing::warn!(error = %err, "lockmgr: cannot start the call watchdog; database calls are bounded only by the drivers' timeouts");
                None
            }
        }
    })
}

impl Watchdog {
    fn run(&self) {
        let mut state = lock(self);
        loop {
            let now = Instant::now();
            // Fire under the lock: a call that disarms has either been fired on
            // already, or never will be (its socket cannot be shut down after the
            // call returned to the pool).
            while let Some(entry) = state.armed.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                match entry.remove() {
                    Watched::Call(socket) => socket.trip(),
                    Watched::Connect(connect) => {
                        for socket in connect.opened_since() {
                            socket.trip();
                        }
                    }
                }
            }
            // Deadlines disarmed meanwhile stay in this sleep's length: the thread
            // wakes up at the earliest one armed when it went to sleep, finds it
            // gone, and sleeps on until the earliest one left.
            state.wakes_at = state.armed.first_key_value().map(|(key, _)| key.0);
            state = match state.wakes_at {
                Some(deadline) => {
                    let timeout = deadline.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(state, timeout)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }

    fn add(&'static self, deadline: Instant, watched: Watched) -> Armed {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let key = (deadline, SEQ.fetch_add(1, Ordering::Relaxed));
        let mut state = lock(self);
        let earlier = state.wakes_at.is_none_or(|wakes_at| deadline < wakes_at);
        state.armed.insert(key, watched);
        if earlier {
            // Said once: until the thread looks again, later deadlines are later
            // than this one.
            state.wakes_at = Some(deadline);
        }
        drop(state);
        if earlier {
            self.changed.notify_one();
        }
        Armed {
            watchdog: self,
            key,
        }
    }
}

/// One armed deadline; dropping it (or [`disarm`](Armed::disarm)) disarms it.
pub(crate) struct Armed {
    watchdog: &'static Watchdog,
    key: (Instant, u64),
}

impl Armed {
    /// Disarm; whether the deadline had already fired.
    pub(crate) fn disarm(self) -> bool {
        let fired = lock(self.watchdog).armed.remove(&self.key).is_none();
        std::mem::forget(self);
        fired
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        lock(self.watchdog).armed.remove(&self.key);
    }
}

/// Shut `socket` down if the call about to run is still running at `deadline`.
pub(crate) fn arm(socket: &Arc<Socket>, deadline: Instant) -> Option<Armed> {
    Some(watchdog()?.add(deadline, Watched::Call(Arc::clone(socket))))
}

/// Shut down the sockets a connect opens (see [`Snapshot`]) if it is still running
/// at `deadline`. [`Armed::disarm`] says whether that happened.
pub(crate) fn arm_connect(snapshot: &Arc<Snapshot>, deadline: Instant) -> Option<Armed> {
    Some(watchdog()?.add(deadline, Watched::Connect(Arc::clone(snapshot))))
}

/// Whether lockmgr can find connection sockets on this system.
pub(crate) fn supported() -> bool {
    cfg!(target_os = "linux") && std::path::Path::new("/proc/self/fd").is_dir()
}

/// Establishments to the same server port run one at a time in this process, so
/// that the socket each one opened can be told apart.
pub(crate) fn serialize_connects(port: Option<u16>) -> Arc<Mutex<()>> {
    type Serials = Mutex<HashMap<Option<u16>, Arc<Mutex<()>>>>;
    static PORTS: OnceLock<Serials> = OnceLock::new();
    let mut ports = PORTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Arc::clone(ports.entry(port).or_default())
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;

    /// A socket of our own, connected to a listener that never answers.
    fn silent_socket(listener: &TcpListener) -> Arc<Socket> {
        Arc::new(Socket {
            dup: TcpStream::connect(listener.local_addr().unwrap()).unwrap(),
            tripped: AtomicBool::new(false),
        })
    }

    fn trips_within(socket: &Socket, limit: Duration) -> bool {
        let started = Instant::now();
        while !socket.tripped() {
            if started.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// The watchdog thread is not woken for a deadline later than the one it sleeps
    /// until; every deadline still fires, earlier and later ones alike.
    #[test]
    fn deadlines_fire_whatever_order_they_are_armed_in() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (far, early, late) = (
            silent_socket(&listener),
            silent_socket(&listener),
            silent_socket(&listener),
        );
        let now = Instant::now();
        let far_armed = arm(&far, now + Duration::from_secs(3600)).unwrap();
        // Earlier than the one the thread sleeps until: it must be woken for it.
        let early_armed = arm(&early, now + Duration::from_millis(50)).unwrap();
        // Armed and disarmed at once, as every call that answers in time is.
        for _ in 0..100 {
            drop(arm(&late, Instant::now() + Duration::from_millis(100)));
        }
        // Later than the one the thread sleeps until: found when it wakes for that.
        let late_armed = arm(&late, Instant::now() + Duration::from_millis(150)).unwrap();
        assert!(trips_within(&early, Duration::from_secs(30)), "early");
        assert!(trips_within(&late, Duration::from_secs(30)), "late");
        assert!(early_armed.disarm() && late_armed.disarm(), "both fired");
        assert!(!far.tripped());
        assert!(!far_armed.disarm(), "the far one had not fired");
    }
}
