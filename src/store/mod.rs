//! PostgreSQL: the ledger of report versions, the monitored accounts, and the costs of each
//! statement, replaced one statement at a time in a single transaction. Dashboards read the
//! views of `migrations/0004_views.sql` (and the later migrations that change them).

mod accounts;
mod integrations;
mod ledger;
mod readers;
mod statement;
mod status;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::MigrateDatabase;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgExecutor, Postgres};

use crate::domain::{IntegrationName, NotAnAccountId, NotAnIntegrationName, StatementId};
use crate::failure::{Classify, FailureKind};
use crate::report::aggregate::DailyCostsError;

pub use accounts::MonitoredAccount;
pub use integrations::{Contents, Removed};
pub use ledger::{LedgerEntry, Status};
pub use readers::CONTRACT_VIEWS;
pub use statement::ReportVersion;
pub use status::{
    AccountCost, FailedReport, IntegrationReports, Month, Reconciliation, StatusData,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("migrations applied up to {applied:?}, this version needs {latest:?}")]
    MigrationsBehind {
        applied: Option<i64>,
        latest: Option<i64>,
    },
    /// A row this version cannot read: written by a newer version, or by hand.
    #[error("the {table} table holds {value:?}, which this version does not know")]
    UnknownValue { table: &'static str, value: String },
    #[error("the monitored_accounts table: {0}")]
    BadAccount(#[from] NotAnAccountId),
    #[error("the integrations table: {0}")]
    BadIntegration(#[from] NotAnIntegrationName),
    /// `integrations add` of a name in use, `update` of one that is not.
    #[error("{0}")]
    Integration(String),
    /// Its report was read, then the integration was gone: nothing is stored for it.
    #[error("integration {0} was removed while its report was read")]
    IntegrationRemoved(IntegrationName),
    /// Queries on `daily_costs` held it through every try of the swap: nothing was written.
    #[error(
        "other sessions held daily_costs through {tries} tries of {each} to swap the month in; \
         the month keeps its data, tried again at the next poll"
    )]
    SwapTimedOut { tries: u32, each: &'static str },
    #[error(transparent)]
    DailyCosts(#[from] DailyCostsError),
}

impl Classify for StoreError {
    fn kind(&self) -> FailureKind {
        match self {
            StoreError::Database(error) => database_failure_kind(error),
            StoreError::Timeout(_) | StoreError::SwapTimedOut { .. } => FailureKind::Transient,
            StoreError::DailyCosts(error) => error.kind(),
            StoreError::Migrate(_)
            | StoreError::MigrationsBehind { .. }
            | StoreError::UnknownValue { .. }
            | StoreError::BadAccount(_)
            | StoreError::BadIntegration(_)
            | StoreError::Integration(_)
            | StoreError::IntegrationRemoved(_) => FailureKind::Configuration,
        }
    }
}

/// The SQLSTATE of an error PostgreSQL answered with.
fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(error) => error.code().map(String::from),
        _ => None,
    }
}

/// By SQLSTATE: a value PostgreSQL refuses (class 22, data exception: a NUL byte, a number out
/// of range) came from the report; rights, passwords and missing databases or tables are an
/// operator's to fix; the rest (connections, deadlocks, shutdowns) passes.
fn database_failure_kind(error: &sqlx::Error) -> FailureKind {
    match error {
        sqlx::Error::Database(_) => match sqlstate(error).as_deref() {
            Some(code) if code.starts_with("22") => FailureKind::Content,
            Some(code)
                if code.starts_with("28")
                    || code.starts_with("3D")
                    || code.starts_with("3F")
                    || code == "42501"
                    || code == "42P01" =>
            {
                FailureKind::Configuration
            }
            _ => FailureKind::Transient,
        },
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => FailureKind::Configuration,
        _ => FailureKind::Transient,
    }
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// This process's connections carry this name, so that it can cancel their statements.
    options: PgConnectOptions,
    url: SecretString,
}

impl Store {
    /// A store whose connections open when first needed: `run` starts (and serves `/readyz`)
    /// without its database. Only a URL that cannot be parsed fails here. `concurrency` reports
    /// at a time each hold a claim (on which the month is replaced), beside the ledger's reads.
    pub fn connect_lazy(url: &SecretString, concurrency: usize) -> Result<Store, StoreError> {
        let name = format!(
            "dbr-ingest {} {:08x}",
            std::process::id(),
            fastrand::u32(..)
        );
        let options: PgConnectOptions = url.expose_secret().parse()?;
        let options = options.application_name(&name);
        let connections = u32::try_from(concurrency * 2 + 2).unwrap_or(u32::MAX);
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .connect_lazy_with(options.clone());
        Ok(Store {
            pool,
            options,
            url: url.clone(),
        })
    }

    /// Connects and makes the database ready: see [`Store::prepare`].
    pub async fn connect(url: &SecretString, concurrency: usize) -> Result<Store, StoreError> {
        let store = Store::connect_lazy(url, concurrency)?;
        store.prepare().await?;
        Ok(store)
    }

    /// Connects to an existing database, changing nothing (for `check`).
    pub async fn connect_existing(url: &SecretString) -> Result<Store, StoreError> {
        let store = Store::connect_lazy(url, 0)?;
        store.options.connect().await?.close().await?;
        Ok(store)
    }

    /// Makes the database ready for the service: creates it when it is missing and applies the
    /// migrations it lacks. When every migration is applied already, it changes nothing and
    /// needs no right beyond reading and writing the service's tables (see the README's least
    /// privilege: the owner runs `migrate`, the service needs DML only).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        // A connection of its own: an unreachable server or a refused password says so at once,
        // where the pool would keep trying until its timeout. The pool's first connection opens
        // at the same time, and serves the checks and migrations below: each new connection
        // costs about 90 ms over TLS (sqlx 0.9.0 leaves Nagle on).
        let mut connection = match tokio::try_join!(self.options.connect(), self.pool.acquire()) {
            Ok((probe, first)) => {
                probe.close().await?;
                first
            }
            Err(error) if sqlstate(&error).as_deref() == Some("3D000") => {
                sqlx::Postgres::create_database(self.url.expose_secret()).await?;
                tracing::info!("created the database");
                self.pool.acquire().await?
            }
            Err(error) => return Err(error.into()),
        };
        match migrations_applied(&mut *connection).await {
            Ok(()) => return Ok(()),
            // No migration table yet, or not every migration applied.
            Err(StoreError::Database(error)) if sqlstate(&error).as_deref() == Some("42P01") => {}
            Err(StoreError::MigrationsBehind { .. }) => {}
            Err(other) => return Err(other),
        }
        MIGRATOR.run(&mut *connection).await?;
        Ok(())
    }

    /// Applies the migrations not applied yet (and checks those that are).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Ends whatever this process's connections are doing (a COPY of millions of rows, a
    /// transaction waiting for a lock): their transactions roll back, so the statements they
    /// were replacing keep their data. For a prompt stop on SIGTERM.
    pub async fn cancel_in_flight(&self) -> Result<u64, StoreError> {
        let mut connection = self
            .options
            .clone()
            .application_name("dbr-ingest stopping")
            .connect()
            .await?;
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
             FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(self.options.get_application_name())
        .fetch_one(&mut connection)
        .await?;
        connection.close().await?;
        Ok(u64::try_from(ended).unwrap_or_default())
    }

    /// Whether the database answers (within two seconds) with every migration applied.
    pub async fn ready(&self) -> Result<(), StoreError> {
        tokio::time::timeout(READY_TIMEOUT, migrations_applied(&self.pool))
            .await
            .map_err(|_| StoreError::Timeout(READY_TIMEOUT))?
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection to claim statements on; see [`Claim::try_claim`]. Unless the claim is
    /// released, the connection is closed when the claim is dropped: a crashed replica's, or a
    /// cancelled poll's, claims go with their connections.
    pub async fn claims(&self) -> Result<Claim, StoreError> {
        Ok(Claim {
            connection: self.pool.acquire().await?,
            released: false,
        })
    }
}

/// Held while a report is being ingested, for one or more integrations that share it. The
/// statements are replaced on its connection, which saves opening another (sqlx 0.9 leaves
/// Nagle's algorithm on, so each new connection waits out a few delayed ACKs).
pub struct Claim {
    connection: PoolConnection<Postgres>,
    /// Every claim given up, so the connection may serve again.
    released: bool,
}

impl Claim {
    /// Claims an integration's `statement` on this connection, or says `false` when another
    /// process holds it. The claim is a session advisory lock, held until the claim is dropped
    /// or released.
    pub async fn try_claim(
        &mut self,
        integration: &IntegrationName,
        statement: &StatementId,
    ) -> Result<bool, StoreError> {
        let claimed: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(lock_name("claim", integration, statement))
                .fetch_one(&mut *self.connection)
                .await?;
        Ok(claimed)
    }

    /// Gives up every claim and returns the connection to the pool for the next report:
    /// opening one costs more than a small report's whole ingest.
    pub async fn release(mut self) {
        let unlocked = sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut *self.connection)
            .await;
        self.released = unlocked.is_ok();
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.released {
            self.connection.close_on_drop();
        }
    }
}

/// Whether every migration of this version is applied.
async fn migrations_applied(executor: impl PgExecutor<'_>) -> Result<(), StoreError> {
    let latest = MIGRATOR.iter().map(|m| m.version).max();
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(executor)
            .await?;
    if applied < latest {
        return Err(StoreError::MigrationsBehind { applied, latest });
    }
    Ok(())
}

/// The name of an advisory lock on an integration's `statement`.
fn lock_name(purpose: &str, integration: &IntegrationName, statement: &StatementId) -> String {
    format!(
        "dbr-ingest:{purpose}:{integration}:{}:{}:{}",
        statement.payer,
        statement.entity_str(),
        statement.period
    )
}

/// Counts and sizes as PostgreSQL `bigint`.
fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
