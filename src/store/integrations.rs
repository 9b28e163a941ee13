//! The `integrations` table: every integration but `default` (the configuration's), with its
//! source and credentials; its monitored accounts are its rows of `monitored_accounts`.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::{FromRow, PgConnection};

use super::{Store, StoreError};
use crate::config::{AssumeRole, S3Settings};
use crate::domain::{IntegrationName, Monitored};
use crate::integration::{Integration, IntegrationSource};

#[derive(FromRow)]
struct Row {
    name: String,
    source: String,
    bucket: Option<String>,
    prefix: String,
    region: Option<String>,
    endpoint_url: Option<String>,
    force_path_style: bool,
    dir_path: Option<String>,
    role_arn: Option<String>,
    external_id: Option<String>,
    role_session_name: Option<String>,
    monitor_all: bool,
    enabled: bool,
    report_name: Option<String>,
}

/// What an integration has stored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Contents {
    pub statements: i64,
    pub ingested: i64,
    pub failed: i64,
    pub superseded: i64,
}

/// What removing an integration took out of the views.
#[derive(Debug, PartialEq, Eq)]
pub struct Removed {
    pub statements: u64,
    pub reports: u64,
}

const COLUMNS: &str = "name, source, bucket, prefix, region, endpoint_url, force_path_style, \
                       dir_path, role_arn, external_id, role_session_name, monitor_all, enabled, \
                       report_name";

impl Row {
    /// `read_timeout` is the deployment's, for every integration.
    fn integration(self, read_timeout: Duration) -> Result<Integration, StoreError> {
        if let Some(endpoint) = &self.endpoint_url {
            crate::secrets::register_endpoint(endpoint);
        }
        let source = match (self.source.as_str(), self.bucket, self.dir_path) {
            ("s3", Some(bucket), _) => IntegrationSource::S3(S3Settings {
                bucket,
                prefix: self.prefix,
                region: self.region,
                endpoint_url: self.endpoint_url,
                force_path_style: self.force_path_style,
                assume_role: self.role_arn.map(|role_arn| AssumeRole {
                    role_arn,
                    external_id: self.external_id,
                    session_name: self
                        .role_session_name
                        .unwrap_or_else(|| "dbr-ingest".into()),
                }),
                read_timeout,
            }),
            ("dir", _, Some(path)) => IntegrationSource::Dir(PathBuf::from(path)),
            (other, _, _) => {
                return Err(StoreError::UnknownValue {
                    table: "integrations",
                    value: other.to_owned(),
                });
            }
        };
        Ok(Integration {
            name: self.name.parse()?,
            source,
            monitored: self.monitor_all.then_some(Monitored::All),
            enabled: self.enabled,
            report_name: self.report_name,
        })
    }
}

impl Store {
    /// Every stored integration, by name, enabled or not.
    pub async fn integrations(
        &self,
        read_timeout: Duration,
    ) -> Result<Vec<Integration>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM integrations ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| row.integration(read_timeout))
            .collect()
    }

    /// How many statements and report versions of each status an integration has stored.
    pub async fn integration_contents(
        &self,
        name: &IntegrationName,
    ) -> Result<Contents, StoreError> {
        let (statements, ingested, failed, superseded) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM statements WHERE integration = $1),
                    count(*) FILTER (WHERE status = 'ingested'),
                    count(*) FILTER (WHERE status = 'failed'),
                    count(*) FILTER (WHERE status = 'superseded')
             FROM reports WHERE integration = $1",
        )
        .bind(name.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(Contents {
            statements,
            ingested,
            failed,
            superseded,
        })
    }

    /// Stores a new integration and its monitored accounts (`*`, or the IDs); fails when the
    /// name is taken.
    pub async fn add_integration(
        &self,
        integration: &Integration,
        monitored: &Monitored,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let added = write(&mut tx, integration, monitored, Write::Insert).await?;
        if !added {
            return Err(StoreError::Integration(format!(
                "an integration named {} exists already: change it with `integrations update`",
                integration.name
            )));
        }
        set_monitored(&mut tx, &integration.name, monitored).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces an integration's definition; with `monitored`, its monitored accounts too.
    pub async fn update_integration(
        &self,
        integration: &Integration,
        monitored: Option<&Monitored>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let monitor_all = match monitored {
            Some(monitored) => monitored.clone(),
            None if integration.monitored == Some(Monitored::All) => Monitored::All,
            None => Monitored::Only(Default::default()),
        };
        if !write(&mut tx, integration, &monitor_all, Write::Update).await? {
            return Err(no_such_integration(&integration.name));
        }
        if let Some(monitored) = monitored {
            set_monitored(&mut tx, &integration.name, monitored).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Enables or disables an integration; fails when there is none of that name.
    pub async fn set_integration_enabled(
        &self,
        name: &IntegrationName,
        enabled: bool,
    ) -> Result<(), StoreError> {
        let changed =
            sqlx::query("UPDATE integrations SET enabled = $2, updated_at = now() WHERE name = $1")
                .bind(name.as_str())
                .bind(enabled)
                .execute(&self.pool)
                .await?;
        if changed.rows_affected() == 0 {
            return Err(no_such_integration(name));
        }
        Ok(())
    }

    /// Removes an integration and everything stored for it, in one transaction: its
    /// statements (and their partitions) leave the views, its ledger and monitored accounts
    /// go. `default` (the configuration's, not in the table) can have its data removed too.
    pub async fn remove_integration(&self, name: &IntegrationName) -> Result<Removed, StoreError> {
        let mut tx = self.pool.begin().await?;
        let existed = sqlx::query("DELETE FROM integrations WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let statements = sqlx::query("DELETE FROM statements WHERE integration = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if !existed && !name.is_default() {
            return Err(no_such_integration(name));
        }
        sqlx::query("SELECT drop_integration_partitions($1)")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        let reports = sqlx::query("DELETE FROM reports WHERE integration = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for table in [
            "monitored_accounts",
            "full_listings",
            "service_daily_costs",
            "resource_costs",
            "tag_costs",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE integration = $1"
            )))
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Removed {
            statements,
            reports,
        })
    }
}

fn no_such_integration(name: &IntegrationName) -> StoreError {
    StoreError::Integration(format!(
        "there is no integration named {name}: `integrations list` shows them"
    ))
}

#[derive(PartialEq)]
enum Write {
    Insert,
    Update,
}

/// Inserts or updates the integration's row; returns whether a row was written.
async fn write(
    connection: &mut PgConnection,
    integration: &Integration,
    monitored: &Monitored,
    how: Write,
) -> Result<bool, StoreError> {
    let (source, s3, dir) = match &integration.source {
        IntegrationSource::S3(s3) => ("s3", Some(s3), None),
        IntegrationSource::Dir(path) => ("dir", None, Some(path.display().to_string())),
    };
    let role = s3.and_then(|s3| s3.assume_role.as_ref());
    let statement = match how {
        Write::Insert => {
            "INSERT INTO integrations (name, source, bucket, prefix, region, endpoint_url,
                                       force_path_style, dir_path, role_arn, external_id,
                                       role_session_name, monitor_all, enabled, report_name)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (name) DO NOTHING"
        }
        Write::Update => {
            "UPDATE integrations SET source = $2, bucket = $3, prefix = $4, region = $5,
                 endpoint_url = $6, force_path_style = $7, dir_path = $8, role_arn = $9,
                 external_id = $10, role_session_name = $11, monitor_all = $12, enabled = $13,
                 report_name = $14, updated_at = now()
             WHERE name = $1"
        }
    };
    let written = sqlx::query(statement)
        .bind(integration.name.as_str())
        .bind(source)
        .bind(s3.map(|s3| &s3.bucket))
        .bind(s3.map_or("", |s3| s3.prefix.as_str()))
        .bind(s3.and_then(|s3| s3.region.as_ref()))
        .bind(s3.and_then(|s3| s3.endpoint_url.as_ref()))
        .bind(s3.is_some_and(|s3| s3.force_path_style))
        .bind(dir)
        .bind(role.map(|role| &role.role_arn))
        .bind(role.and_then(|role| role.external_id.as_ref()))
        .bind(role.map(|role| &role.session_name))
        .bind(*monitored == Monitored::All)
        .bind(integration.enabled)
        .bind(integration.report_name.as_ref())
        .execute(&mut *connection)
        .await?;
    Ok(written.rows_affected() > 0)
}

/// Makes `monitored` the integration's monitored accounts (none in the table for `*`).
async fn set_monitored(
    connection: &mut PgConnection,
    name: &IntegrationName,
    monitored: &Monitored,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM monitored_accounts WHERE integration = $1")
        .bind(name.as_str())
        .execute(&mut *connection)
        .await?;
    if let Monitored::Only(ids) = monitored {
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        sqlx::query(
            "INSERT INTO monitored_accounts (integration, linked_account_id, origin)
             SELECT $1, id, 'command' FROM UNNEST($2::text[]) AS id",
        )
        .bind(name.as_str())
        .bind(&ids)
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}
