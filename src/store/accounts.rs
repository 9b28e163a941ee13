//! The `monitored_accounts` table, managed by `dbr-ingest accounts` and seeded from the
//! configuration.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::report::key::AccountId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoredAccount {
    pub id: AccountId,
    pub name: Option<String>,
    pub added_at: DateTime<Utc>,
}

impl Store {
    pub async fn monitored_accounts(&self) -> Result<Vec<MonitoredAccount>, StoreError> {
        let rows: Vec<(String, Option<String>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT linked_account_id, name, added_at FROM monitored_accounts ORDER BY linked_account_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, name, added_at)| {
                let id = id.parse().map_err(StoreError::Invalid)?;
                Ok(MonitoredAccount { id, name, added_at })
            })
            .collect()
    }

    /// Adds an account, or renames it when `name` is given. Returns whether it was new.
    pub async fn add_monitored_account(
        &self,
        id: &AccountId,
        name: Option<&str>,
    ) -> Result<bool, StoreError> {
        let new: bool = sqlx::query_scalar(
            "INSERT INTO monitored_accounts (linked_account_id, name) VALUES ($1, $2)
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
