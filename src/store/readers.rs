//! Dashboards' roles: `SELECT` on the contract views and nothing else, for every integration
//! or for one. Run by the database's owner, like `migrate`.

use sqlx::AssertSqlSafe;

use super::{Store, StoreError};
use crate::domain::IntegrationName;

/// The views dashboards read (the README's SQL contract); the tables behind them may change.
pub const CONTRACT_VIEWS: [&str; 8] = [
    "account_monthly_costs",
    "account_daily_costs",
    "daily_costs_by_service",
    "cost_by_tag",
    "top_resources",
    "focus_costs",
    "report_status",
    "account_reconciliation",
];

/// Where a reader of one integration finds its views.
fn reader_schema(integration: &IntegrationName) -> String {
    format!("dbr_{}", integration.as_str().replace('-', "_"))
}

impl Store {
    /// Lets the existing `role` connect and read the contract views. With `integration`, it
    /// reads them through views of a schema of its own (`dbr_<name>`, made its search path)
    /// that show that integration's rows alone, and not the views of `public`. Run it again
    /// after a `migrate` that changes the views. Returns the schema the role reads.
    pub async fn grant_reader(
        &self,
        role: &str,
        integration: Option<&IntegrationName>,
    ) -> Result<String, StoreError> {
        let valid = !role.is_empty()
            && role.len() <= 63
            && role.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(StoreError::Integration(format!(
                "{role:?} is not a role name this command takes (lower-case letters, digits and _)"
            )));
        }
        let mut tx = self.pool.begin().await?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::Integration(format!(
                "there is no role {role}: create it first (CREATE ROLE {role} LOGIN PASSWORD '…')"
            )));
        }
        let database: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut *tx)
            .await?;
        let mut statements = vec![format!(
            "GRANT CONNECT ON DATABASE \"{}\" TO {role}",
            database.replace('"', "\"\"")
        )];
        let schema = match integration {
            None => {
                statements.push(format!("GRANT USAGE ON SCHEMA public TO {role}"));
                for view in CONTRACT_VIEWS {
                    statements.push(format!("GRANT SELECT ON public.{view} TO {role}"));
                }
                "public".to_owned()
            }
            Some(integration) => {
                // The name's characters are letters, digits, - and _: safe in a literal.
                let schema = reader_schema(integration);
                statements.push(format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
                statements.push(format!("REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"));
                for view in CONTRACT_VIEWS {
                    statements.push(format!(
                        "CREATE OR REPLACE VIEW {schema}.{view} AS
                         SELECT * FROM public.{view} WHERE integration = '{integration}'"
                    ));
                    statements.push(format!("GRANT SELECT ON {schema}.{view} TO {role}"));
                }
                statements.push(format!("GRANT USAGE ON SCHEMA {schema} TO {role}"));
                statements.push(format!(
                    "ALTER ROLE {role} IN DATABASE \"{}\" SET search_path = {schema}",
                    database.replace('"', "\"\"")
                ));
                schema
            }
        };
        for statement in statements {
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(schema)
    }
}
