//! `dbr-ingest check`: tries every part a poll needs, in order, and says what to fix, for every
//! integration (or the one named). It reads the smallest report (or all, with `--read-all`) to
//! the end through the same pipeline as `once`, so it fails where `once` would (a payer
//! mismatch, a CRC mismatch, a bad amount). It changes nothing: no database is created, no
//! migration applied, no report stored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::config::Settings;
use crate::domain::{AccountId, IntegrationName, Monitored, StatementId};
use crate::formats::Format;
use crate::ingest::{PollError, integrations_to_poll, read_version, sort_listing};
use crate::integration::Integration;
use crate::source::{S3Context, Source};
use crate::store::Store;

/// Which reports `check` reads to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadReports {
    /// The smallest: quick, and it tries every stage.
    Smallest,
    All,
}

/// What `check` found: the report, and whether everything works.
pub struct Checked {
    pub text: String,
    pub ok: bool,
}

/// Checks the integrations a poll would work on, or only `only`.
pub async fn check(
    settings: &Settings,
    only: Option<&IntegrationName>,
    read: ReadReports,
) -> Checked {
    let mut text = String::new();
    let ok = run(settings, only, read, &mut text).await.is_ok();
    Checked { text, ok }
}

/// A failed step, already written to the report.
struct Failed;

macro_rules! say {
    ($text:expr, $($arg:tt)*) => { writeln!($text, $($arg)*).expect("writing to a String") };
}

fn fail(text: &mut String, message: impl std::fmt::Display) -> Failed {
    say!(text, "FAILED  {message}");
    Failed
}

async fn run(
    settings: &Settings,
    only: Option<&IntegrationName>,
    read: ReadReports,
    text: &mut String,
) -> Result<(), Failed> {
    let store = database(settings, text).await?;
    let integrations = integrations_to_poll(settings, &store, only)
        .await
        .map_err(|e| fail(text, e))?;
    let context = S3Context::new(settings.s3.read_timeout);
    let several = integrations.len() > 1;
    let mut all_ok = true;
    for integration in &integrations {
        if several {
            say!(text, "integration {}:", integration.name);
        }
        let source = Source::for_integration(&integration.source, &context).await;
        all_ok &= check_integration(settings, &store, integration, &source, read, text)
            .await
            .is_ok();
    }
    if all_ok { Ok(()) } else { Err(Failed) }
}

async fn database(settings: &Settings, text: &mut String) -> Result<Store, Failed> {
    let database = settings.database_display();
    let store = Store::connect_existing(&settings.database_url)
        .await
        .map_err(|e| fail(text, format!("database {database}: {e} (is PostgreSQL running? `dbr-ingest migrate` creates the database)")))?;
    store
        .ready()
        .await
        .map_err(|e| fail(text, format!("database {database}: {e}")))?;
    say!(
        text,
        "ok      database {database}: reachable, migrations applied, contract views whole"
    );
    Ok(store)
}

async fn check_integration(
    settings: &Settings,
    store: &Store,
    integration: &Integration,
    source: &Source,
    read: ReadReports,
    text: &mut String,
) -> Result<(), Failed> {
    say!(text, "ok      configuration: source {}", integration.source);
    let table = store
        .monitored_accounts(&integration.name)
        .await
        .map_err(|e| fail(text, e))?;
    let stored = table.len();
    // What a poll would use, without copying the configuration into the table as a poll does.
    let added_by_command = table
        .into_iter()
        .filter(|account| account.origin == "command")
        .map(|account| account.id);
    let monitored = match &integration.monitored {
        Some(Monitored::All) => {
            say!(text, "ok      monitored accounts: every account (*)");
            Monitored::All
        }
        Some(Monitored::Only(ids)) => {
            say!(
                text,
                "ok      monitored accounts: {} configured, {stored} in the monitored_accounts table",
                ids.len()
            );
            Monitored::Only(ids.iter().cloned().chain(added_by_command).collect())
        }
        None if stored > 0 => {
            say!(
                text,
                "ok      monitored accounts: {stored} in the monitored_accounts table"
            );
            Monitored::Only(added_by_command.collect::<BTreeSet<AccountId>>())
        }
        None if integration.name.is_default() => {
            return Err(fail(text, PollError::NoMonitoredAccounts));
        }
        None => {
            return Err(fail(
                text,
                PollError::NoMonitoredAccountsOf(integration.name.clone()),
            ));
        }
    };

    let listed = source
        .list(crate::formats::look_in)
        .await
        .map_err(|e| fail(text, e))?;
    say!(
        text,
        "ok      listing {}: {} objects",
        source.location(),
        listed.objects.len() + listed.passed_over.len()
    );
    let listing = sort_listing(source, listed, integration.report_name.as_deref()).await;
    let mut statements: BTreeMap<StatementId, Vec<String>> = BTreeMap::new();
    for version in &listing.chosen {
        let what = match version.format {
            Format::Dbr => version.key.clone(),
            Format::Cur => format!(
                "{} (Cost and Usage Report {}, {} parts)",
                version.key,
                version.variant,
                version.parts.len() + version.missing.len()
            ),
        };
        statements
            .entry(version.statement.clone())
            .or_default()
            .push(what);
    }
    say!(text, "        reports to read, by payer and period:");
    for (statement, keys) in &statements {
        say!(text, "          {statement}  {}", keys.join(", "));
    }
    if !listing.ignored.is_empty() {
        say!(text, "        ignored objects:");
        for (key, reason) in &listing.ignored {
            say!(text, "          {key}: {reason}");
        }
    }
    let mut all_read = true;
    for (key, error) in &listing.unreadable {
        fail(text, format!("reading {key}: {error}"));
        all_read = false;
    }
    let Some(smallest) = listing.chosen.iter().min_by_key(|v| v.size()) else {
        return Err(fail(
            text,
            format!(
                "no detailed billing report under {}, nor a Cost and Usage Report: check the bucket and DBR_PREFIX",
                source.location()
            ),
        ));
    };
    let to_read = match read {
        ReadReports::Smallest => std::slice::from_ref(smallest),
        ReadReports::All => &listing.chosen[..],
    };
    for version in to_read {
        let key = &version.key;
        match read_version(source, version, &monitored, &settings.memory_budget).await {
            Ok(sums) => say!(text, "ok      reading {key}: {}", sums.summary()),
            Err(error) => {
                fail(text, format!("reading {key}: {error}"));
                all_read = false;
            }
        }
    }
    if all_read { Ok(()) } else { Err(Failed) }
}
