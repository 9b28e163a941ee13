//! A real S3 protocol server for the tests: s3s-fs serving a temporary directory over HTTP on
//! 127.0.0.1, and a client of the AWS SDK pointed at it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use dbr_ingest::config::S3Settings;
use dbr_ingest::source::{S3Source, Source};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use s3s::S3Result;
use s3s::auth::{S3Auth, SecretKey, SimpleAuth};
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "dbr-test-access-key";
pub const SECRET_KEY: &str = "dbr-test-secret-key";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    pub endpoint: String,
    pub client: Client,
    /// The access keys requests were signed with.
    used_keys: Arc<Mutex<BTreeSet<String>>>,
    _root: tempfile::TempDir,
}

/// The server's accounts, remembering which access keys signed requests.
struct RecordingAuth {
    keys: SimpleAuth,
    used: Arc<Mutex<BTreeSet<String>>>,
}

#[async_trait::async_trait]
impl S3Auth for RecordingAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        self.used.lock().unwrap().insert(access_key.to_owned());
        self.keys.get_secret_key(access_key).await
    }
}

impl S3Server {
    /// Starts a server on a free port of 127.0.0.1; it stops with the test's runtime.
    pub async fn start() -> S3Server {
        S3Server::start_with_keys(&[]).await
    }

    /// A server that also accepts these (access key, secret key) pairs.
    pub async fn start_with_keys(keys: &[(&str, &str)]) -> S3Server {
        let root = tempfile::tempdir().unwrap();
        let used_keys = Arc::new(Mutex::new(BTreeSet::new()));
        let service = {
            let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(root.path()).unwrap());
            let mut accounts = SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY);
            for (access, secret) in keys {
                accounts.register((*access).to_owned(), SecretKey::from(*secret));
            }
            builder.set_auth(RecordingAuth {
                keys: accounts,
                used: used_keys.clone(),
            });
            builder.build()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let http = ConnectionBuilder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                // Else each object's body waits for the client's delayed ACK of its headers.
                socket.set_nodelay(true).unwrap();
                let connection = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(connection);
            }
        });
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "tests",
            ))
            .region(Region::new(REGION))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                    .build_https(),
            )
            .build();
        S3Server {
            endpoint,
            client: Client::from_conf(config),
            used_keys,
            _root: root,
        }
    }

    /// The access keys that signed requests so far.
    pub fn used_keys(&self) -> BTreeSet<String> {
        self.used_keys.lock().unwrap().clone()
    }

    pub fn address(&self) -> std::net::SocketAddr {
        self.endpoint.trim_start_matches("http://").parse().unwrap()
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.client
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }

    /// The daemon's source for `bucket` and `prefix`, through the production client setup
    /// (HTTPS-capable connector, retries) with the test credentials.
    pub async fn source(&self, bucket: &str, prefix: &str) -> Source {
        source_at(&self.endpoint, bucket, prefix, Duration::from_secs(60)).await
    }

    /// What the binary needs in its environment to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("DBR_S3_FORCE_PATH_STYLE", "true".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

/// A source for `bucket` and `prefix` at `endpoint` (the server, or a proxy in front of it),
/// giving up on a silent connection after `read_timeout`.
pub async fn source_at(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    read_timeout: Duration,
) -> Source {
    let settings = S3Settings {
        bucket: bucket.into(),
        prefix: prefix.into(),
        region: Some(REGION.into()),
        endpoint_url: Some(endpoint.to_owned()),
        force_path_style: true,
        assume_role: None,
        read_timeout,
    };
    Source::S3(
        S3Source::with_credentials(
            &settings,
            Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "tests"),
        )
        .await,
    )
}
