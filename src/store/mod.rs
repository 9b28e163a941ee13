//! PostgreSQL: the ledger of report versions, the monitored accounts, and the costs of each
//! statement, replaced one statement at a time in a single transaction. Dashboards read the
//! views of `migrations/0004_views.sql` (and the later migrations that change them).

mod accounts;
mod integrations;
mod ledger;
mod nodelay;
mod readers;
mod statement;
mod status;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::MigrateDatabase;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, Postgres};

use crate::domain::{IntegrationName, NotAnAccountId, NotAnIntegrationName, StatementId};
use crate::failure::{Classify, FailureKind};
use crate::report::aggregate::DailyCostsError;

pub use accounts::{Added, MonitoredAccount};
pub use integrations::{Contents, Removed};
pub use ledger::{KnownReport, LedgerEntry, Status};
pub use readers::{CONTRACT_VIEWS, contract_view_names, integration_column};
pub use statement::{Replaced, ReportVersion};
pub use status::{
    AccountCost, FailedReport, IntegrationReports, Month, Reconciliation, StatusData,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {}", database_message(.0))]
    Database(#[from] sqlx::Error),
    #[error("database migrations: {}", migrate_message(.0))]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error(
        "the database has migrations up to {}, this version needs {latest}: run `dbr-ingest migrate`",
        applied.map_or("none".to_owned(), |applied| applied.to_string())
    )]
    MigrationsBehind { applied: Option<i64>, latest: i64 },
    #[error(
        "the database was migrated by a newer dbr-ingest (migration {applied}); this version knows \
         migrations up to {latest}: upgrade dbr-ingest"
    )]
    MigrationsAhead { applied: i64, latest: i64 },
    /// A contract view dropped or changed by hand.
    #[error("{0}: run `dbr-ingest migrate` to restore the contract views")]
    ViewsChanged(String),
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
            | StoreError::MigrationsAhead { .. }
            | StoreError::ViewsChanged(_)
            | StoreError::UnknownValue { .. }
            | StoreError::BadAccount(_)
            | StoreError::BadIntegration(_)
            | StoreError::Integration(_)
            | StoreError::IntegrationRemoved(_) => FailureKind::Configuration,
        }
    }
}

/// What PostgreSQL said, without the line of its own source code that sqlx appends ("at line
/// 948" means nothing to an operator).
fn database_message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(error) => error.message().to_owned(),
        other => other.to_string(),
    }
}

fn migrate_message(error: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match error {
        MigrateError::Execute(error) => database_message(error),
        MigrateError::ExecuteMigration(error, version) => {
            format!("migration {version}: {}", database_message(error))
        }
        other => other.to_string(),
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
        let options = plain_over_loopback(options, url.expose_secret()).application_name(&name);
        let connections = u32::try_from(concurrency * 2 + 2).unwrap_or(u32::MAX);
        let port = options.get_port();
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .after_connect(move |_, _| {
                Box::pin(async move {
                    nodelay::to_database_port(port);
                    Ok(())
                })
            })
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

    /// Whether the database exists (the server answers and has it).
    pub async fn exists(&self) -> Result<bool, StoreError> {
        match self.options.connect().await {
            Ok(connection) => {
                connection.close().await?;
                Ok(true)
            }
            Err(error) if sqlstate(&error).as_deref() == Some("3D000") => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Connects to an existing database, changing nothing (for `check`).
    pub async fn connect_existing(url: &SecretString) -> Result<Store, StoreError> {
        let store = Store::connect_lazy(url, 0)?;
        store.options.connect().await?.close().await?;
        Ok(store)
    }

    /// Makes the database ready for the service: creates it when it is missing, applies the
    /// migrations it lacks and restores the contract views. When every migration is applied
    /// and the views are whole, it changes nothing and needs no right beyond reading and
    /// writing the service's tables (see the README's least privilege: the owner runs
    /// `migrate`, the service needs DML only). A database migrated by a newer version is
    /// refused.
    pub async fn prepare(&self) -> Result<(), StoreError> {
        let (mut connection, _) = self.open_or_create().await?;
        match schema_ready(&mut connection).await {
            Ok(()) => Ok(()),
            Err(StoreError::MigrationsBehind { .. }) => {
                apply(&mut connection, Apply::MigrationsAndViews)
                    .await
                    .map(|_| ())
            }
            // Restored when this role may (the owner's). The service's role goes on ingesting
            // (the tables are whole) and says what is wrong; /readyz and `check` say it too.
            Err(changed @ StoreError::ViewsChanged(_)) => {
                match apply(&mut connection, Apply::Views).await {
                    Ok(_) => Ok(()),
                    Err(StoreError::Database(error))
                        if sqlstate(&error).as_deref() == Some("42501") =>
                    {
                        tracing::warn!(%changed, "dashboards cannot read what they expect");
                        Ok(())
                    }
                    Err(other) => Err(other),
                }
            }
            // No migration table yet.
            Err(StoreError::Database(error)) if sqlstate(&error).as_deref() == Some("42P01") => {
                apply(&mut connection, Apply::MigrationsAndViews)
                    .await
                    .map(|_| ())
            }
            Err(other) => Err(other),
        }
    }

    /// Creates the database when missing, applies the migrations not applied yet (and checks
    /// those that are), and makes the contract views and the readers' grants anew.
    pub async fn migrate(&self) -> Result<Migrated, StoreError> {
        let (mut connection, created) = self.open_or_create().await?;
        let applied = apply(&mut connection, Apply::MigrationsAndViews).await?;
        Ok(Migrated { created, applied })
    }

    /// A connection to the database, which is created first when missing (`true`). Another
    /// process creating it at the same moment counts as created.
    async fn open_or_create(&self) -> Result<(PoolConnection<Postgres>, bool), StoreError> {
        // A connection of its own: an unreachable server or a refused password says so at once,
        // where the pool would keep trying until its timeout. The pool's first connection opens
        // at the same time, and serves the checks and migrations: a new connection over TLS
        // waits out a delayed ACK in its handshake, before TCP_NODELAY can be set.
        match tokio::try_join!(self.options.connect(), self.pool.acquire()) {
            Ok((probe, first)) => {
                probe.close().await?;
                Ok((first, false))
            }
            Err(error) if sqlstate(&error).as_deref() == Some("3D000") => {
                let created = match sqlx::Postgres::create_database(self.url.expose_secret()).await
                {
                    Ok(()) => true,
                    // duplicate_database, or the unique index of pg_database when both
                    // creations passed the check for an existing name at once.
                    Err(error)
                        if matches!(sqlstate(&error).as_deref(), Some("42P04" | "23505")) =>
                    {
                        false
                    }
                    Err(error) => return Err(error.into()),
                };
                if created {
                    tracing::info!("created the database");
                }
                Ok((self.pool.acquire().await?, created))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Ends whatever this process's connections are doing (a COPY of millions of rows, a
    /// transaction waiting for a lock): their transactions roll back, so the statements they
    /// were replacing keep their data. For a prompt stop on SIGTERM. Returns how many were
    /// doing something (idle connections are closed too, and not counted).
    pub async fn cancel_in_flight(&self) -> Result<u64, StoreError> {
        let mut connection = self
            .options
            .clone()
            .application_name("dbr-ingest stopping")
            .connect()
            .await?;
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE busy AND ended)
             FROM (SELECT state <> 'idle' AS busy, pg_terminate_backend(pid) AS ended
                   FROM pg_stat_activity WHERE application_name = $1) AS connections",
        )
        .bind(self.options.get_application_name())
        .fetch_one(&mut connection)
        .await?;
        connection.close().await?;
        Ok(u64::try_from(ended).unwrap_or_default())
    }

    /// Whether the database answers (within two seconds) with every migration of this
    /// version applied, none of a newer one, and the contract views whole.
    pub async fn ready(&self) -> Result<(), StoreError> {
        tokio::time::timeout(READY_TIMEOUT, async {
            schema_ready(&mut *self.pool.acquire().await?).await
        })
        .await
        .map_err(|_| StoreError::Timeout(READY_TIMEOUT))?
    }

    /// Refuses a database that a newer version has migrated since: checked before each poll,
    /// so a replica left behind by an upgrade stops writing.
    pub async fn not_newer(&self) -> Result<(), StoreError> {
        let applied = async { migrations_applied(&mut *self.pool.acquire().await?).await };
        match applied.await {
            Err(error @ StoreError::MigrationsAhead { .. }) => Err(error),
            _ => Ok(()),
        }
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
/// statements are replaced on its connection, which saves opening another (over TLS, each new
/// connection waits out a delayed ACK in its handshake).
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

/// Without TLS to a server on this host, unless the URL (or `PGSSLMODE`) asks for a mode:
/// encrypting loopback traffic protects nothing, and its handshake costs each new connection a
/// delayed ACK (40 ms) before `TCP_NODELAY` can be set (see `nodelay.rs`). sqlx's default,
/// `prefer`, would try TLS first.
fn plain_over_loopback(options: PgConnectOptions, url: &str) -> PgConnectOptions {
    let loopback = match options.get_host() {
        "localhost" => true,
        host => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
    };
    let mode_given = std::env::var_os("PGSSLMODE").is_some()
        || url::Url::parse(url)
            .is_ok_and(|url| url.query_pairs().any(|(name, _)| name == "sslmode"));
    if loopback && !mode_given && options.get_socket().is_none() {
        options.ssl_mode(sqlx::postgres::PgSslMode::Disable)
    } else {
        options
    }
}

/// What `migrate` did.
pub struct Migrated {
    /// The database did not exist.
    pub created: bool,
    /// The versions of the migrations applied now.
    pub applied: Vec<i64>,
}

/// The contract views as they are now, applied after the migrations every time.
const VIEWS: &str = include_str!("views.sql");

/// The newest migration this version knows.
fn latest_migration() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// What [`apply`] does.
#[derive(PartialEq)]
enum Apply {
    MigrationsAndViews,
    /// Every migration is applied: only the views and grants are made again.
    Views,
}

/// Applies the migrations (or not), then the contract views and the readers' grants, holding
/// the lock that processes migrating the same database take turns on. Returns the versions of
/// the migrations applied.
async fn apply(connection: &mut PgConnection, what: Apply) -> Result<Vec<i64>, StoreError> {
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('dbr-ingest:migrate', 0))")
        .execute(&mut *connection)
        .await?;
    let done: Result<Vec<i64>, StoreError> = async {
        let applied = match what {
            Apply::MigrationsAndViews => run_migrations(&mut *connection).await?,
            Apply::Views => Vec::new(),
        };
        restore_views(&mut *connection).await?;
        Ok(applied)
    }
    .await;
    let unlocked =
        sqlx::query("SELECT pg_advisory_unlock(hashtextextended('dbr-ingest:migrate', 0))")
            .execute(&mut *connection)
            .await;
    let done = done?;
    unlocked?;
    Ok(done)
}

/// Applies the migrations not applied yet; returns their versions.
async fn run_migrations(connection: &mut PgConnection) -> Result<Vec<i64>, StoreError> {
    let before = match applied_versions(connection).await {
        Ok(versions) => versions,
        Err(StoreError::Database(error)) if sqlstate(&error).as_deref() == Some("42P01") => {
            Vec::new()
        }
        Err(error) => return Err(error),
    };
    let latest = latest_migration();
    if let Some(&applied) = before.iter().max()
        && applied > latest
    {
        return Err(StoreError::MigrationsAhead { applied, latest });
    }
    MIGRATOR.run(&mut *connection).await?;
    Ok(applied_versions(connection)
        .await?
        .into_iter()
        .filter(|version| !before.contains(version))
        .collect())
}

/// Makes the contract views as `views.sql` defines them, and grants the readers again, in one
/// transaction.
async fn restore_views(connection: &mut PgConnection) -> Result<(), StoreError> {
    let mut tx = connection.begin().await?;
    // A view changed by hand cannot be replaced with other columns: it goes first, with the
    // views on it (the readers' are made again below).
    for (view, problem) in view_problems(&mut tx).await? {
        if problem == ViewProblem::Columns {
            sqlx::query(AssertSqlSafe(format!("DROP VIEW public.{view} CASCADE")))
                .execute(&mut *tx)
                .await?;
        }
    }
    sqlx::raw_sql(VIEWS).execute(&mut *tx).await?;
    readers::grant_again(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

async fn applied_versions(connection: &mut PgConnection) -> Result<Vec<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(connection)
            .await?,
    )
}

/// Whether every migration of this version is applied, and none of a newer version.
async fn migrations_applied(connection: &mut PgConnection) -> Result<(), StoreError> {
    let latest = latest_migration();
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(connection)
            .await?;
    match applied {
        Some(applied) if applied > latest => Err(StoreError::MigrationsAhead { applied, latest }),
        Some(applied) if applied == latest => Ok(()),
        _ => Err(StoreError::MigrationsBehind { applied, latest }),
    }
}

/// [`migrations_applied`], and every contract view there with its columns in order.
async fn schema_ready(connection: &mut PgConnection) -> Result<(), StoreError> {
    migrations_applied(connection).await?;
    let problems: Vec<String> = view_problems(connection)
        .await?
        .into_iter()
        .map(|(view, problem)| match problem {
            ViewProblem::Missing => format!("view {view} is missing"),
            ViewProblem::Columns => format!("view {view} has other columns than the contract's"),
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::ViewsChanged(problems.join("; ")))
    }
}

#[derive(PartialEq)]
enum ViewProblem {
    Missing,
    /// Other columns, or in another order.
    Columns,
}

/// The contract views that `public` lacks, or has with other columns.
async fn view_problems(
    connection: &mut PgConnection,
) -> Result<Vec<(&'static str, ViewProblem)>, StoreError> {
    let found: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relkind = 'v'
         GROUP BY c.relname",
    )
    .fetch_all(connection)
    .await?;
    Ok(CONTRACT_VIEWS
        .iter()
        .filter_map(
            |(view, columns)| match found.iter().find(|(name, _)| name == view) {
                None => Some((*view, ViewProblem::Missing)),
                Some((_, actual)) if actual != columns => Some((*view, ViewProblem::Columns)),
                Some(_) => None,
            },
        )
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_connections_go_without_tls_unless_the_url_says() {
        let mode = |url: &str| {
            let options: PgConnectOptions = url.parse().unwrap();
            format!("{:?}", plain_over_loopback(options, url).get_ssl_mode())
        };
        assert_eq!(mode("postgres://u@127.0.0.1:5432/d"), "Disable");
        assert_eq!(mode("postgres://u@localhost/d"), "Disable");
        assert_eq!(mode("postgres://u@[::1]:5432/d"), "Disable");
        assert_eq!(mode("postgres://u@127.0.0.1/d?sslmode=require"), "Require");
        assert_eq!(mode("postgres://u@db.example.com/d"), "Prefer");
    }
}
