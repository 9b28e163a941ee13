//! Daily sums that outgrew the memory budget: written out as runs sorted by key to unnamed
//! temporary files (the kernel removes them when they are closed, on every exit path, a crash
//! included), then merged back in key order, equal keys summed, while they are stored.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::Sums;

/// Buffer of each run's reader and writer.
const BUFFER: usize = 64 << 10;

/// One daily sum as a run holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Record<'a> {
    pub account: u32,
    pub day: Option<NaiveDate>,
    pub usage: &'a [u8],
    pub sums: Sums,
}

impl Record<'_> {
    fn key(&self) -> (u32, Option<NaiveDate>, &[u8]) {
        (self.account, self.day, self.usage)
    }
}

/// The runs of one report.
#[derive(Debug)]
pub(super) struct Runs {
    temp_dir: PathBuf,
    files: Vec<File>,
}

impl Runs {
    pub fn new(temp_dir: PathBuf) -> Runs {
        Runs {
            temp_dir,
            files: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Writes `records`, which come sorted by key, as one more run.
    pub fn write<'a>(&mut self, records: impl Iterator<Item = Record<'a>>) -> io::Result<()> {
        let file = tempfile::tempfile_in(&self.temp_dir).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("in {}: {error}", self.temp_dir.display()),
            )
        })?;
        let mut writer = BufWriter::with_capacity(BUFFER, file);
        for record in records {
            let day = record.day.map_or(i32::MIN, |d| d.num_days_from_ce());
            let length = u32::try_from(record.usage.len()).expect("a usage key fits a record");
            writer.write_all(&record.account.to_le_bytes())?;
            writer.write_all(&day.to_le_bytes())?;
            writer.write_all(&length.to_le_bytes())?;
            writer.write_all(record.usage)?;
            for amount in [
                record.sums.unblended_cost,
                record.sums.blended_cost,
                record.sums.usage_quantity,
            ] {
                writer.write_all(&amount.serialize())?;
            }
            writer.write_all(&record.sums.line_items.to_le_bytes())?;
        }
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        self.files.push(file);
        Ok(())
    }

    /// Reads all runs back as one sequence in key order.
    pub fn merge(&self) -> io::Result<Merge<'_>> {
        let mut runs = Vec::with_capacity(self.files.len());
        for mut file in &self.files {
            file.rewind()?;
            let mut run = RunReader {
                reader: BufReader::with_capacity(BUFFER, file),
                head: OwnedRecord::default(),
                done: false,
            };
            run.advance()?;
            runs.push(run);
        }
        Ok(Merge {
            runs,
            merged: OwnedRecord::default(),
        })
    }
}

/// A record read back, its usage key in a buffer reused from record to record.
#[derive(Debug, Default)]
struct OwnedRecord {
    account: u32,
    day: Option<NaiveDate>,
    usage: Vec<u8>,
    sums: Sums,
}

impl OwnedRecord {
    fn as_record(&self) -> Record<'_> {
        Record {
            account: self.account,
            day: self.day,
            usage: &self.usage,
            sums: self.sums,
        }
    }
}

struct RunReader<'a> {
    reader: BufReader<&'a File>,
    head: OwnedRecord,
    done: bool,
}

impl RunReader<'_> {
    /// Reads the next record into `head`, or marks the run done at its end.
    fn advance(&mut self) -> io::Result<()> {
        let mut word = [0u8; 4];
        match self.reader.read_exact(&mut word) {
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                self.done = true;
                return Ok(());
            }
            result => result?,
        }
        let head = &mut self.head;
        head.account = u32::from_le_bytes(word);
        self.reader.read_exact(&mut word)?;
        let day = i32::from_le_bytes(word);
        head.day = if day == i32::MIN {
            None
        } else {
            Some(NaiveDate::from_num_days_from_ce_opt(day).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "a day out of range in a run")
            })?)
        };
        self.reader.read_exact(&mut word)?;
        head.usage.resize(u32::from_le_bytes(word) as usize, 0);
        self.reader.read_exact(&mut head.usage)?;
        let mut amount = || -> io::Result<Decimal> {
            let mut bytes = [0u8; 16];
            self.reader.read_exact(&mut bytes)?;
            Ok(Decimal::deserialize(bytes))
        };
        head.sums.unblended_cost = amount()?;
        head.sums.blended_cost = amount()?;
        head.sums.usage_quantity = amount()?;
        let mut count = [0u8; 8];
        self.reader.read_exact(&mut count)?;
        head.sums.line_items = u64::from_le_bytes(count);
        Ok(())
    }
}

/// Why merging failed.
#[derive(Debug)]
pub(super) enum MergeError {
    Io(io::Error),
    /// The sums of one key across runs cannot be kept exactly.
    Inexact {
        account: u32,
    },
}

/// The runs merged in key order, each key once with its sums added up.
pub(super) struct Merge<'a> {
    runs: Vec<RunReader<'a>>,
    merged: OwnedRecord,
}

impl Merge<'_> {
    pub fn next(&mut self) -> Option<Result<Record<'_>, MergeError>> {
        // A handful of runs per report (one per budget's worth of keys): a linear scan for the
        // smallest head is cheaper than keeping a heap of them.
        let smallest = self
            .runs
            .iter()
            .filter(|run| !run.done)
            .map(|run| &run.head)
            .min_by(|a, b| a.as_record().key().cmp(&b.as_record().key()))?;
        let merged = &mut self.merged;
        merged.account = smallest.account;
        merged.day = smallest.day;
        merged.usage.clone_from(&smallest.usage);
        merged.sums = Sums::default();
        for run in self.runs.iter_mut().filter(|run| !run.done) {
            let head = run.head.as_record();
            if head
                .key()
                .cmp(&(merged.account, merged.day, &merged.usage[..]))
                != Ordering::Equal
            {
                continue;
            }
            if merged.sums.add(&head.sums).is_none() {
                return Some(Err(MergeError::Inexact {
                    account: merged.account,
                }));
            }
            if let Err(error) = run.advance() {
                return Some(Err(MergeError::Io(error)));
            }
        }
        Some(Ok(self.merged.as_record()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(cost: i64) -> Sums {
        Sums {
            unblended_cost: Decimal::new(cost, 2),
            blended_cost: Decimal::new(cost, 3),
            usage_quantity: Decimal::ONE,
            line_items: 1,
        }
    }

    #[test]
    fn runs_merge_in_key_order_with_equal_keys_summed() {
        let day = NaiveDate::from_ymd_opt(2017, 3, 1);
        let mut runs = Runs::new(std::env::temp_dir());
        let first = [(0, None, "b", 1), (0, day, "a", 2), (1, day, "a", 3)];
        let second = [(0, day, "a", 10), (0, day, "c", 20)];
        for run in [&first[..], &second[..]] {
            runs.write(run.iter().map(|&(account, day, usage, cost)| Record {
                account,
                day,
                usage: usage.as_bytes(),
                sums: sums(cost),
            }))
            .unwrap();
        }
        for _ in 0..2 {
            // Read twice: each merge starts from the beginning of the runs.
            let mut merge = runs.merge().unwrap();
            let mut merged = Vec::new();
            while let Some(record) = merge.next() {
                let record = record.unwrap();
                let usage = String::from_utf8(record.usage.to_vec()).unwrap();
                merged.push((record.account, record.day, usage, record.sums));
            }
            let mut twelve = sums(12);
            twelve.line_items = 2;
            twelve.usage_quantity = Decimal::TWO;
            assert_eq!(
                merged,
                [
                    (0, None, "b".to_owned(), sums(1)),
                    (0, day, "a".to_owned(), twelve),
                    (0, day, "c".to_owned(), sums(20)),
                    (1, day, "a".to_owned(), sums(3)),
                ]
            );
        }
    }

    #[test]
    fn a_missing_temporary_directory_is_named() {
        let mut runs = Runs::new("/nonexistent/dbr-spill".into());
        let error = runs.write(std::iter::empty()).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/dbr-spill"),
            "{error}"
        );
    }
}
