//! A TCP proxy for fault trials against real servers: it forwards to an upstream server
//! and, on command, refuses (its port is closed, so new connections are refused, and live
//! connections are reset), pauses (no byte flows either way and new connections hang, like
//! a network black hole) or resumes forwarding.
//!
//! ```ignore
//! let (proxy, url) = Proxy::for_url("postgres://postgres@127.0.0.1:5432/test").await;
//! // ... point the code under test at `url` ...
//! proxy.refuse().await;   // the server "goes away"
//! proxy.resume().await;   // and comes back on the same port
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward bytes both ways.
    Forward,
    /// Hold bytes both ways; accept new connections but do not serve them.
    Pause,
    /// Close the listening port and reset every live connection.
    Refuse,
}

/// A running proxy; stopped (port closed, connections dropped) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    applied: watch::Receiver<Mode>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on a free local port in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy addr: {e}"));
        let (mode, mode_rx) = watch::channel(Mode::Forward);
        let (applied_tx, applied) = watch::channel(Mode::Forward);
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(serve(
            listener,
            addr,
            upstream,
            mode_rx,
            applied_tx,
            accepted.clone(),
        ));
        Proxy {
            addr,
            mode,
            applied,
            accepted,
            task,
        }
    }

    /// Starts a proxy in front of the server a database URL names, and returns it with
    /// the same URL pointed at the proxy.
    pub async fn for_url(url: &str) -> (Proxy, String) {
        let mut u = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let host = u.host_str().unwrap_or("127.0.0.1").to_string();
        let port = u.port().unwrap_or(match u.scheme() {
            "mysql" | "mariadb" => 3306,
            _ => 5432,
        });
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("cannot resolve {host}:{port}"));
        let proxy = Proxy::start(upstream).await;
        u.set_host(Some("127.0.0.1"))
            .unwrap_or_else(|e| panic!("{e}"));
        u.set_port(Some(proxy.addr.port()))
            .unwrap_or_else(|()| panic!("cannot set a port on {url}"));
        (proxy, u.to_string())
    }

    /// The proxy's own address (what clients connect to).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes the port (new connections are refused) and resets live connections;
    /// returns once the port is closed.
    pub async fn refuse(&self) {
        self.set(Mode::Refuse).await;
    }

    /// Stops all traffic without closing anything; returns at once.
    pub async fn pause(&self) {
        self.set(Mode::Pause).await;
    }

    /// Forwards again (re-opening the same port after a refusal); returns once the port
    /// accepts connections.
    pub async fn resume(&self) {
        self.set(Mode::Forward).await;
    }

    async fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
        let mut applied = self.applied.clone();
        applied
            .wait_for(|m| *m == mode)
            .await
            .unwrap_or_else(|e| panic!("proxy task ended: {e}"));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Connections end too: their mode channel closes with the sender.
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    applied: watch::Sender<Mode>,
    accepted: Arc<AtomicUsize>,
) {
    let mut listener = Some(listener);
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Refuse {
            listener = None;
            applied.send_replace(current);
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => rebind(addr).await,
        };
        applied.send_replace(current);
        tokio::select! {
            r = l.accept() => {
                if let Ok((client, _)) = r {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(pipe(client, upstream, mode.clone()));
                }
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        listener = Some(l);
    }
}

/// Opens the same port again after a refusal (SO_REUSEADDR: the old connections may
/// still be in TIME_WAIT).
async fn rebind(addr: SocketAddr) -> TcpListener {
    let mut last = None;
    for _ in 0..50 {
        let socket = TcpSocket::new_v4().unwrap_or_else(|e| panic!("proxy socket: {e}"));
        let _ = socket.set_reuseaddr(true);
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(l) => return l,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("proxy cannot listen on {addr} again: {last:?}");
}

/// Waits while paused; false when the proxy refuses or is gone.
async fn forwarding(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        let m = *mode.borrow_and_update();
        match m {
            Mode::Forward => return true,
            Mode::Refuse => return false,
            Mode::Pause => {
                if mode.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    if !forwarding(&mut mode).await {
        let _ = client.set_zero_linger();
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let mut to_server = vec![0u8; 16 * 1024];
    let mut to_client = vec![0u8; 16 * 1024];
    let reset = loop {
        if !forwarding(&mut mode).await {
            break true;
        }
        // Biased, mode first: once `refuse()` has returned, no byte gets through any more.
        tokio::select! {
            biased;
            changed = mode.changed() => {
                if changed.is_err() {
                    break true;
                }
            }
            r = client.read(&mut to_server) => match r {
                Ok(n) if n > 0 => {
                    if server.write_all(&to_server[..n]).await.is_err() {
                        break false;
                    }
                }
                _ => break false,
            },
            r = server.read(&mut to_client) => match r {
                Ok(n) if n > 0 => {
                    if client.write_all(&to_client[..n]).await.is_err() {
                        break false;
                    }
                }
                _ => break false,
            },
        }
    };
    if reset {
        // An RST, not a FIN: the client sees "connection reset", as when a server dies.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    } else {
        let _ = client.shutdown().await;
        let _ = server.shutdown().await;
    }
}
