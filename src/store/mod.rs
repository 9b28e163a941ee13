//! PostgreSQL: the ledger of report versions, the monitored accounts, and the costs of each
//! statement, replaced one statement at a time in a single transaction. Dashboards read the
//! views of `migrations/0004_views.sql`.

mod accounts;
mod ledger;
mod statement;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgPool, PgPoolOptions};

pub use accounts::MonitoredAccount;
pub use ledger::{LedgerEntry, Status};
pub use statement::ReportVersion;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects, creating the database when it does not exist yet, and applies the migrations.
    pub async fn connect(url: &SecretString) -> Result<Store, StoreError> {
        let url = url.expose_secret();
        if !sqlx::Postgres::database_exists(url).await? {
            sqlx::Postgres::create_database(url).await?;
            tracing::info!("created the database");
        }
        let pool = PgPoolOptions::new().max_connections(4).connect(url).await?;
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Counts and sizes as PostgreSQL `bigint`.
fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
