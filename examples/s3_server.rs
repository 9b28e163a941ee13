//! The S3 protocol server the benches run on 127.0.0.1: s3s-fs serving a directory (each
//! subdirectory a bucket), as s3s-fs's own binary does, with the same flags, but with Nagle's
//! algorithm off on every connection. s3s-fs's binary leaves it on, so each GetObject's body
//! waited for the client's delayed ACK of the headers: 40 ms per report read, most of the
//! first poll's time in `bench/integrations.sh`, and nothing of this service's.
//!
//! `cargo run --release --example s3_server -- --host 127.0.0.1 --port 9000 \
//!      --access-key KEY --secret-key SECRET ROOT`

use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

#[derive(Parser)]
struct Options {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    access_key: String,
    #[arg(long)]
    secret_key: String,
    /// The directory served: each of its subdirectories is a bucket.
    root: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let service = {
        let files = s3s_fs::FileSystem::new(&options.root)
            .map_err(|error| format!("serving {}: {error:?}", options.root.display()))?;
        let mut builder = S3ServiceBuilder::new(files);
        builder.set_auth(SimpleAuth::from_single(
            options.access_key,
            options.secret_key,
        ));
        builder.build()
    };
    let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port)).await?;
    let http = ConnectionBuilder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let connection = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(connection);
    }
}
