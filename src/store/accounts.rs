//! The `monitored_accounts` table: the accounts named in the configuration, kept in step with
//! it, and those added by `dbr-ingest accounts add`.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::domain::AccountId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoredAccount {
    pub id: AccountId,
    pub name: Option<String>,
    /// `configuration` or `command`.
    pub origin: String,
    pub added_at: DateTime<Utc>,
}

impl Store {
    pub async fn monitored_accounts(&self) -> Result<Vec<MonitoredAccount>, StoreError> {
        let rows: Vec<(String, Option<String>, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT linked_account_id, name, origin, added_at FROM monitored_accounts ORDER BY linked_account_id",
        )
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
        configured: &[AccountId],
    ) -> Result<(), StoreError> {
        let ids: Vec<&str> = configured.iter().map(AccountId::as_str).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM monitored_accounts WHERE origin = 'configuration' AND linked_account_id <> ALL($1)",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO monitored_accounts (linked_account_id, origin)
             SELECT id, 'configuration' FROM UNNEST($1::text[]) AS id
             ON CONFLICT (linked_account_id) DO NOTHING",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds an account, or renames it when `name` is given. Returns whether it was new.
    pub async fn add_monitored_account(
        &self,
        id: &AccountId,
        name: Option<&str>,
    ) -> Result<bool, StoreError> {
        let new: bool = sqlx::query_scalar(
            "INSERT INTO monitored_accounts (linked_account_id, name, origin) VALUES ($1, $2, 'command')
             ON CONFLICT (linked_account_id) DO UPDATE SET name = coalesce(EXCLUDED.name, monitored_accounts.name)
             RETURNING (xmax = 0)",
        )
        .bind(id.as_str())
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(new)
    }

    /// Returns whether the account was there.
    pub async fn remove_monitored_account(&self, id: &AccountId) -> Result<bool, StoreError> {
        let removed = sqlx::query("DELETE FROM monitored_accounts WHERE linked_account_id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(removed.rows_affected() > 0)
    }
}
