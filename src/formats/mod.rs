//! The billing report formats the service reads, one module each: how a format's objects look
//! in a listing, how they group into report versions (a DBR version is one object; a CUR
//! version is a manifest and the parts it lists), how its header maps to the line-item fields
//! the sums need ([`Layout`]), and what it offers to reconcile with (a DBR's footer; nothing in a
//! CUR). Everything after this (`report`, `store`) works with a [`Version`] and a [`Layout`] and
//! knows no format's column names.
//!
//! An enum rather than a trait: the formats are few and known, a poll matches on them in one
//! place (planning), and a new format (CUR 2.0, FOCUS exports) is a new variant and module that
//! the compiler makes every match handle.

pub mod cur;
pub mod dbr;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::{ObjectMeta, StatementId};
use crate::report::read::Compression;
use crate::report::rows::Layout;
use crate::source::Listing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// The legacy Detailed Billing Report.
    Dbr,
    /// The Cost and Usage Report, version 1.0 (CSV).
    Cur,
}

impl Format {
    /// As stored in the ledger's and statements' `format` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Dbr => "dbr",
            Format::Cur => "cur",
        }
    }

    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "dbr" => Some(Format::Dbr),
            "cur" => Some(Format::Cur),
            _ => None,
        }
    }

    pub fn layout(self) -> &'static Layout {
        match self {
            Format::Dbr => &dbr::LAYOUT,
            Format::Cur => &cur::LAYOUT,
        }
    }
}

/// A DBR or a CUR part, as its header says: for a file whose name does not tell (`summarize`).
pub const EITHER: Layout = Layout {
    name: "a detailed billing report, nor a Cost and Usage Report",
    header_hint: "RecordType and PayerAccountId, or lineItem/UsageAccountId",
    header_within: dbr::LAYOUT.header_within,
    is_header: |record| (dbr::LAYOUT.is_header)(record) || (cur::LAYOUT.is_header)(record),
    map: |names| {
        if names.iter().any(|name| name.starts_with("lineItem/")) {
            (cur::LAYOUT.map)(names)
        } else {
            (dbr::LAYOUT.map)(names)
        }
    },
    // `summarize` reads it, per account.
    split_while_unpacking: false,
};

/// One object of a version, and how its bytes are packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub object: ObjectMeta,
    pub compression: Compression,
}

/// One version of one report: what replaces its statement when it is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub format: Format,
    pub statement: StatementId,
    /// Its key in the ledger: the DBR's object key; the CUR period's manifest key.
    pub key: String,
    /// What tells it from the next version: the DBR object's ETag; the CUR's `assemblyId`.
    pub identity: String,
    /// DBR: `plain` or `with-resources-and-tags`; CUR: the report's name.
    pub variant: String,
    /// The objects read, in order.
    pub parts: Vec<Part>,
    /// Parts its manifest names that the listing lacks (AWS may be delivering them).
    pub missing: Vec<String>,
    /// The CUR manifest that names it.
    pub manifest: Option<ObjectMeta>,
    /// Billed by AWS Marketplace as a whole (a DBR's `AWSMarketplace` entity).
    pub marketplace: bool,
}

impl Version {
    /// A DBR version: its one object.
    pub fn of_dbr(listed: dbr::ListedReport) -> Version {
        let report = listed.report;
        Version {
            format: Format::Dbr,
            statement: report.statement(),
            key: listed.object.key.clone(),
            identity: listed.object.etag.clone(),
            variant: report.variant.as_str().to_owned(),
            marketplace: report.is_marketplace(),
            parts: vec![Part {
                compression: Compression::Zip,
                object: listed.object,
            }],
            missing: Vec::new(),
            manifest: None,
        }
    }

    /// The bytes of its parts: with the identity, what tells a changed version.
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|part| part.object.size).sum()
    }

    /// When its newest object was written.
    pub fn last_modified(&self) -> Option<DateTime<Utc>> {
        self.objects().filter_map(|o| o.last_modified).max()
    }

    /// Every object it was listed with: the manifest first, then the parts.
    pub fn objects(&self) -> impl Iterator<Item = &ObjectMeta> {
        self.manifest
            .iter()
            .chain(self.parts.iter().map(|part| &part.object))
    }
}

/// A listing sorted by format: the DBR chosen per statement, the CUR manifests (each to be
/// read for its version), every object by key (CUR parts are looked up there), and what is
/// ignored with the reason.
#[derive(Debug, Default)]
pub struct Recognised {
    pub dbr: Vec<dbr::ListedReport>,
    pub manifests: Vec<(cur::ManifestKey, ObjectMeta)>,
    pub objects: HashMap<String, ObjectMeta>,
    pub ignored: Vec<(String, String)>,
}

/// Where a listing of a bucket looks in a folder (see [`crate::source::LookIn`]): in a CUR's
/// billing period, at that report's own objects alone; everywhere else, at everything (a DBR
/// may lie in any folder).
pub fn look_in(folder: &str) -> String {
    cur::look_in(folder).unwrap_or_else(|| folder.to_owned())
}

/// Sorts a listing out by format.
pub fn recognise(listing: Listing) -> Recognised {
    let mut recognised = Recognised {
        ignored: listing.passed_over,
        ..Recognised::default()
    };
    let mut reports = Vec::new();
    for object in listing.objects {
        match dbr::ReportKey::parse(&object.key) {
            Ok(report) => reports.push(dbr::ListedReport {
                report,
                object: object.clone(),
            }),
            Err(not_dbr) => {
                if let Some(named) = cur::ManifestKey::parse(&object.key) {
                    recognised.manifests.push((named, object.clone()));
                } else if cur::ManifestKey::is_report_object(&object.key) {
                    recognised.ignored.push((
                        object.key.clone(),
                        "in a Cost and Usage Report's folder: read when its manifest names it"
                            .into(),
                    ));
                } else {
                    recognised.ignored.push((
                        object.key.clone(),
                        format!("not a detailed billing report: {not_dbr}; nor a Cost and Usage Report's manifest"),
                    ));
                }
            }
        }
        recognised.objects.insert(object.key.clone(), object);
    }
    let selection = dbr::choose(reports);
    recognised.ignored.extend(
        selection
            .passed_over
            .into_iter()
            .map(|(listed, reason)| (listed.object.key, reason)),
    );
    recognised.dbr = selection.ingest;
    recognised
}
