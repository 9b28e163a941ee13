//! CSV as PostgreSQL's COPY writes it, with a header line, passed through to the file.

use super::{Column, Encoder, ExportError, Hashed, Kind, Written, write_error};
use std::io::Write;
use std::path::PathBuf;

/// `columns` for `COPY … (FORMAT csv)`, each decimal written with at least one decimal place
/// (`1.0`, not `1`): the same number, which a reader inferring types from CSV values (as the
/// FOCUS validator does) cannot take for an integer.
pub(super) fn select_list(columns: &[Column]) -> String {
    super::select_list(columns, |kind| match kind {
        Kind::Decimal => "round({name}, greatest(scale({name}), 1)) AS {name}",
        _ => "{name}",
    })
}

pub(super) struct CsvFile {
    out: Hashed,
    path: PathBuf,
    records: CsvRecords,
}

impl CsvFile {
    pub(super) fn new(out: Hashed, path: &std::path::Path) -> Self {
        CsvFile {
            out,
            path: path.to_owned(),
            records: CsvRecords::default(),
        }
    }
}

impl Encoder for CsvFile {
    fn chunk(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        self.records.count(bytes);
        self.out
            .write_all(bytes)
            .map_err(|source| write_error(&self.path, source))
    }

    fn finish(self) -> Result<Written, ExportError> {
        let rows = self.records.complete.saturating_sub(1);
        self.out
            .into_written(rows)
            .map_err(|source| write_error(&self.path, source))
    }
}

/// Counts the records of CSV as PostgreSQL writes it, chunk by chunk: a line end inside a
/// quoted field (a description with a line break) ends no record.
#[derive(Debug, Default)]
struct CsvRecords {
    complete: u64,
    quoted: bool,
}

impl CsvRecords {
    fn count(&mut self, mut bytes: &[u8]) {
        while let Some(at) = memchr::memchr2(b'"', b'\n', bytes) {
            match bytes[at] {
                b'"' => self.quoted = !self.quoted,
                _ if !self.quoted => self.complete += 1,
                _ => {}
            }
            bytes = &bytes[at + 1..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_across_chunks_and_quoted_line_ends() {
        let csv = "a,b\n1,\"two\nlines, \"\"quoted\"\"\"\n3,4\n";
        for split in 0..csv.len() {
            let mut records = CsvRecords::default();
            records.count(&csv.as_bytes()[..split]);
            records.count(&csv.as_bytes()[split..]);
            assert_eq!(records.complete, 3, "split at {split}");
        }
    }
}
