//! dbr-ingest: AWS billing reports (the legacy Detailed Billing Report, the Cost and Usage
//! Report) to exact per-account costs.

pub mod check;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod export;
pub mod failure;
pub mod formats;
pub mod http;
pub mod ingest;
pub mod integration;
pub mod progress;
pub mod report;
pub mod secrets;
pub mod source;
pub mod status;
pub mod store;
pub mod summarize;
pub mod telemetry;
