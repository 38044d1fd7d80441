//! A TCP forwarder that can go silent: the network partition of the fault tests.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Forwards a loopback port to a target address, byte for byte, until told to go
/// [silent](SilentProxy::go_silent): then it stops moving bytes in both directions
/// but closes nothing. Its kernel still accepts new connections and acknowledges
/// what clients send (until the buffers fill), so a client sees no error, no reset,
/// no end of stream: only no answer, as behind a firewall that drops a link's
/// packets or a peer that vanished. [`resume`](SilentProxy::resume) forwards again,
/// bytes held meanwhile included.
///
/// Dropping the proxy stops it and closes every connection it made.
pub struct SilentProxy {
    port: u16,
    state: Arc<ProxyState>,
}

struct ProxyState {
    target: SocketAddr,
    silent: AtomicBool,
    stopped: AtomicBool,
    /// Every socket of every forwarded connection, to close them on drop.
    sockets: Mutex<Vec<TcpStream>>,
}

/// How often an idle forwarding thread looks at the silent and stopped flags.
const TICK: Duration = Duration::from_millis(20);

impl SilentProxy {
    /// Listen on a free loopback port and forward to `target`.
    pub fn start(target: SocketAddr) -> Result<SilentProxy, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("proxy: cannot bind: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("proxy: {e}"))?;
        let state = Arc::new(ProxyState {
            target,
            silent: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&state);
        std::thread::Builder::new()
            .name("silent-proxy".into())
            .spawn(move || accept_loop(&listener, &accepting))
            .map_err(|e| format!("proxy: cannot start its thread: {e}"))?;
        Ok(SilentProxy { port, state })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A proxy in front of the server of `url` (a `postgres://…` or `mysql://…` URL
    /// on `127.0.0.1:PORT`), and the same URL through the proxy.
    pub fn in_front_of(url: &str) -> Result<(SilentProxy, String), String> {
        let rest = url
            .split_once("@127.0.0.1:")
            .map(|(_, rest)| rest)
            .ok_or_else(|| format!("{url} is not on 127.0.0.1"))?;
        let port: u16 = rest
            .split(['/', '?'])
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("{url} names no port"))?;
        let proxy = SilentProxy::start(SocketAddr::from(([127, 0, 0, 1], port)))?;
        let proxied = url.replace(
            &format!("@127.0.0.1:{port}"),
            &format!("@127.0.0.1:{}", proxy.port),
        );
        Ok((proxy, proxied))
    }

    /// Stop forwarding, both ways, on every connection, old and new; close nothing.
    pub fn go_silent(&self) {
        self.state.silent.store(true, Ordering::SeqCst);
    }

    /// Forward again.
    pub fn resume(&self) {
        self.state.silent.store(false, Ordering::SeqCst);
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        let sockets =
            std::mem::take(&mut *self.state.sockets.lock().unwrap_or_else(|e| e.into_inner()));
        for socket in sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<ProxyState>) {
    while !state.stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let state = Arc::clone(state);
                std::thread::spawn(move || connect_and_forward(client, &state));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(TICK),
            Err(_) => std::thread::sleep(TICK),
        }
    }
}

/// Connect to the target (only once forwarding is on: a silent proxy does not even
/// pass a connection on) and pump both ways.
fn connect_and_forward(client: TcpStream, state: &Arc<ProxyState>) {
    let _ = client.set_nonblocking(false);
    remember(state, &client);
    while state.silent.load(Ordering::SeqCst) {
        if state.stopped.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(TICK);
    }
    let Ok(server) = TcpStream::connect(state.target) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    remember(state, &server);
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = Arc::clone(state);
    std::thread::spawn(move || pump(client, server2, &up));
    pump(server, client2, state);
}

fn remember(state: &ProxyState, socket: &TcpStream) {
    if let Ok(copy) = socket.try_clone() {
        state
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(copy);
    }
}

/// Copy `from` → `to` while not silent; hold bytes read just before going silent
/// until forwarding resumes.
fn pump(mut from: TcpStream, mut to: TcpStream, state: &ProxyState) {
    let _ = from.set_read_timeout(Some(TICK));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if state.stopped.load(Ordering::SeqCst) {
            return;
        }
        if state.silent.load(Ordering::SeqCst) {
            std::thread::sleep(TICK);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        };
        while state.silent.load(Ordering::SeqCst) && !state.stopped.load(Ordering::SeqCst) {
            std::thread::sleep(TICK);
        }
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
    }
}
