//! A local STS endpoint speaking the AssumeRole protocol (form-encoded POST, XML answer), so
//! that roles are assumed by the SDK's own provider over HTTP. It hands out the credentials it
//! was started with and remembers every request's parameters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;

/// The parameters of one AssumeRole request.
pub type Request = BTreeMap<String, String>;

pub struct Sts {
    pub endpoint: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

#[derive(Clone)]
struct Issued {
    access_key: String,
    secret_key: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Sts {
    /// Starts on a free port of 127.0.0.1; every role assumed gets these credentials.
    pub async fn start(access_key: &str, secret_key: &str) -> Sts {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let issued = Issued {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            requests: requests.clone(),
        };
        let app = Router::new()
            .route("/", post(assume_role))
            .with_state(issued);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Sts { endpoint, requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn assume_role(State(issued): State<Issued>, body: String) -> impl IntoResponse {
    let request: Request = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let expiration = (chrono::Utc::now() + chrono::TimeDelta::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let arn = request.get("RoleArn").cloned().unwrap_or_default();
    issued.requests.lock().unwrap().push(request);
    let xml = format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>{}</AccessKeyId>
      <SecretAccessKey>{}</SecretAccessKey>
      <SessionToken>dbr-test-session-token</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROATEST:dbr-ingest</AssumedRoleId>
      <Arn>{arn}/dbr-ingest</Arn>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#,
        issued.access_key, issued.secret_key
    );
    ([(header::CONTENT_TYPE, "text/xml")], xml)
}
