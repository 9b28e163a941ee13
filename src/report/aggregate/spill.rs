//! Daily sums that outgrew the memory budget: written out as runs sorted by key to unnamed
//! temporary files (the kernel removes them when they are closed, on every exit path, a crash
//! included), then merged back in key order, equal keys summed, while they are stored. Usages
//! of past generations are written out beside them, to be stored as they are.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::Sums;
use super::daily::DailyKey;

/// Buffer of each run's reader and writer.
const BUFFER: usize = 64 << 10;

/// Runs merged at once: when this many runs of one level are written, they are merged into
/// one run of the next level. Each key is then written at most once per level, and the levels
/// grow with the logarithm of the runs (keys / a run's keys), so the bytes spilled grow with
/// the report's keys, not with their square; the runs kept open stay few.
pub(super) const FAN_IN: usize = 16;

/// The runs of one report, and the usages of its past generations.
#[derive(Debug)]
pub(super) struct Runs {
    temp_dir: PathBuf,
    /// From the oldest; their levels never grow from one to the next.
    files: Vec<Run>,
    usages: Option<File>,
    /// Runs of the first level written: one per budget's worth of sums.
    written_runs: usize,
    /// Bytes written to and read back from the temporary files.
    traffic: Traffic,
}

#[derive(Debug)]
struct Run {
    file: File,
    /// 0 for a run of sums from memory, n + 1 for a merge of runs of level n.
    level: u32,
    bytes: u64,
}

/// Bytes of runs written and read back: what spilling cost the disk.
#[derive(Debug, Default)]
struct Traffic {
    written: u64,
    read: std::sync::atomic::AtomicU64,
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
            written_runs: 0,
            traffic: Traffic::default(),
        }
    }

    /// Where the runs are written.
    pub fn temp_dir(&self) -> &Path {
        &self.temp_dir
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes of runs written to the temporary directory and read back so far.
    pub fn bytes_moved(&self) -> u64 {
        self.traffic.written + self.traffic.read.load(Relaxed)
    }

    /// Runs written from memory so far.
    pub fn len(&self) -> usize {
        self.written_runs
    }

    /// Writes `sums`, sorted by key, as one more run; merges the newest runs when [`FAN_IN`]
    /// of them share a level.
    pub fn write<'a>(
        &mut self,
        sums: impl Iterator<Item = (DailyKey, &'a Sums)>,
    ) -> Result<(), MergeError> {
        let mut run = new_file(&self.temp_dir)?;
        let mut bytes = 0;
        for (key, sums) in sums {
            write_record(&mut run, key, sums).map_err(|e| self.named(e))?;
            bytes += RECORD as u64;
        }
        let file = finish(run).map_err(|e| self.named(e))?;
        self.push(file, 0, bytes);
        self.written_runs += 1;
        while let Some(level) = self.full_level() {
            let newest = self.files.split_off(self.files.len() - FAN_IN);
            let mut run = new_file(&self.temp_dir)?;
            let mut bytes = 0;
            for merged in merge(&newest, &self.traffic)? {
                let (key, sums) = merged?;
                write_record(&mut run, key, &sums).map_err(|e| self.named(e))?;
                bytes += RECORD as u64;
            }
            let file = finish(run).map_err(|e| self.named(e))?;
            self.push(file, level + 1, bytes);
        }
        Ok(())
    }

    fn push(&mut self, file: File, level: u32, bytes: u64) {
        self.traffic.written += bytes;
        self.files.push(Run { file, level, bytes });
    }

    /// The level of the newest [`FAN_IN`] runs, when they all have it.
    fn full_level(&self) -> Option<u32> {
        let newest = self.files.get(self.files.len().checked_sub(FAN_IN)?..)?;
        let level = newest[0].level;
        newest.iter().all(|run| run.level == level).then_some(level)
    }

    /// An error of writing to the temporary directory, naming it ("No space left on device"
    /// alone does not say where).
    fn named(&self, error: io::Error) -> io::Error {
        io::Error::new(
            error.kind(),
            format!(
                "writing to the temporary directory {}: {error}",
                self.temp_dir.display()
            ),
        )
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
        let written = (|| {
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
            finish(writer)
        })();
        self.usages = Some(written.map_err(|e| self.named(e))?);
        Ok(())
    }

    /// The usages of past generations, read back.
    pub fn usages(&self) -> UsageReader<'_> {
        let reader = (self.usages.as_ref())
            .map(|file| BufReader::with_capacity(BUFFER, ReadAt { file, at: 0 }));
        UsageReader {
            reader,
            usage: Vec::new(),
        }
    }

    /// Reads all runs back as one sequence in key order.
    pub fn merge(&self) -> io::Result<Merge<'_>> {
        merge(&self.files, &self.traffic)
    }
}

/// `files` read back as one sequence in key order.
fn merge<'a>(files: &'a [Run], traffic: &Traffic) -> io::Result<Merge<'a>> {
    let mut runs = Vec::with_capacity(files.len());
    for run in files {
        let mut file = &run.file;
        file.rewind()?;
        traffic.read.fetch_add(run.bytes, Relaxed);
        let mut reader = RunReader {
            reader: BufReader::with_capacity(BUFFER, file),
            head: None,
        };
        reader.advance()?;
        runs.push(reader);
    }
    Ok(Merge { runs })
}

/// A new unnamed file in `temp_dir`; an error names the directory.
pub(super) fn unnamed_file(temp_dir: &Path) -> io::Result<File> {
    tempfile::tempfile_in(temp_dir).map_err(|error| {
        io::Error::new(error.kind(), format!("in {}: {error}", temp_dir.display()))
    })
}

fn new_file(temp_dir: &Path) -> io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(BUFFER, unnamed_file(temp_dir)?))
}

fn finish(writer: BufWriter<File>) -> io::Result<File> {
    writer.into_inner().map_err(|e| e.into_error())
}

/// A record: account, day (`i32::MIN` for none), usage id, four amounts, the line items.
const RECORD: usize = 4 + 4 + 8 + 4 * 16 + 8;

fn write_record(writer: &mut impl Write, key: DailyKey, sums: &Sums) -> io::Result<()> {
    let mut record = [0u8; RECORD];
    let day = key.day.map_or(i32::MIN, |d| d.num_days_from_ce());
    record[0..4].copy_from_slice(&key.account.to_le_bytes());
    record[4..8].copy_from_slice(&day.to_le_bytes());
    record[8..16].copy_from_slice(&key.usage.to_le_bytes());
    record[16..32].copy_from_slice(&sums.unblended_cost.serialize());
    record[32..48].copy_from_slice(&sums.blended_cost.serialize());
    record[48..64].copy_from_slice(&sums.amortized_cost.serialize());
    record[64..80].copy_from_slice(&sums.usage_quantity.serialize());
    record[80..88].copy_from_slice(&sums.line_items.to_le_bytes());
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
        amortized_cost: amount(48),
        usage_quantity: amount(64),
        line_items: u64::from_le_bytes(long(80)),
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
        // At most FAN_IN runs per level, and few levels: a linear scan for the smallest head
        // is cheaper than keeping a heap of them.
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

/// The usages of past generations, read back one at a time; several readers at once each
/// read from their own offset (the rollups are ranked while the usages are copied).
pub(super) struct UsageReader<'a> {
    reader: Option<BufReader<ReadAt<'a>>>,
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

/// A file read from an offset of the reader's own, not the file's.
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = std::os::unix::fs::FileExt::read_at(self.file, buf, self.at)?;
        self.at += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(cost: i64) -> Sums {
        Sums {
            unblended_cost: Decimal::new(cost, 2),
            blended_cost: Decimal::new(cost, 3),
            amortized_cost: Decimal::new(cost, 4),
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
        // Two readers at once, taking turns, each read them all (as the rollups' ranking and
        // the copy of the usages do).
        let mut readers = [runs.usages(), runs.usages()];
        let mut read = [Vec::new(), Vec::new()];
        for turn in 0..6 {
            let usage = readers[turn % 2].next().unwrap();
            let (id, bytes, month) = usage.unwrap();
            read[turn % 2].push((id, bytes.to_vec(), month));
        }
        for (mut reader, read) in readers.into_iter().zip(read) {
            assert!(reader.next().is_none());
            assert_eq!(
                read,
                [
                    (1, b"a".to_vec(), one),
                    (2, b"bc".to_vec(), two),
                    (1 << 32, Vec::new(), one)
                ]
            );
        }
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
    fn runs_of_one_level_are_merged_into_one_of_the_next() {
        let mut runs = Runs::new(std::env::temp_dir());
        let total = FAN_IN * FAN_IN + 3;
        for run in 0..total {
            let one = sums(1);
            runs.write(std::iter::once((key(0, None, run as u64 % 10), &one)))
                .unwrap();
        }
        let levels: Vec<u32> = runs.files.iter().map(|run| run.level).collect();
        assert_eq!(levels, [2, 0, 0, 0], "{FAN_IN}² runs are one of level 2");
        assert_eq!(runs.len(), total);
        let merged: Vec<_> = runs.merge().unwrap().map(Result::unwrap).collect();
        assert_eq!(merged.len(), 10);
        let line_items: u64 = merged.iter().map(|(_, sums)| sums.line_items).sum();
        assert_eq!(line_items, total as u64);
    }

    /// Bytes written and read back for a report whose distinct keys come in `runs` runs of
    /// `per_run` keys each (as a budget of `per_run` keys writes them), all read back once.
    fn spilled_bytes(runs: usize, per_run: usize) -> u64 {
        let mut spill = Runs::new(std::env::temp_dir());
        let one = sums(1);
        for run in 0..runs {
            let keys = (0..per_run).map(|k| (key(0, None, (run * per_run + k) as u64), &one));
            spill.write(keys).unwrap();
        }
        assert_eq!(spill.merge().unwrap().count(), runs * per_run);
        spill.bytes_moved()
    }

    #[test]
    fn bytes_spilled_grow_linearly_with_the_report() {
        // The floor on each report's share of the budget bounds the runs of a report of a
        // given size; within those, bytes grow with keys times the levels of merges, one more
        // level per FAN_IN times more runs.
        let per_run = 50;
        let base = spilled_bytes(FAN_IN * 4, per_run);
        let keys = (FAN_IN * 4 * per_run) as u64;
        for times in [2, 4, 8] {
            let bytes = spilled_bytes(FAN_IN * 4 * times, per_run);
            let per_key = bytes as f64 / (keys * times as u64) as f64;
            let base_per_key = base as f64 / keys as f64;
            assert!(
                per_key <= base_per_key * 1.5,
                "{times}x the keys: {per_key:.0} bytes per key against {base_per_key:.0}"
            );
        }
        // Every key is written once from memory and once per level of merges, and read back
        // as often.
        let levels = 1.0 + (FAN_IN as f64 * 32.0).log(FAN_IN as f64).floor();
        let bytes = spilled_bytes(FAN_IN * 32, per_run) as f64;
        let per_key = bytes / (FAN_IN * 32 * per_run) as f64;
        assert!(
            per_key <= 2.0 * RECORD as f64 * (levels + 1.0),
            "{per_key} bytes per key"
        );
    }
}
