//! Network helpers: a TCP proxy that can be cut and restored (and slowed down), a bare HTTP GET,
//! and a `dbr-ingest run` process that is killed when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Forwards 127.0.0.1:`port` to `target`; `down` cuts every connection and refuses new ones.
pub struct Proxy {
    pub port: u16,
    target: SocketAddr,
    /// Bytes per second each way, when slowed down.
    rate: Option<usize>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
    /// Bytes forwarded from the target to clients so far.
    delivered: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr, rate: Option<usize>) -> Arc<Proxy> {
        let proxy = Arc::new(Proxy {
            port: free_port(),
            target,
            rate,
            acceptor: Mutex::new(None),
            delivered: Arc::default(),
        });
        proxy.up().await;
        proxy
    }

    pub async fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let (target, rate, delivered) = (self.target, self.rate, self.delivered.clone());
        let acceptor = tokio::spawn(async move {
            // Dropped with the acceptor: every connection is cut at once.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(forward(client, target, rate, delivered.clone()));
            }
        });
        *self.acceptor.lock().unwrap() = Some(acceptor);
    }

    /// Bytes forwarded from the target to clients so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub fn down(&self) {
        if let Some(acceptor) = self.acceptor.lock().unwrap().take() {
            acceptor.abort();
        }
    }
}

async fn forward(
    client: TcpStream,
    target: SocketAddr,
    rate: Option<usize>,
    delivered: Arc<AtomicU64>,
) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pipe(client_read, server_write, rate, None) => {}
        _ = pipe(server_read, client_write, rate, Some(&delivered)) => {}
    }
}

/// Copies `from` to `to` at `rate` bytes per second at most, counting into `counted`.
async fn pipe(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    rate: Option<usize>,
    counted: Option<&AtomicU64>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buffer).await.unwrap_or(0);
        if n == 0 || to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        if let Some(counted) = counted {
            counted.fetch_add(n as u64, Ordering::Relaxed);
        }
        if let Some(rate) = rate {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    }
}

/// `GET path` on 127.0.0.1:`port`: the status and the body, or `None` if nothing answered.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    Some((status, response.split_once("\r\n\r\n")?.1.to_owned()))
}

/// Waits up to `seconds` for `condition` to hold.
pub async fn eventually<F, Fut>(seconds: u64, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..seconds * 10 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A `dbr-ingest run` process; killed when dropped unless it was stopped.
pub struct Daemon {
    child: Option<Child>,
    /// The probes and metrics.
    pub http_port: u16,
    /// The status page.
    pub status_port: u16,
}

impl Daemon {
    pub fn start(env: &[(&str, String)]) -> Daemon {
        let (http_port, status_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_dbr-ingest"))
            .arg("run")
            .env("DBR_CONFIG", "/dev/null")
            .env("DBR_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("DBR_STATUS_ADDR", format!("127.0.0.1:{status_port}"))
            .env("RUST_LOG", "error")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            http_port,
            status_port,
        }
    }

    /// Sends SIGTERM and waits for the exit; true when it exited cleanly (status 0).
    pub async fn terminate(self) -> bool {
        self.terminate_timed().await.0
    }

    /// Sends SIGTERM; whether it exited cleanly, and how long it took.
    pub async fn terminate_timed(mut self) -> (bool, Duration) {
        let started = std::time::Instant::now();
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let clean = tokio::task::spawn_blocking(move || child.wait().unwrap().success())
            .await
            .unwrap();
        (clean, started.elapsed())
    }

    /// The value of a metric line (`name{labels}`) in `/metrics`, if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = http_get(self.http_port, "/metrics").await?;
        body.lines().find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
