//! dbr-ingest: AWS legacy Detailed Billing Reports to exact per-account costs.

pub mod report;
pub mod summarize;
