//! The `dbr-ingest` command line: thin glue over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dbr_ingest::check::ReadReports;
use dbr_ingest::config::{Settings, SourceSetting};
use dbr_ingest::domain::{AccountId, IntegrationName, Monitored, Period};
use dbr_ingest::ingest::{IntegrationPolled, PollOutcome, Sources, poll_integrations};
use dbr_ingest::secrets::redact;
use dbr_ingest::store::{Added, Store};
use dbr_ingest::telemetry;

#[path = "cli/integrations.rs"]
mod integrations;

#[derive(Parser)]
#[command(
    version,
    about = "AWS Detailed Billing Reports to exact per-account costs in PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Config {
    /// Configuration file (default: $DBR_CONFIG, else config/default.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct SourceArg {
    /// Where the `default` integration's reports come from: s3 (the configured bucket) or
    /// dir:PATH.
    #[arg(long, value_parser = SourceSetting::parse)]
    source: Option<SourceSetting>,
    /// Work on this integration only (`default` is the configuration's).
    #[arg(long)]
    integration: Option<IntegrationName>,
}

#[derive(Subcommand)]
enum Command {
    /// Poll once: ingest every integration's new or changed reports, then exit (non-zero if
    /// any report or integration failed).
    Once {
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        source: SourceArg,
    },
    /// Run the daemon: poll at start, then every poll interval, until SIGTERM or SIGINT.
    Run {
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        source: SourceArg,
    },
    /// Check the configuration, the database and the bucket; list the reports a poll would read
    /// and the objects it ignores, with why; read the smallest report to the end as `once` would.
    /// Changes nothing. Exit status 1 on any problem.
    Check {
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        source: SourceArg,
        /// Read every report a poll would read, not only the smallest.
        #[arg(long)]
        read_all: bool,
    },
    /// Create the database if missing and apply the migrations.
    Migrate {
        #[command(flatten)]
        config: Config,
    },
    /// Manage the monitored accounts table.
    Accounts {
        #[command(flatten)]
        config: Config,
        /// The integration whose accounts these are.
        #[arg(long, global = true, default_value = IntegrationName::DEFAULT)]
        integration: IntegrationName,
        #[command(subcommand)]
        action: AccountsAction,
    },
    /// Let an existing PostgreSQL role read the contract views and nothing else (for a
    /// dashboard); with --integration, only that integration's rows. Run by the database's
    /// owner, again after a `migrate`.
    GrantReader {
        #[command(flatten)]
        config: Config,
        /// An existing PostgreSQL role of the dashboard (CREATE ROLE … LOGIN first): not the
        /// service's own role, not a superuser.
        role: String,
        /// Only this integration's rows, through views of a schema of its own.
        #[arg(long)]
        integration: Option<IntegrationName>,
    },
    /// Manage the integrations: customers' buckets, credentials and monitored accounts.
    Integrations {
        #[command(flatten)]
        config: Config,
        // Boxed: its definition flags make it the largest command by far.
        #[command(subcommand)]
        action: Box<integrations::Action>,
    },
    /// Read local report files (.csv.zip or .csv) and print per-account totals and their
    /// reconciliation with the report's AccountTotal rows. No database involved.
    Summarize {
        /// Report files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Linked accounts to keep: account IDs separated by commas, or * for every account.
        #[arg(long, default_value = "*", value_parser = Monitored::parse_any_length)]
        monitored: Monitored,
        /// One JSON document per file, one per line, amounts as exact decimal strings.
        #[arg(long)]
        json: bool,
    },
    /// Write the stored costs out for other tools.
    Export {
        #[command(flatten)]
        config: Config,
        #[command(subcommand)]
        what: ExportWhat,
    },
}

#[derive(Subcommand)]
enum ExportWhat {
    /// A month of `focus_costs` as FOCUS 1.2 files (Parquet or CSV), one per integration and
    /// billing account, and a JSON manifest of them (rows, bytes, SHA-256), into DIR.
    Focus {
        /// The billing period: YYYY-MM.
        #[arg(long)]
        period: Period,
        /// Only this integration's files (default: every integration's).
        #[arg(long)]
        integration: Option<IntegrationName>,
        /// The files' format.
        #[arg(long, value_enum, default_value = "parquet")]
        format: dbr_ingest::export::Format,
        /// The directory the files and the manifest are written into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AccountsAction {
    /// List the monitored accounts: ID, origin (configuration or command), date added, name.
    List,
    /// Monitor an account.
    Add {
        #[arg(value_parser = AccountId::typed)]
        id: AccountId,
        /// A name to remember it by.
        #[arg(long)]
        name: Option<String>,
    },
    /// Stop monitoring an account; its costs leave the views at the next poll.
    Remove {
        #[arg(value_parser = AccountId::typed)]
        id: AccountId,
    },
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dbr-ingest: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(Cli::parse().command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("dbr-ingest: {}", redact(&error.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// glibc's malloc gives each thread that allocates its own arena, up to eight per core, and
/// memory freed in one arena serves no other. The thread that ranks the rollups while the
/// month is copied then grew the hostile month's peak RSS from 87 to 100 MB (and a high
/// cardinality month's from 84 to 95 MB), at the same speed. Two arenas: the process's
/// threads that allocate much (summing, and the ranking beside the copies) are rarely more.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets a malloc parameter, before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

type Failure = Box<dyn std::error::Error>;

/// Runs a command; `Ok(false)` when it ran but something in it failed (already reported).
async fn execute(command: Command) -> Result<bool, Failure> {
    match command {
        Command::Summarize {
            files,
            monitored,
            json,
        } => {
            dbr_ingest::progress::enable_bars();
            telemetry::init_logs(env("DBR_LOG_FORMAT").as_deref() == Some("json"));
            Ok(dbr_ingest::summarize::run(&files, &monitored, json).await)
        }
        Command::Check {
            config,
            source,
            read_all,
        } => {
            let only = source.integration.clone();
            let settings = load_for_source(&config, source, Bars::Off)?;
            let read = if read_all {
                ReadReports::All
            } else {
                ReadReports::Smallest
            };
            let checked = dbr_ingest::check::check(&settings, only.as_ref(), read).await;
            print!("{}", redact(&checked.text));
            Ok(checked.ok)
        }
        Command::Migrate { config } => {
            let settings = load(&config, Bars::Off)?;
            let store = Store::connect_lazy(&settings.database_url, 1)?;
            let migrated = store
                .migrate()
                .await
                .map_err(|e| at_database(e, &settings))?;
            let database = settings.database_display();
            if migrated.created {
                println!("created database {database}");
            }
            match (migrated.applied.first(), migrated.applied.last()) {
                (Some(first), Some(last)) => println!(
                    "applied migrations {first} to {last}; database {database} is up to date, contract views and readers' grants restored"
                ),
                _ => println!(
                    "database {database} was up to date; contract views and readers' grants restored"
                ),
            }
            Ok(true)
        }
        Command::Accounts {
            config,
            integration,
            action,
        } => {
            let settings = load(&config, Bars::Off)?;
            let configured = integration
                .is_default()
                .then_some(settings.monitored.as_ref())
                .flatten();
            accounts(&connect(&settings).await?, &integration, configured, action).await
        }
        Command::GrantReader {
            config,
            role,
            integration,
        } => {
            let settings = load(&config, Bars::Off)?;
            let store = connect(&settings).await?;
            let schema = store.grant_reader(&role, integration.as_ref()).await?;
            match integration {
                Some(integration) => println!(
                    "{role} reads {integration}'s rows of the contract views, in schema {schema} (its search path)"
                ),
                None => println!(
                    "{role} reads the contract views: {}",
                    dbr_ingest::store::contract_view_names()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
            Ok(true)
        }
        Command::Export {
            config,
            what:
                ExportWhat::Focus {
                    period,
                    integration,
                    format,
                    out,
                },
        } => {
            let settings = load(&config, Bars::Off)?;
            let store = Store::connect_existing(&settings.database_url)
                .await
                .map_err(|e| at_database(e, &settings))?;
            let manifest = dbr_ingest::export::export_focus(
                &store,
                period,
                integration.as_ref(),
                format,
                &out,
            )
            .await?;
            for file in &manifest.files {
                println!(
                    "{}: {} rows of integration {}, billing account {} ({} bytes)",
                    out.join(&file.file).display(),
                    file.rows,
                    file.integration,
                    file.billing_account_id,
                    file.bytes
                );
            }
            if manifest.files.is_empty() {
                println!("no statement for {period}: nothing to export");
            }
            Ok(true)
        }
        Command::Integrations { config, action } => {
            let settings = load(&config, Bars::Off)?;
            integrations::run(&connect(&settings).await?, &settings, *action).await
        }
        Command::Once { config, source } => {
            let only = source.integration.clone();
            let settings = load_for_source(&config, source, Bars::OnATerminal)?;
            let database = Store::connect_lazy(&settings.database_url, settings.concurrency)?;
            if !database
                .exists()
                .await
                .map_err(|e| at_database(e, &settings))?
            {
                dbr_ingest::ingest::check_before_creating(&settings, only.as_ref())?;
            }
            let store = connect(&settings).await?;
            let mut sources = Sources::new(settings.s3.read_timeout);
            let polled = poll_integrations(&mut sources, &store, &settings, only.as_ref()).await?;
            print_outcomes(polled)
        }
        Command::Run { config, source } => {
            let only = source.integration.clone();
            let settings = load_for_source(&config, source, Bars::Off)?;
            // The database may be down: the daemon waits for it, serving its health meanwhile.
            let store = Store::connect_lazy(&settings.database_url, settings.concurrency)?;
            let metrics = telemetry::init_metrics()?;
            dbr_ingest::daemon::run(&store, &settings, only, metrics).await?;
            Ok(true)
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

async fn connect(settings: &Settings) -> Result<Store, Failure> {
    Store::connect(&settings.database_url, settings.concurrency)
        .await
        .map_err(|e| at_database(e, settings))
}

/// A database error, naming the database (without its password).
fn at_database(error: impl std::fmt::Display, settings: &Settings) -> Failure {
    format!("{error} ({})", settings.database_display()).into()
}

/// Whether a command shows progress bars: only those a person watches, and only on a terminal.
#[derive(PartialEq)]
enum Bars {
    Off,
    OnATerminal,
}

/// Loads the settings, and starts the logs (and the bars they are routed through) as they say.
fn load(config: &Config, bars: Bars) -> Result<Settings, Failure> {
    let settings = Settings::load(config.config.as_deref(), env)?;
    if bars == Bars::OnATerminal {
        dbr_ingest::progress::enable_bars();
    }
    telemetry::init_logs(settings.json_logs);
    Ok(settings)
}

/// Loads the settings of a command that reads reports, with the source given on its command line.
fn load_for_source(config: &Config, source: SourceArg, bars: Bars) -> Result<Settings, Failure> {
    let mut settings = load(config, bars)?;
    if let Some(source) = source.source {
        settings.source = source;
    }
    Ok(settings)
}

async fn accounts(
    store: &Store,
    integration: &IntegrationName,
    configured: Option<&Monitored>,
    action: AccountsAction,
) -> Result<bool, Failure> {
    match action {
        AccountsAction::List => {
            for account in store.monitored_accounts(integration).await? {
                let name = account.name.as_deref().unwrap_or("");
                let added = account.added_at.format("%Y-%m-%d");
                println!("{}\t{}\t{added}\t{name}", account.id, account.origin);
            }
        }
        AccountsAction::Add { id, name } => {
            let added = store
                .add_monitored_account(integration, &id, name.as_deref())
                .await?;
            match added {
                Added::New => println!("{id} added"),
                Added::Renamed { before: None } => {
                    println!(
                        "{id} was already monitored; now named {:?}",
                        name.unwrap_or_default()
                    )
                }
                Added::Renamed {
                    before: Some(before),
                } => println!(
                    "{id} was already monitored; renamed from {before:?} to {:?}",
                    name.unwrap_or_default()
                ),
                Added::Unchanged => println!("{id} was already monitored"),
            }
        }
        AccountsAction::Remove { id } => {
            let removed = store.remove_monitored_account(integration, &id).await?;
            println!(
                "{id} {}",
                if removed {
                    "removed"
                } else {
                    "was not in the table"
                }
            );
            if matches!(configured, Some(Monitored::Only(ids)) if ids.contains(&id)) {
                println!(
                    "{id} is in the configuration too: the next poll adds it again unless it is removed there"
                );
            }
        }
    }
    Ok(true)
}

/// Prints what each integration's poll did; `Ok(false)` when any report or integration
/// failed. A deployment of the `default` integration alone prints as it always has, and a poll
/// that could not run at all is its error.
fn print_outcomes(polled: Vec<IntegrationPolled>) -> Result<bool, Failure> {
    let alone = polled.len() == 1 && polled[0].integration.is_default();
    let mut ok = true;
    for IntegrationPolled {
        integration,
        outcome,
    } in polled
    {
        match outcome {
            Ok(outcome) => {
                ok &= outcome.failed.is_empty();
                let name = (!alone).then(|| format!("[{integration}] "));
                print_outcome(name.as_deref().unwrap_or(""), &outcome);
            }
            Err(error) if alone => return Err(error.into()),
            Err(error) => {
                ok = false;
                println!(
                    "failed    integration {integration}: {}",
                    redact(&error.to_string())
                );
            }
        }
    }
    Ok(ok)
}

fn print_outcome(name: &str, outcome: &PollOutcome) {
    for report in &outcome.ingested {
        println!(
            "{name}ingested  {} ({}): {}",
            report.object_key, report.reason, report.summary
        );
    }
    for failed in &outcome.failed {
        println!(
            "{name}failed    {} ({} failure): {}",
            failed.object_key,
            failed.kind,
            redact(&failed.error)
        );
    }
    // A directory source sends no request: it says nothing of S3.
    let requests = match outcome.s3_requests {
        0 => String::new(),
        n => format!(", {n} S3 requests"),
    };
    println!(
        "{name}{} ingested, {} failed, {} unchanged, {} claimed by another process, {} other objects ignored{requests}",
        outcome.ingested.len(),
        outcome.failed.len(),
        outcome.unchanged,
        outcome.claimed_elsewhere,
        outcome.ignored,
    );
}
