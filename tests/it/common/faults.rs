//! A fault-injecting HTTP proxy in front of the test S3 server, on 127.0.0.1: it answers
//! `503 SlowDown` itself, resets a connection in the middle of an object's body, stalls one, or
//! slows bodies down. Each client connection carries one request (the proxy asks the server to
//! close after its answer), so a fault hits exactly the requests it is meant for.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Which requests a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `ListObjectsV2`.
    List,
    /// `GetObject`.
    Get,
}

/// What happens to the next matching requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The proxy answers `503 SlowDown` without asking the server.
    SlowDown,
    /// The answer starts, then the connection is cut after this many bytes.
    ResetAfter(usize),
    /// The answer starts, then nothing more comes after this many bytes.
    StallAfter(usize),
}

#[derive(Default)]
struct Plan {
    /// Faults still to inject: (which requests, what, how many more times).
    faults: Vec<(Request, Fault, u32)>,
    /// Bytes per second for object bodies, when slowed down.
    rate: Option<usize>,
}

pub struct FaultProxy {
    pub endpoint: String,
    plan: Arc<Mutex<Plan>>,
    injected: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(server: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let plan = Arc::new(Mutex::new(Plan::default()));
        let (injected, delivered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let acceptor = {
            let (plan, injected, delivered) = (plan.clone(), injected.clone(), delivered.clone());
            tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    let (plan, injected, delivered) =
                        (plan.clone(), injected.clone(), delivered.clone());
                    connections.spawn(async move {
                        let _ = serve(client, server, &plan, &injected, &delivered).await;
                    });
                }
            })
        };
        FaultProxy {
            endpoint,
            plan,
            injected,
            delivered,
            acceptor,
        }
    }

    /// Injects `fault` into the next `times` requests of the kind.
    pub fn inject(&self, request: Request, fault: Fault, times: u32) {
        self.plan
            .lock()
            .unwrap()
            .faults
            .push((request, fault, times));
    }

    /// Injects no more faults.
    pub fn stop_faults(&self) {
        self.plan.lock().unwrap().faults.clear();
    }

    /// Slows object bodies down to `rate` bytes per second.
    pub fn slow_down(&self, rate: usize) {
        self.plan.lock().unwrap().rate = Some(rate);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Bytes of answers delivered to clients so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    server: SocketAddr,
    plan: &Mutex<Plan>,
    injected: &AtomicU64,
    delivered: &AtomicU64,
) -> std::io::Result<()> {
    let head = read_head(&mut client).await?;
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let request = if request_line.contains("list-type=2") {
        Request::List
    } else {
        Request::Get
    };
    let (fault, rate) = {
        let mut plan = plan.lock().unwrap();
        let fault = plan
            .faults
            .iter_mut()
            .find(|(kind, _, times)| *kind == request && *times > 0)
            .map(|(_, fault, times)| {
                *times -= 1;
                *fault
            });
        (fault, plan.rate)
    };
    if fault.is_some() {
        injected.fetch_add(1, Ordering::Relaxed);
    }
    if fault == Some(Fault::SlowDown) {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return client.write_all(answer.as_bytes()).await;
    }
    let mut upstream = TcpStream::connect(server).await?;
    upstream
        .write_all(close_after_answer(&head).as_bytes())
        .await?;
    let limit = match fault {
        Some(Fault::ResetAfter(bytes) | Fault::StallAfter(bytes)) => Some(bytes),
        _ => None,
    };
    let mut buffer = vec![0u8; 16 * 1024];
    let mut sent = 0usize;
    loop {
        let want = limit.map_or(buffer.len(), |l| buffer.len().min(l - sent));
        let n = if want == 0 {
            0
        } else {
            upstream.read(&mut buffer[..want]).await?
        };
        if n == 0 && want > 0 {
            return Ok(()); // The whole answer went through.
        }
        client.write_all(&buffer[..n]).await?;
        sent += n;
        delivered.fetch_add(n as u64, Ordering::Relaxed);
        if limit == Some(sent) {
            break;
        }
        if let (Some(rate), Request::Get) = (rate, request) {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    }
    match fault {
        // Cut: the client sees its connection end in the middle of the body.
        Some(Fault::ResetAfter(_)) => {
            client.set_zero_linger()?;
            Ok(())
        }
        // Stalled: nothing more, until the client gives up.
        _ => {
            let _ = client.read(&mut buffer).await;
            Ok(())
        }
    }
}

/// Reads a request head (requests to S3 here have no body).
async fn read_head(client: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The same request, asking the server to close the connection after its answer.
fn close_after_answer(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}
