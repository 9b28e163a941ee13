//! An S3 bucket through the AWS SDK: `ListObjectsV2` of the configured prefix, every page, and
//! `GetObject` pinned to the listed ETag. Throttling and transient errors are retried by the
//! SDK's standard retry strategy. Errors say what to fix: which permission on which resource,
//! which region.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use chrono::{DateTime, Utc};
use tokio_io_timeout::TimeoutReader;

use super::{Listing, ObjectBody, SourceError};
use crate::config::{AssumeRole, S3Settings};
use crate::domain::ObjectMeta;
use crate::failure::FailureKind;

/// Attempts per request (the first and the retries), with exponential backoff.
const MAX_ATTEMPTS: u32 = 5;

pub struct S3Source {
    client: Client,
    bucket: String,
    prefix: String,
    read_timeout: std::time::Duration,
}

impl S3Source {
    /// Credentials, region and endpoint come from the SDK's default chain (environment,
    /// profile, web identity, instance metadata), overridden by the settings where given; with
    /// a role to assume, those credentials only serve to assume it.
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
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(settings.read_timeout)
            .read_timeout(settings.read_timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https)
            .timeout_config(timeouts);
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
        let mut config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(settings.force_path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        if let Some(role) = &settings.assume_role {
            let provider = assume_role(role).configure(&sdk).build().await;
            config = config.credentials_provider(SharedCredentialsProvider::new(provider));
        }
        S3Source {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            read_timeout: settings.read_timeout,
        }
    }

    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    pub async fn list(&self) -> Result<Listing, SourceError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
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
        Ok(Listing {
            objects,
            passed_over: Vec::new(),
        })
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
        _ => {
            return (
                FailureKind::Transient,
                DisplayErrorContext(error).to_string(),
            );
        }
    };
    (FailureKind::Configuration, explanation)
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
