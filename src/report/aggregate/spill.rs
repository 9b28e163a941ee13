//! Daily sums that outgrew the memory budget: written out as runs sorted by key to unnamed
//! temporary files (the kernel removes them when they are closed, on every exit path, a crash
//! included), then merged back in key order, equal keys summed, while they are stored. Usages
//! of past generations are written out beside them, to be stored as they are.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::Sums;
use super::daily::DailyKey;

/// Buffer of each run's reader and writer.
const BUFFER: usize = 64 << 10;

/// Runs kept at most: beyond, they are merged into one (a few file descriptors and buffers
/// whatever the report; a report of more than this many budgets' worth of keys is read from
/// disk once more).
const MAX_RUNS: usize = 64;

/// The runs of one report, and the usages of its past generations.
#[derive(Debug)]
pub(super) struct Runs {
    temp_dir: PathBuf,
    files: Vec<File>,
    usages: Option<File>,
}

/// Why writing or merging runs failed.
#[derive(Debug)]
pub(super) enum MergeError {
    Io(io::Error),
    /// The sums of one key across runs cannot be kept exactly.
    Inexact {
        account: u32,
    },
}

impl From<io::Error> for MergeError {
    fn from(error: io::Error) -> MergeError {
        MergeError::Io(error)
    }
}

impl Runs {
    pub fn new(temp_dir: PathBuf) -> Runs {
        Runs {
            temp_dir,
            files: Vec::new(),
            usages: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Writes `sums`, sorted by key, as one more run; merges all runs into one when there are
    /// too many.
    pub fn write<'a>(
        &mut self,
        sums: impl Iterator<Item = (DailyKey, &'a Sums)>,
    ) -> Result<(), MergeError> {
        let mut run = new_file(&self.temp_dir)?;
        for (key, sums) in sums {
            write_record(&mut run, key, sums)?;
        }
        self.files.push(finish(run)?);
        if self.files.len() >= MAX_RUNS {
            let mut run = new_file(&self.temp_dir)?;
            for merged in self.merge()? {
                let (key, sums) = merged?;
                write_record(&mut run, key, &sums)?;
            }
            self.files = vec![finish(run)?];
        }
        Ok(())
    }

    /// Writes a past generation's usages out, each with its month's sums.
    pub fn write_usages<'a>(
        &mut self,
        usages: impl Iterator<Item = (u64, &'a [u8], &'a Sums)>,
    ) -> io::Result<()> {
        let file = match self.usages.take() {
            Some(file) => file,
            None => new_file(&self.temp_dir)?
                .into_inner()
                .map_err(|e| e.into_error())?,
        };
        let mut writer = BufWriter::with_capacity(BUFFER, file);
        writer.seek(io::SeekFrom::End(0))?;
        for (id, usage, month) in usages {
            let length = u32::try_from(usage.len()).expect("a usage key is smaller than 4 GiB");
            let key = DailyKey {
                account: 0,
                day: None,
                usage: id,
            };
            write_record(&mut writer, key, month)?;
            writer.write_all(&length.to_le_bytes())?;
            writer.write_all(usage)?;
        }
        self.usages = Some(finish(writer)?);
        Ok(())
    }

    /// The usages of past generations, read back.
    pub fn usages(&self) -> io::Result<UsageReader<'_>> {
        let reader = match &self.usages {
            Some(file) => {
                let mut file: &File = file;
                file.rewind()?;
                Some(BufReader::with_capacity(BUFFER, file))
            }
            None => None,
        };
        Ok(UsageReader {
            reader,
            usage: Vec::new(),
        })
    }

    /// Reads all runs back as one sequence in key order.
    pub fn merge(&self) -> io::Result<Merge<'_>> {
        let mut runs = Vec::with_capacity(self.files.len());
        for mut file in &self.files {
            file.rewind()?;
            let mut run = RunReader {
                reader: BufReader::with_capacity(BUFFER, file),
                head: None,
            };
            run.advance()?;
            runs.push(run);
        }
        Ok(Merge { runs })
    }
}

/// A new unnamed file in `temp_dir`.
fn new_file(temp_dir: &Path) -> io::Result<BufWriter<File>> {
    let file = tempfile::tempfile_in(temp_dir).map_err(|error| {
        io::Error::new(error.kind(), format!("in {}: {error}", temp_dir.display()))
    })?;
    Ok(BufWriter::with_capacity(BUFFER, file))
}

fn finish(writer: BufWriter<File>) -> io::Result<File> {
    writer.into_inner().map_err(|e| e.into_error())
}

/// A record: account, day (`i32::MIN` for none), usage id, three amounts, the line items.
const RECORD: usize = 4 + 4 + 8 + 3 * 16 + 8;

fn write_record(writer: &mut impl Write, key: DailyKey, sums: &Sums) -> io::Result<()> {
    let mut record = [0u8; RECORD];
    let day = key.day.map_or(i32::MIN, |d| d.num_days_from_ce());
    record[0..4].copy_from_slice(&key.account.to_le_bytes());
    record[4..8].copy_from_slice(&day.to_le_bytes());
    record[8..16].copy_from_slice(&key.usage.to_le_bytes());
    record[16..32].copy_from_slice(&sums.unblended_cost.serialize());
    record[32..48].copy_from_slice(&sums.blended_cost.serialize());
    record[48..64].copy_from_slice(&sums.usage_quantity.serialize());
    record[64..72].copy_from_slice(&sums.line_items.to_le_bytes());
    writer.write_all(&record)
}

fn read_record(record: &[u8; RECORD]) -> io::Result<(DailyKey, Sums)> {
    let word = |at: usize| <[u8; 4]>::try_from(&record[at..at + 4]).expect("4 bytes");
    let long = |at: usize| <[u8; 8]>::try_from(&record[at..at + 8]).expect("8 bytes");
    let amount = |at: usize| {
        Decimal::deserialize(<[u8; 16]>::try_from(&record[at..at + 16]).expect("16 bytes"))
    };
    let day = match i32::from_le_bytes(word(4)) {
        i32::MIN => None,
        day => Some(NaiveDate::from_num_days_from_ce_opt(day).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "a day out of range in a run")
        })?),
    };
    let key = DailyKey {
        account: u32::from_le_bytes(word(0)),
        day,
        usage: u64::from_le_bytes(long(8)),
    };
    let sums = Sums {
        unblended_cost: amount(16),
        blended_cost: amount(32),
        usage_quantity: amount(48),
        line_items: u64::from_le_bytes(long(64)),
    };
    Ok((key, sums))
}

struct RunReader<'a> {
    reader: BufReader<&'a File>,
    /// The run's next record; `None` at its end.
    head: Option<(DailyKey, Sums)>,
}

impl RunReader<'_> {
    fn advance(&mut self) -> io::Result<()> {
        let mut record = [0u8; RECORD];
        self.head = match self.reader.read_exact(&mut record) {
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => None,
            Err(error) => return Err(error),
            Ok(()) => Some(read_record(&record)?),
        };
        Ok(())
    }
}

/// The runs merged in key order, each key once with its sums added up.
pub(super) struct Merge<'a> {
    runs: Vec<RunReader<'a>>,
}

impl Iterator for Merge<'_> {
    type Item = Result<(DailyKey, Sums), MergeError>;

    fn next(&mut self) -> Option<Self::Item> {
        // A few runs per report (one per budget's worth of keys): a linear scan for the
        // smallest head is cheaper than keeping a heap of them.
        let key = self
            .runs
            .iter()
            .filter_map(|run| run.head)
            .map(|(key, _)| key)
            .min()?;
        let mut merged = Sums::default();
        for run in &mut self.runs {
            let Some((head, sums)) = run.head else {
                continue;
            };
            if head != key {
                continue;
            }
            if merged.add(&sums).is_none() {
                return Some(Err(MergeError::Inexact {
                    account: key.account,
                }));
            }
            if let Err(error) = run.advance() {
                return Some(Err(error.into()));
            }
        }
        Some(Ok((key, merged)))
    }
}

/// The usages of past generations, read back one at a time.
pub(super) struct UsageReader<'a> {
    reader: Option<BufReader<&'a File>>,
    usage: Vec<u8>,
}

impl UsageReader<'_> {
    #[allow(clippy::should_implement_trait)] // It lends from itself, which `Iterator` cannot.
    pub fn next(&mut self) -> Option<io::Result<(u64, &[u8], Sums)>> {
        let reader = self.reader.as_mut()?;
        let mut header = [0u8; RECORD + 4];
        match reader.read_exact(&mut header) {
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return None,
            Err(error) => return Some(Err(error)),
            Ok(()) => {}
        }
        let record = header[..RECORD].try_into().expect("a record");
        let (key, month) = match read_record(record) {
            Ok(read) => read,
            Err(error) => return Some(Err(error)),
        };
        let length = u32::from_le_bytes(header[RECORD..].try_into().expect("4 bytes"));
        self.usage.resize(length as usize, 0);
        Some(
            reader
                .read_exact(&mut self.usage)
                .map(|()| (key.usage, &self.usage[..], month)),
        )
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

    fn key(account: u32, day: Option<NaiveDate>, usage: u64) -> DailyKey {
        DailyKey {
            account,
            day,
            usage,
        }
    }

    #[test]
    fn runs_merge_in_key_order_with_equal_keys_summed() {
        let day = NaiveDate::from_ymd_opt(2017, 3, 1);
        let mut runs = Runs::new(std::env::temp_dir());
        let first = [
            (key(0, None, 2), sums(1)),
            (key(0, day, 1), sums(2)),
            (key(1, day, 1), sums(3)),
        ];
        let second = [(key(0, day, 1), sums(10)), (key(0, day, 3), sums(20))];
        for run in [&first[..], &second[..]] {
            runs.write(run.iter().map(|(key, sums)| (*key, sums)))
                .unwrap();
        }
        let mut twelve = sums(12);
        twelve.line_items = 2;
        twelve.usage_quantity = Decimal::TWO;
        for _ in 0..2 {
            // Read twice: each merge starts from the beginning of the runs.
            let merged: Vec<_> = runs.merge().unwrap().map(Result::unwrap).collect();
            assert_eq!(
                merged,
                [
                    (key(0, None, 2), sums(1)),
                    (key(0, day, 1), twelve),
                    (key(0, day, 3), sums(20)),
                    (key(1, day, 1), sums(3)),
                ]
            );
        }
    }

    #[test]
    fn usages_of_past_generations_read_back() {
        let mut runs = Runs::new(std::env::temp_dir());
        let (one, two) = (sums(1), sums(-2));
        runs.write_usages([(1, &b"a"[..], &one), (2, b"bc", &two)].into_iter())
            .unwrap();
        runs.write_usages([(1 << 32, &b""[..], &one)].into_iter())
            .unwrap();
        let mut reader = runs.usages().unwrap();
        let mut read = Vec::new();
        while let Some(usage) = reader.next() {
            let (id, bytes, month) = usage.unwrap();
            read.push((id, bytes.to_vec(), month));
        }
        assert_eq!(
            read,
            [
                (1, b"a".to_vec(), one),
                (2, b"bc".to_vec(), two),
                (1 << 32, Vec::new(), one)
            ]
        );
    }

    #[test]
    fn a_missing_temporary_directory_is_named() {
        let mut runs = Runs::new("/nonexistent/dbr-spill".into());
        let Err(MergeError::Io(error)) = runs.write(std::iter::empty()) else {
            panic!("written to a missing directory");
        };
        assert!(
            error.to_string().contains("/nonexistent/dbr-spill"),
            "{error}"
        );
    }

    #[test]
    fn too_many_runs_are_merged_into_one() {
        let mut runs = Runs::new(std::env::temp_dir());
        for run in 0..MAX_RUNS + 3 {
            let one = sums(1);
            runs.write(std::iter::once((key(0, None, run as u64 % 10), &one)))
                .unwrap();
        }
        assert_eq!(
            runs.len(),
            4,
            "merged into one at {MAX_RUNS}, then three more"
        );
        let merged: Vec<_> = runs.merge().unwrap().map(Result::unwrap).collect();
        assert_eq!(merged.len(), 10);
        let line_items: u64 = merged.iter().map(|(_, sums)| sums.line_items).sum();
        assert_eq!(line_items, (MAX_RUNS + 3) as u64);
    }
}
