//! An S3 bucket through the AWS SDK: `ListObjectsV2` of the configured prefix, every page, and
//! `GetObject` pinned to the listed ETag. Throttling and transient errors are retried by the
//! SDK's standard retry strategy.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use chrono::{DateTime, Utc};

use super::{ObjectBody, ObjectMeta, SourceError};
use crate::config::S3Settings;

/// Attempts per request (the first and the retries), with exponential backoff.
const MAX_ATTEMPTS: u32 = 5;

pub struct S3Source {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Source {
    /// Credentials, region and endpoint come from the SDK's default chain (environment,
    /// profile, web identity, instance metadata), overridden by the settings where given.
    pub async fn from_settings(settings: &S3Settings) -> S3Source {
        S3Source::build(settings, None).await
    }

    /// The same, with fixed credentials instead of the default chain's.
    pub async fn with_credentials(settings: &S3Settings, credentials: Credentials) -> S3Source {
        S3Source::build(settings, Some(credentials)).await
    }

    async fn build(settings: &S3Settings, credentials: Option<Credentials>) -> S3Source {
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https);
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let sdk = loader.load().await;
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(settings.force_path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .build();
        S3Source {
            client: Client::from_conf(config),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
        }
    }

    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    pub async fn list(&self) -> Result<Vec<ObjectMeta>, SourceError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| SourceError::List {
                location: self.location(),
                message: describe(&e),
            })?;
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
        Ok(objects)
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
        let response = request.send().await.map_err(|e| {
            if e.code() == Some("PreconditionFailed") {
                SourceError::Changed {
                    key: object.key.clone(),
                }
            } else {
                SourceError::Open {
                    key: object.key.clone(),
                    message: describe(&e),
                }
            }
        })?;
        Ok(Box::new(response.body.into_async_read()))
    }
}

/// The SDK error with its causes (access denied, no such bucket, …), on one line.
fn describe(error: &impl std::error::Error) -> String {
    DisplayErrorContext(error).to_string()
}
