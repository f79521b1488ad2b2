//! A TCP proxy in front of a real server that a test can turn into a dead or hung one:
//! forwarding, refusing (accepts and resets at once, as a crashed server's port does), or
//! hanging (accepts, reads, never answers). Refusing cuts every open connection, as the server
//! dying would; hanging freezes them (nothing more is passed either way) until the next
//! switch. It counts what it accepted and what is still open, so a test can tell
//! a leak.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Pass them to the server.
    Forward = 0,
    /// Accept and reset: a server that is down.
    Refuse = 1,
    /// Accept, read, never answer: a server that hangs.
    Hang = 2,
}

impl Mode {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Refuse,
            2 => Self::Hang,
            _ => Self::Forward,
        }
    }
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    mode: AtomicU8,
    accepted: AtomicUsize,
    open: AtomicUsize,
    /// Bumped on every mode change: connections of an older epoch are cut.
    epoch: watch::Sender<u64>,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port, forwarding to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (epoch, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            target,
            mode: AtomicU8::new(Mode::Forward as u8),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            epoch,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        let serving = shared.clone();
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = accept_loop(listener, serving) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Self {
            address,
            shared,
            stop: Some(stop),
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Switches mode, cutting every open connection.
    pub fn set(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
        self.shared.epoch.send_modify(|e| *e += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Makes closing `stream` a reset (a linger of zero, which never blocks the thread: the
/// deprecation warns about non-zero ones).
#[allow(deprecated)]
fn reset(stream: &TcpStream) {
    let _ = stream.set_linger(Some(std::time::Duration::ZERO));
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.open.fetch_add(1, Ordering::SeqCst);
            serve(client, &shared).await;
            shared.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn serve(mut client: TcpStream, shared: &Shared) {
    let mut epoch = shared.epoch.subscribe();
    epoch.mark_unchanged();
    match Mode::from_u8(shared.mode.load(Ordering::SeqCst)) {
        Mode::Refuse => {
            // A reset, not a polite close: what a port without a server answers.
            reset(&client);
        }
        Mode::Hang => {
            let mut sink = [0u8; 4096];
            loop {
                tokio::select! {
                    read = client.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) { return },
                    _ = epoch.changed() => return,
                }
            }
        }
        Mode::Forward => {
            let Ok(mut server) = TcpStream::connect(shared.target).await else {
                reset(&client);
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = epoch.changed() => {
                    // A server that hangs keeps its connections and answers nothing on them;
                    // one that is down loses them.
                    if Mode::from_u8(shared.mode.load(Ordering::SeqCst)) == Mode::Hang {
                        let _ = epoch.changed().await;
                    }
                    reset(&client);
                }
            }
        }
    }
}
