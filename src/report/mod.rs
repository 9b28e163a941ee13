//! One report, from its object's bytes to per-account sums: the pipeline stages in the order
//! bytes flow through them. No database and no S3 here.

pub mod aggregate;
pub mod key;
pub mod read;
pub mod records;
pub mod rows;
pub mod zip;
