//! The parse thread alone: a report's plain CSV (a DBR, or one CUR part) summed at the daily
//! grain as `once` sums it, from memory (the file is read first), with no inflate and no
//! database. Where `bench/run.sh` tells how far a whole ingest is from inflate, this tells what
//! the parse side costs, and under `valgrind --tool=callgrind` counts its instructions
//! repeatably, whatever else the machine does.
//!
//! `cargo bench --bench parse -- FILE.csv [BUDGET_MIB]` (default 64 MiB: the default budget
//! shared by the default two reports at once)

use std::time::Instant;

use dbr_ingest::domain::Monitored;
use dbr_ingest::formats;
use dbr_ingest::report::aggregate::{Grain, MemoryBudget, ReportIdentity, ReportSums};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let path = args
        .first()
        .expect("usage: cargo bench --bench parse -- FILE.csv [BUDGET_MIB]");
    let budget: usize = args.get(1).map_or(64, |mib| mib.parse().expect("MiB"));
    let csv = std::fs::read(path).expect("the CSV");
    let identity = ReportIdentity {
        payer: None,
        period: None,
        marketplace: false,
    };
    let grain = Grain::Daily(MemoryBudget {
        bytes: budget << 20,
        temp_dir: std::env::temp_dir(),
    });
    let started = Instant::now();
    let sums = ReportSums::sum_csv(
        csv.as_slice(),
        &formats::EITHER,
        identity,
        Monitored::All,
        grain,
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"));
    let seconds = started.elapsed().as_secs_f64();
    let bytes = csv.len();
    println!(
        "parse-only: {} line items, {bytes} bytes in {seconds:.3} s ({:.3} s per GB), {} runs spilled",
        sums.rows().line_items,
        seconds / (bytes as f64 / 1e9),
        sums.runs()
    );
}
