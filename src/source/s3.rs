//! An S3 bucket through the AWS SDK: `ListObjectsV2` of the configured prefix, a level at a
//! time and every page, and `GetObject` pinned to the listed ETag. Throttling and transient
//! errors are retried by the SDK's standard retry strategy. Errors say what to fix: which
//! permission on which resource, which region.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio_io_timeout::TimeoutReader;

use super::{Listing, LookIn, ObjectBody, SourceError};
use crate::config::{AssumeRole, S3Settings};
use crate::domain::ObjectMeta;
use crate::failure::FailureKind;

/// Attempts per request (the first and the retries), with exponential backoff.
const MAX_ATTEMPTS: u32 = 5;

/// Levels of a bucket listed at once: a listing's requests are mostly waiting for S3.
const LEVELS_AT_ONCE: usize = 8;

pub struct S3Source {
    client: Client,
    bucket: String,
    prefix: String,
    read_timeout: std::time::Duration,
    /// Requests sent (list pages, object reads), for the integration's metric.
    requests: AtomicU64,
    /// Small objects read before (CUR manifests), by key and ETag: a poll reads again only
    /// those that AWS rewrote.
    small: super::SmallObjects,
}

/// What the S3 clients of one process share: the default chain's credentials, region and
/// timeouts, loaded once, when the first S3 client is made (a directory source needs none of
/// it, and loading it may ask instance metadata), and one HTTPS connection pool. Each
/// integration's client is made from it with its own region, endpoint and role.
pub struct S3Context {
    read_timeout: std::time::Duration,
    credentials: Option<Credentials>,
    sdk: tokio::sync::OnceCell<SdkConfig>,
}

impl S3Context {
    /// Credentials, region and endpoint from the SDK's default chain (environment, profile,
    /// web identity, instance metadata). `read_timeout` bounds every request's silences.
    pub fn new(read_timeout: std::time::Duration) -> S3Context {
        S3Context {
            read_timeout,
            credentials: None,
            sdk: tokio::sync::OnceCell::new(),
        }
    }

    async fn sdk(&self) -> &SdkConfig {
        self.sdk
            .get_or_init(|| async {
                let https = aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                    .build_https();
                let timeouts = aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(self.read_timeout)
                    .read_timeout(self.read_timeout)
                    .build();
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(https)
                    .timeout_config(timeouts);
                if let Some(credentials) = &self.credentials {
                    loader = loader.credentials_provider(credentials.clone());
                }
                loader.load().await
            })
            .await
    }
}

impl S3Source {
    /// A client for `settings` with fixed credentials instead of the default chain's.
    pub async fn with_credentials(settings: &S3Settings, credentials: Credentials) -> S3Source {
        let context = S3Context {
            credentials: Some(credentials),
            ..S3Context::new(settings.read_timeout)
        };
        S3Source::new(&context, settings).await
    }

    /// A client of its own for one integration. A role is assumed through STS (at the
    /// endpoint of `AWS_ENDPOINT_URL_STS` when set) with the context's credentials; the SDK
    /// caches the role's credentials in this client and refreshes them before they expire.
    pub async fn new(context: &S3Context, settings: &S3Settings) -> S3Source {
        let shared = context.sdk().await;
        let sdk = match &settings.region {
            Some(region) => shared
                .to_builder()
                .region(aws_config::Region::new(region.clone()))
                .build(),
            None => shared.clone(),
        };
        let mut config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(settings.force_path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        // The S3 endpoint is S3's alone: a role is still assumed at STS's.
        if let Some(endpoint) = &settings.endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        if let Some(role) = &settings.assume_role {
            let provider = assume_role(role).configure(&sdk).build().await;
            config = config.credentials_provider(SharedCredentialsProvider::new(provider));
        }
        S3Source {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            read_timeout: settings.read_timeout,
            requests: AtomicU64::new(0),
            small: super::SmallObjects::default(),
        }
    }

    /// The small objects read before, kept by key and ETag.
    pub(super) fn small_objects(&self) -> &super::SmallObjects {
        &self.small
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// Every object under the prefix, or with `within`, only those under the prefix followed
    /// by one of these; in the folders below, only where `look_in` says.
    ///
    /// A level is listed at a time (`/` as the delimiter), so that a folder the listing does
    /// not look into costs nothing, however many objects it holds: the assembly folder of each
    /// earlier version of a CUR month, say. Up to [`LEVELS_AT_ONCE`] levels are listed at once.
    pub async fn list(
        &self,
        within: Option<&[String]>,
        look_in: LookIn,
    ) -> Result<Listing, SourceError> {
        let mut pending: Vec<String> = match within {
            Some(within) => within
                .iter()
                .map(|start| format!("{}{start}", self.prefix))
                .collect(),
            None => vec![self.prefix.clone()],
        };
        let mut objects = Vec::new();
        let mut levels = FuturesUnordered::new();
        loop {
            while levels.len() < LEVELS_AT_ONCE
                && let Some(prefix) = pending.pop()
            {
                levels.push(self.list_level(prefix));
            }
            let Some(level) = levels.next().await else {
                break;
            };
            let (found, folders) = level?;
            objects.extend(found);
            pending.extend(folders.iter().map(|folder| look_in(folder)));
        }
        objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(Listing {
            objects,
            passed_over: Vec::new(),
        })
    }

    /// The objects at one level under `prefix`, and the folders there (common prefixes ending
    /// in `/`), every page.
    async fn list_level(
        &self,
        prefix: String,
    ) -> Result<(Vec<ObjectMeta>, Vec<String>), SourceError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let (mut objects, mut folders) = (Vec::new(), Vec::new());
        while let Some(page) = pages.next().await {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let page = page.map_err(|e| {
                let resource = format!("arn:aws:s3:::{}", self.bucket);
                let (kind, explanation) = explain(&e, "s3:ListBucket", &resource);
                SourceError::List {
                    location: self.location(),
                    explanation,
                    kind,
                    cause: e.into(),
                }
            })?;
            folders.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|folder| folder.prefix().map(str::to_owned)),
            );
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                objects.push(ObjectMeta {
                    key: key.to_owned(),
                    etag: object.e_tag().unwrap_or_default().to_owned(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or_default(),
                    last_modified: object
                        .last_modified()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
                });
            }
        }
        Ok((objects, folders))
    }

    pub async fn open(&self, object: &ObjectMeta) -> Result<ObjectBody, SourceError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object.key);
        if !object.etag.is_empty() {
            request = request.if_match(&object.etag);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await.map_err(|e| {
            if e.code() == Some("PreconditionFailed") {
                SourceError::Changed {
                    key: object.key.clone(),
                }
            } else {
                let resource = format!("arn:aws:s3:::{}/{}", self.bucket, object.key);
                let (kind, explanation) = explain(&e, "s3:GetObject", &resource);
                SourceError::Open {
                    key: object.key.clone(),
                    explanation,
                    kind,
                    cause: e.into(),
                }
            }
        })?;
        let mut body = TimeoutReader::new(response.body.into_async_read());
        body.set_timeout(Some(self.read_timeout));
        Ok(Box::new(Box::pin(body)))
    }
}

fn assume_role(role: &AssumeRole) -> aws_config::sts::AssumeRoleProviderBuilder {
    let builder = AssumeRoleProvider::builder(&role.role_arn).session_name(&role.session_name);
    match &role.external_id {
        Some(id) => builder.external_id(id),
        None => builder,
    }
}

/// Turns an SDK error into its kind and what to do about it: refused credentials, a missing
/// permission or bucket and a wrong region are for an operator to fix; the rest may pass.
fn explain<E>(
    error: &SdkError<E, HttpResponse>,
    action: &str,
    resource: &str,
) -> (FailureKind, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // S3 names the bucket's region in a header when it is asked in the wrong one.
    let region = error
        .raw_response()
        .and_then(|response| response.headers().get("x-amz-bucket-region"));
    let explanation = match error.code() {
        Some("AccessDenied" | "AllAccessDisabled") => {
            format!("access denied: the credentials need {action} on {resource}")
        }
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken") => {
            format!(
                "the credentials were refused ({}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile or the role",
                error.code().unwrap_or_default()
            )
        }
        Some("NoSuchBucket") => format!("there is no such bucket ({resource})"),
        Some(
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException",
        ) => match region {
            Some(region) => {
                format!("the bucket is in region {region}: set AWS_REGION (or DBR_S3_REGION) to it")
            }
            None => {
                "the bucket is in another region: set AWS_REGION (or DBR_S3_REGION) to the bucket's"
                    .into()
            }
        },
        _ => match matches!(error, SdkError::DispatchFailure(_))
            .then(|| missing_setting(error))
            .flatten()
        {
            Some(explanation) => explanation.to_owned(),
            None => {
                return (
                    FailureKind::Transient,
                    DisplayErrorContext(error).to_string(),
                );
            }
        },
    };
    (FailureKind::Configuration, explanation)
}

/// What a request that never left (a dispatch failure) lacked: a region or credentials. The SDK says so deep in
/// its error's sources, under a debug dump; an operator needs one line.
fn missing_setting(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut source = Some(error);
    while let Some(error) = source {
        let message = error.to_string();
        if message.contains("A region must be set") {
            return Some("no AWS region: set AWS_REGION or DBR_S3_REGION (the bucket's region)");
        }
        if message.contains("credential") {
            return Some(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or web identity, \
                 or run where instance or container metadata provides them",
            );
        }
        source = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_assumed_with_its_external_id_and_session_name() {
        let role = AssumeRole {
            role_arn: "arn:aws:iam::123456789012:role/billing-reader".into(),
            external_id: Some("ext-42".into()),
            session_name: "dbr-ingest".into(),
        };
        let builder = format!("{:?}", assume_role(&role));
        for expected in [
            "arn:aws:iam::123456789012:role/billing-reader",
            "ext-42",
            "dbr-ingest",
        ] {
            assert!(builder.contains(expected), "{builder} lacks {expected}");
        }
    }
}
