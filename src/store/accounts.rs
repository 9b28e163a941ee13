//! The `monitored_accounts` table, per integration: the accounts named in the configuration
//! (the `default` integration's), kept in step with it, and those added by
//! `dbr-ingest accounts add` or `dbr-ingest integrations add … --monitored`.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::domain::{AccountId, IntegrationName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoredAccount {
    pub id: AccountId,
    pub name: Option<String>,
    /// `configuration` or `command`.
    pub origin: String,
    pub added_at: DateTime<Utc>,
}

impl Store {
    pub async fn monitored_accounts(
        &self,
        integration: &IntegrationName,
    ) -> Result<Vec<MonitoredAccount>, StoreError> {
        let rows: Vec<(String, Option<String>, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT linked_account_id, name, origin, added_at FROM monitored_accounts
             WHERE integration = $1 ORDER BY linked_account_id",
        )
        .bind(integration.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, name, origin, added_at)| {
                let id = id.parse()?;
                Ok(MonitoredAccount {
                    id,
                    name,
                    origin,
                    added_at,
                })
            })
            .collect()
    }

    /// Makes the configuration's accounts those of origin `configuration`: adds the new ones,
    /// removes those it no longer names. Accounts added by command stay.
    pub async fn seed_monitored_accounts(
        &self,
        integration: &IntegrationName,
        configured: &[AccountId],
    ) -> Result<(), StoreError> {
        let ids: Vec<&str> = configured.iter().map(AccountId::as_str).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM monitored_accounts
             WHERE integration = $1 AND origin = 'configuration' AND linked_account_id <> ALL($2)",
        )
        .bind(integration.as_str())
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO monitored_accounts (integration, linked_account_id, origin)
             SELECT $1, id, 'configuration' FROM UNNEST($2::text[]) AS id
             ON CONFLICT (integration, linked_account_id) DO NOTHING",
        )
        .bind(integration.as_str())
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds an account, or renames it when `name` is given and differs.
    pub async fn add_monitored_account(
        &self,
        integration: &IntegrationName,
        id: &AccountId,
        name: Option<&str>,
    ) -> Result<Added, StoreError> {
        // The CTE reads the row as it was before the statement.
        let (new, before): (bool, Option<String>) = sqlx::query_as(
            "WITH old AS (SELECT name FROM monitored_accounts
                          WHERE integration = $1 AND linked_account_id = $2)
             INSERT INTO monitored_accounts (integration, linked_account_id, name, origin)
             VALUES ($1, $2, $3, 'command')
             ON CONFLICT (integration, linked_account_id)
                 DO UPDATE SET name = coalesce(EXCLUDED.name, monitored_accounts.name)
             RETURNING (xmax = 0), (SELECT name FROM old)",
        )
        .bind(integration.as_str())
        .bind(id.as_str())
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(match name {
            _ if new => Added::New,
            Some(name) if before.as_deref() != Some(name) => Added::Renamed { before },
            _ => Added::Unchanged,
        })
    }

    /// Returns whether the account was there.
    pub async fn remove_monitored_account(
        &self,
        integration: &IntegrationName,
        id: &AccountId,
    ) -> Result<bool, StoreError> {
        let removed = sqlx::query(
            "DELETE FROM monitored_accounts WHERE integration = $1 AND linked_account_id = $2",
        )
        .bind(integration.as_str())
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(removed.rows_affected() > 0)
    }
}

/// What adding a monitored account did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    New,
    /// It was monitored already, under this name (or none).
    Renamed {
        before: Option<String>,
    },
    Unchanged,
}
