//! The integration tests, one binary (one link step): each module is one area of the service,
//! exercised through real parts (PostgreSQL, an S3 protocol server, real ZIP writers, the built
//! binary).

/// Helpers: the report generator, ZIP writers, test databases, the S3 server, a TCP proxy.
mod common;
/// Cost and Usage Reports: exact in every view, versions, bad input, one source per month.
mod cur;
/// What dashboards get: the Grafana board's queries on a seeded database, compose.yaml.
mod dashboards;
/// The dimensions derived at ingest and the views on them, FOCUS included, on known line items.
mod dimensions;
/// S3 failing (throttling, connections cut or stalled, objects replaced mid-read).
mod faults;
/// FOCUS 1.2 exports, as the FinOps Foundation's validator judges them.
mod focus;
/// Many integrations: buckets, credentials and monitored sets side by side, shared reads.
mod integrations;
/// What a newcomer meets: the README's examples on the bundled data, what operators type.
mod newcomer;
/// Operating the daemon: HTTP endpoint and metrics, readiness, replicas, stopping, `check`.
mod operate;
/// What a poll ingests, skips, replaces and refuses, as dashboards see it through the views.
mod poll;
/// The rollups: the costliest resources and tag values by name, the others summed; rewrites.
mod rollups;
/// The schema: migrations by several processes or a newer version, contract views, readers.
mod schema;
/// `dbr-ingest summarize` on every report variant and ZIP layout, and on broken archives.
mod summarize;
