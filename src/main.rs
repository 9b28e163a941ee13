//! The `dbr-ingest` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dbr_ingest::report::aggregate::Monitored;

#[derive(Parser)]
#[command(
    version,
    about = "AWS Detailed Billing Reports to exact per-account costs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read local report files (.csv.zip or .csv) and print per-account totals and their
    /// reconciliation with the report's AccountTotal rows.
    Summarize {
        /// Report files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Linked accounts to keep: account IDs separated by commas, or * for every account.
        #[arg(long, default_value = "*", value_parser = Monitored::parse)]
        monitored: Monitored,
        /// One JSON document per file, one per line, amounts as exact decimal strings.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dbr-ingest: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let succeeded = match Cli::parse().command {
        Command::Summarize {
            files,
            monitored,
            json,
        } => runtime.block_on(dbr_ingest::summarize::run(&files, &monitored, json)),
    };
    if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
