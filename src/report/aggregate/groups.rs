//! The month's costs of each resource, and of each tag value, per account: summed from the
//! report's usages (each carries its month's sums) and ranked for the rollups the dashboards
//! read. Per account (and tag key) the [`Groups::KEPT_BY_NAME`] groups that cost most are
//! handed out by name, and one row adds up the others, so a rollup stays small whatever the
//! report.
//!
//! Ranking needs every group's whole sum, and memory holds [`Groups::AT_ONCE`] groups: a report
//! with more writes them out as runs sorted by group to unnamed temporary files and merges
//! them, equal groups summed, so that they reach the ranking in order, one account (and tag
//! key) after the other, and the ranking holds one account's best at a time.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

use super::{DailyCostsError, Sums, Usages};
use crate::domain::{AccountId, Monitored};

/// What usages are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// The resource and its product; usages without a resource are in no group.
    Resource,
    /// Each tag's key and value: a usage with two tags counts under both.
    Tag,
}

impl GroupBy {
    /// How many of a group's two columns the ranking is within (beside the account): none for
    /// resources, the key for tags. The others' row has the remaining columns empty.
    fn within(self) -> usize {
        match self {
            GroupBy::Resource => 0,
            GroupBy::Tag => 1,
        }
    }
}

/// One row of a ranked rollup: a group, or the others of its account (and tag key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub account: AccountId,
    /// The resource and its product, or the tag's key and value; on the others' row, the
    /// resource's two or the tag's value are empty (no group has an empty one).
    pub key: [String; 2],
    pub sums: Sums,
    /// How many groups the row stands for: 1, or the number of others.
    pub groups: u64,
}

/// An account and a group's two columns: the order groups are ranked in, one account (and
/// tag key) after the other.
type Group = (AccountId, [String; 2]);

/// A report's groups, ranked; see `ReportSums::groups`.
pub struct Groups {
    by: GroupBy,
    /// Rows ranked, to hand out: all of them when the groups fit in memory, else those of the
    /// account (and tag key) ranked last.
    ready: std::vec::IntoIter<GroupRow>,
    /// The runs' groups, in order, when they did not fit.
    merge: Option<Merge>,
    ranking: Ranking,
}

impl Groups {
    /// Groups summed in memory at a time (fewer in unit tests, which rank in memory, in runs
    /// and in runs merged early). A group in the table and then in the sorted run takes about
    /// 450 bytes: these take 7 MB, on top of what the report's sums still hold. (At 65,536,
    /// ranking the hostile month's 2.4 M resources raised the peak from 88 to 123 MB.)
    pub const AT_ONCE: usize = if cfg!(test) { 2048 } else { 1 << 14 };
    /// Per account (and tag key), the groups handed out by name.
    pub const KEPT_BY_NAME: usize = 1000;

    /// Sums the usages' groups, and ranks them when they fit in memory; else writes them out
    /// in runs, to be merged and ranked as they are handed out.
    pub(super) fn new(
        mut usages: Usages<'_>,
        by: GroupBy,
        only: Option<&Monitored>,
        temp_dir: &Path,
    ) -> Result<Self, DailyCostsError> {
        let mut groups = Groups {
            by,
            ready: Vec::new().into_iter(),
            merge: None,
            ranking: Ranking::default(),
        };
        let mut runs = Vec::new();
        loop {
            let (summed, read) = sum_some(&mut usages, by, only)?;
            if read && runs.is_empty() {
                groups.ready = rank_in_memory(summed, by)?.into_iter();
                return Ok(groups);
            }
            let mut sorted: Vec<(Group, Sums)> = summed.into_iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            runs.push(write_run(sorted.into_iter().map(Ok), temp_dir)?);
            if read {
                groups.merge = Some(Merge::new(runs)?);
                return Ok(groups);
            }
            if runs.len() == RUNS_AT_ONCE {
                let merged = Merge::new(std::mem::take(&mut runs))?;
                runs.push(write_run(merged, temp_dir)?);
            }
        }
    }
}

/// Sums usages until [`Groups::AT_ONCE`] groups are summed or the usages end (then `true`).
fn sum_some(
    usages: &mut Usages<'_>,
    by: GroupBy,
    only: Option<&Monitored>,
) -> Result<(FxHashMap<Group, Sums>, bool), DailyCostsError> {
    let mut summing: FxHashMap<Group, Sums> = FxHashMap::default();
    while summing.len() < Groups::AT_ONCE {
        let Some(usage) = usages.next() else {
            return Ok((summing, true));
        };
        let usage = usage?;
        if only.is_some_and(|only| !only.contains(usage.account)) {
            continue;
        }
        let mut add = |key: [&str; 2]| {
            let group = (usage.account.clone(), key.map(str::to_owned));
            summing
                .entry(group)
                .or_default()
                .add(&usage.month)
                .ok_or_else(|| DailyCostsError::Inexact {
                    account: usage.account.clone(),
                })
        };
        match by {
            GroupBy::Resource if usage.usage.resource_id.is_empty() => {}
            GroupBy::Resource => add([usage.usage.resource_id, usage.usage.product])?,
            GroupBy::Tag => {
                for &(key, value) in &usage.usage.tags {
                    add([key, value])?;
                }
            }
        }
    }
    Ok((summing, false))
}

/// Ranks whole groups in no order, each account (and tag key) apart: the groups move into
/// the rankings, so memory holds them once.
fn rank_in_memory(
    groups: FxHashMap<Group, Sums>,
    by: GroupBy,
) -> Result<Vec<GroupRow>, DailyCostsError> {
    let mut rankings: FxHashMap<(AccountId, String), Ranking> = FxHashMap::default();
    for (group, sums) in groups {
        let within = group.1[..by.within()].concat();
        rankings
            .entry((group.0.clone(), within))
            .or_default()
            .push(group, sums)?;
    }
    Ok(rankings
        .into_values()
        .flat_map(|mut ranking| ranking.finish(by))
        .collect())
}

impl Iterator for Groups {
    type Item = Result<GroupRow, DailyCostsError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.ready.next() {
                return Some(Ok(row));
            }
            let merge = self.merge.as_mut()?;
            let ranked = match merge.next() {
                Some(Ok((group, sums))) => {
                    // The runs' groups come in order: a group of another account (or tag
                    // key) ends the one ranked so far.
                    let within = self.by.within();
                    let ended = self.ranking.best.peek().is_some_and(|kept| {
                        kept.group.0 != group.0 || kept.group.1[..within] != group.1[..within]
                    });
                    if ended {
                        self.ready = self.ranking.finish(self.by).into_iter();
                    }
                    self.ranking.push(group, sums)
                }
                Some(Err(error)) => Err(error),
                None => {
                    self.merge = None;
                    self.ready = self.ranking.finish(self.by).into_iter();
                    Ok(())
                }
            };
            if let Err(error) = ranked {
                self.merge = None;
                self.ready = Vec::new().into_iter();
                return Some(Err(error));
            }
        }
    }
}

/// A group as ranked: the larger of its two costs, so that a resource whose usage a commitment
/// covers (unblended 0 in a CUR) ranks by what it costs amortized, then its name, bytewise.
struct Ranked {
    cost: Decimal,
    group: Group,
    sums: Sums,
}

impl Ranked {
    /// Better first: the higher cost, then the smaller name.
    fn order(&self, other: &Ranked) -> Ordering {
        other
            .cost
            .cmp(&self.cost)
            .then_with(|| self.group.1.cmp(&other.group.1))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.order(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The heap's top is the worst of the best kept.
impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> Ordering {
        self.order(other)
    }
}

/// One account's (and tag key's) best groups so far, and the others added up.
#[derive(Default)]
struct Ranking {
    best: BinaryHeap<Ranked>,
    others: Option<(Sums, u64)>,
}

impl Ranking {
    /// Ranks one more whole group of the account (and tag key).
    fn push(&mut self, group: Group, sums: Sums) -> Result<(), DailyCostsError> {
        let cost = sums.unblended_cost.max(sums.amortized_cost);
        let ranked = Ranked { cost, group, sums };
        if self.best.len() < Groups::KEPT_BY_NAME {
            self.best.push(ranked);
            return Ok(());
        }
        let mut worst = self.best.peek_mut().expect("the best are kept");
        let out = if ranked < *worst {
            std::mem::replace(&mut *worst, ranked)
        } else {
            ranked
        };
        drop(worst);
        let (sums, count) = self.others.get_or_insert_with(Default::default);
        *count += 1;
        sums.add(&out.sums).ok_or(DailyCostsError::Inexact {
            account: out.group.0,
        })
    }

    /// The rows of the account (and tag key) ranked so far, best first, then the others'.
    fn finish(&mut self, by: GroupBy) -> Vec<GroupRow> {
        let best = std::mem::take(&mut self.best).into_sorted_vec();
        // There are others only once the best are full.
        let others = self.others.take().map(|(sums, groups)| {
            let (account, mut key) = best[0].group.clone();
            for column in &mut key[by.within()..] {
                column.clear();
            }
            GroupRow {
                account,
                key,
                sums,
                groups,
            }
        });
        best.into_iter()
            .map(|Ranked { group, sums, .. }| GroupRow {
                account: group.0,
                key: group.1,
                sums,
                groups: 1,
            })
            .chain(others)
            .collect()
    }
}

/// Buffer of each run's writer and reader.
const BUFFER: usize = 16 << 10;

/// Runs open at most: when this many are written, they are merged into one, so that the files
/// open (and their buffers, 4 MB at most) stay few whatever the report. (The hostile month's
/// 2.4 M resources are 150 runs: merged once, at the end.)
const RUNS_AT_ONCE: usize = if cfg!(test) { 2 } else { 256 };

/// Writes sorted groups to an unnamed temporary file, each as: the account, the two columns
/// (each length-prefixed), the four amounts and the line items.
fn write_run(
    groups: impl Iterator<Item = Result<(Group, Sums), DailyCostsError>>,
    temp_dir: &Path,
) -> Result<File, DailyCostsError> {
    let mut writer = BufWriter::with_capacity(BUFFER, super::spill::unnamed_file(temp_dir)?);
    for group in groups {
        let ((account, [first, second]), sums) = group?;
        for text in [account.as_str(), &first, &second] {
            let length = u32::try_from(text.len()).expect("a field below 4 GiB");
            writer.write_all(&length.to_le_bytes())?;
            writer.write_all(text.as_bytes())?;
        }
        for amount in [
            sums.unblended_cost,
            sums.blended_cost,
            sums.amortized_cost,
            sums.usage_quantity,
        ] {
            writer.write_all(&amount.serialize())?;
        }
        writer.write_all(&sums.line_items.to_le_bytes())?;
    }
    let mut file = writer.into_inner().map_err(|e| e.into_error())?;
    file.rewind()?;
    Ok(file)
}

/// The next group of a run, or `None` at its end.
fn read_group(reader: &mut impl Read) -> io::Result<Option<(Group, Sums)>> {
    let mut text = || -> io::Result<Option<String>> {
        let mut length = [0u8; 4];
        match reader.read_exact(&mut length) {
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            read => read?,
        }
        let mut bytes = vec![0u8; u32::from_le_bytes(length) as usize];
        reader.read_exact(&mut bytes)?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    };
    let Some(account) = text()? else {
        return Ok(None);
    };
    let (Some(first), Some(second)) = (text()?, text()?) else {
        return Err(io::ErrorKind::UnexpectedEof.into());
    };
    let account = account
        .parse::<AccountId>()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
    let mut amount = || -> io::Result<Decimal> {
        let mut bytes = [0u8; 16];
        reader.read_exact(&mut bytes)?;
        Ok(Decimal::deserialize(bytes))
    };
    let (unblended_cost, blended_cost, amortized_cost, usage_quantity) =
        (amount()?, amount()?, amount()?, amount()?);
    let mut line_items = [0u8; 8];
    reader.read_exact(&mut line_items)?;
    let sums = Sums {
        unblended_cost,
        blended_cost,
        amortized_cost,
        usage_quantity,
        line_items: u64::from_le_bytes(line_items),
    };
    Ok(Some(((account, [first, second]), sums)))
}

/// The runs merged in group order, equal groups summed.
struct Merge {
    readers: Vec<BufReader<File>>,
    /// Each run's next group, smallest first.
    heads: BinaryHeap<Reverse<(Group, usize)>>,
    /// The sums of each run's next group.
    sums: Vec<Sums>,
}

impl Merge {
    fn new(runs: Vec<File>) -> io::Result<Merge> {
        let mut merge = Merge {
            sums: vec![Sums::default(); runs.len()],
            readers: runs
                .into_iter()
                .map(|file| BufReader::with_capacity(BUFFER, file))
                .collect(),
            heads: BinaryHeap::new(),
        };
        for run in 0..merge.readers.len() {
            merge.advance(run)?;
        }
        Ok(merge)
    }

    /// Reads the run's next group, if any, into the heads.
    fn advance(&mut self, run: usize) -> io::Result<()> {
        if let Some((group, sums)) = read_group(&mut self.readers[run])? {
            self.sums[run] = sums;
            self.heads.push(Reverse((group, run)));
        }
        Ok(())
    }
}

impl Iterator for Merge {
    type Item = Result<(Group, Sums), DailyCostsError>;

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse((group, run)) = self.heads.pop()?;
        let mut sums = self.sums[run];
        if let Err(error) = self.advance(run) {
            return Some(Err(DailyCostsError::Spill(error)));
        }
        while self.heads.peek().is_some_and(|head| head.0.0 == group) {
            let Reverse((_, other)) = self.heads.pop().expect("peeked");
            if sums.add(&self.sums[other]).is_none() {
                return Some(Err(DailyCostsError::Inexact { account: group.0 }));
            }
            if let Err(error) = self.advance(other) {
                return Some(Err(DailyCostsError::Spill(error)));
            }
        }
        Some(Ok((group, sums)))
    }
}
