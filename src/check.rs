//! `dbr-ingest check`: tries every part a poll needs, in order, and says what to fix. It changes
//! nothing: no database is created, no migration applied, no report ingested.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::Settings;
use crate::domain::{Monitored, StatementId};
use crate::ingest::sort_listing;
use crate::source::Source;
use crate::store::Store;

/// What `check` found: the report, and whether everything works.
pub struct Checked {
    pub text: String,
    pub ok: bool,
}

pub async fn check(settings: &Settings, source: &Source) -> Checked {
    let mut text = String::new();
    let ok = run(settings, source, &mut text).await.is_ok();
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

async fn run(settings: &Settings, source: &Source, text: &mut String) -> Result<(), Failed> {
    say!(text, "ok      configuration: source {}", source.location());

    let database = settings.database_display();
    let store = Store::connect_existing(&settings.database_url)
        .await
        .map_err(|e| fail(text, format!("database {database}: {e} (is PostgreSQL running? `dbr-ingest migrate` creates the database)")))?;
    store.ready().await.map_err(|e| {
        fail(
            text,
            format!("database {database}: {e}: run `dbr-ingest migrate`"),
        )
    })?;
    say!(
        text,
        "ok      database {database}: reachable, migrations applied"
    );

    let stored = store
        .monitored_accounts()
        .await
        .map_err(|e| fail(text, e))?
        .len();
    match &settings.monitored {
        Some(Monitored::All) => say!(text, "ok      monitored accounts: every account (*)"),
        Some(Monitored::Only(ids)) => {
            say!(
                text,
                "ok      monitored accounts: {} configured, {stored} in the monitored_accounts table",
                ids.len()
            )
        }
        None if stored > 0 => say!(
            text,
            "ok      monitored accounts: {stored} in the monitored_accounts table"
        ),
        None => {
            return Err(fail(
                text,
                "no monitored accounts: set DBR_MONITORED_ACCOUNTS, or add some with `dbr-ingest accounts add ID`",
            ));
        }
    }

    let objects = source.list().await.map_err(|e| fail(text, e))?;
    say!(
        text,
        "ok      listing {}: {} objects",
        source.location(),
        objects.len()
    );
    let listing = sort_listing(objects);
    let mut statements: BTreeMap<StatementId, Vec<&str>> = BTreeMap::new();
    for listed in &listing.chosen {
        statements
            .entry(listed.report.statement())
            .or_default()
            .push(&listed.object.key);
    }
    say!(
        text,
        "        detailed billing reports to read, by payer and period:"
    );
    for (statement, keys) in &statements {
        say!(text, "          {statement}  {}", keys.join(", "));
    }
    if !listing.ignored.is_empty() {
        say!(text, "        ignored objects:");
        for (key, reason) in &listing.ignored {
            say!(text, "          {key}: {reason}");
        }
    }
    let Some(first) = listing.chosen.first() else {
        return Err(fail(
            text,
            format!(
                "no detailed billing report under {}: check the bucket and DBR_PREFIX",
                source.location()
            ),
        ));
    };
    source
        .open(&first.object)
        .await
        .map_err(|e| fail(text, e))?;
    say!(text, "ok      reading {}", first.object.key);
    Ok(())
}
