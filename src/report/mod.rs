//! One report version, from its objects' bytes to per-account sums: the pipeline stages every
//! format shares, in the order bytes flow through them (each format's own knowledge is in
//! `formats`). No database and no S3 here.

pub mod aggregate;
pub mod dimensions;
pub mod read;
pub mod records;
pub mod rows;
pub mod usage;
pub mod zip;

/// How many cases each property test runs: `PROPTEST_CASES` when set (for a long run, see the
/// README), else `default`.
#[cfg(test)]
pub(crate) fn proptest_config(default: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default);
    proptest::test_runner::Config::with_cases(cases)
}
