//! An integration: one customer's reports. Where they are (an S3 bucket and prefix, or a
//! directory), with which credentials (the default chain, or a role of the customer's assumed
//! with an external ID), and which linked accounts of them are kept. The configuration's
//! bucket is the integration `default`; the others live in the `integrations` table. Nothing
//! here does I/O.

use std::fmt;
use std::path::PathBuf;

use crate::config::{S3Settings, Settings, SourceSetting};
use crate::domain::{IntegrationName, Monitored};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integration {
    pub name: IntegrationName,
    pub source: IntegrationSource,
    /// `*`, or for `default` the accounts its configuration names. `None`: only the
    /// integration's rows of the `monitored_accounts` table.
    pub monitored: Option<Monitored>,
    /// A disabled integration is not polled; its data stays in the views.
    pub enabled: bool,
    /// Read only the Cost and Usage Report of this name; `None`: every one (a payer with two
    /// then has neither read, until one is named).
    pub report_name: Option<String>,
}

/// Where an integration's reports are, and the credentials that read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntegrationSource {
    S3(S3Settings),
    Dir(PathBuf),
}

impl Integration {
    /// The configuration's integration, when it names a bucket or a directory.
    pub fn from_settings(settings: &Settings) -> Option<Integration> {
        let source = match &settings.source {
            SourceSetting::Dir(path) => IntegrationSource::Dir(path.clone()),
            SourceSetting::S3 if settings.s3.bucket.is_empty() => return None,
            SourceSetting::S3 => IntegrationSource::S3(settings.s3.clone()),
        };
        Some(Integration {
            name: IntegrationName::default_name(),
            source,
            monitored: settings.monitored.clone(),
            enabled: true,
            report_name: settings.report_name.clone(),
        })
    }
}

impl IntegrationSource {
    /// `s3://bucket/prefix` or `dir:PATH`, as the ledger names it.
    pub fn location(&self) -> String {
        match self {
            IntegrationSource::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix),
            IntegrationSource::Dir(path) => format!("dir:{}", path.display()),
        }
    }
}

impl fmt::Display for IntegrationSource {
    /// The location, the endpoint when it is not AWS's, and the role when one is assumed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location())?;
        if let IntegrationSource::S3(s3) = self {
            if let Some(region) = &s3.region {
                write!(f, " in {region}")?;
            }
            if let Some(endpoint) = &s3.endpoint_url {
                write!(f, " at {}", crate::secrets::display_endpoint(endpoint))?;
            }
            if let Some(role) = &s3.assume_role {
                write!(f, " as {}", role.role_arn)?;
            }
        }
        Ok(())
    }
}

/// Integrations whose sources are equal (the same bucket, prefix, endpoint and credentials)
/// and that read the same reports (`report_name`): a report version listed for several of them
/// is read once.
pub fn by_source(integrations: Vec<Integration>) -> Vec<Vec<Integration>> {
    let mut groups: Vec<Vec<Integration>> = Vec::new();
    for integration in integrations {
        match groups.iter_mut().find(|group| {
            group[0].source == integration.source && group[0].report_name == integration.report_name
        }) {
            Some(group) => group.push(integration),
            None => groups.push(vec![integration]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::AssumeRole;

    fn s3(bucket: &str, role: Option<&str>) -> Integration {
        Integration {
            name: bucket.parse().unwrap(),
            source: IntegrationSource::S3(S3Settings {
                bucket: bucket.into(),
                prefix: String::new(),
                region: None,
                endpoint_url: None,
                force_path_style: false,
                assume_role: role.map(|arn| AssumeRole {
                    role_arn: arn.into(),
                    external_id: None,
                    session_name: "dbr-ingest".into(),
                }),
                read_timeout: Duration::from_secs(60),
            }),
            monitored: None,
            enabled: true,
            report_name: None,
        }
    }

    #[test]
    fn integrations_share_a_read_only_with_the_same_bucket_and_credentials() {
        let mut same = s3("shared", None);
        same.name = "second".parse().unwrap();
        let groups = by_source(vec![
            s3("shared", None),
            s3("other", None),
            same,
            s3("shared", Some("arn:aws:iam::1:role/r")),
        ]);
        let names: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|i| i.name.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            vec![vec!["shared", "second"], vec!["other"], vec!["shared"]]
        );
    }
}
