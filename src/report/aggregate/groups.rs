//! The month's costs of each resource, and of each tag value, per account: summed from the
//! report's usages (each carries its month's sums) for the rollups the dashboards read. At most
//! [`Groups::AT_ONCE`] groups are summed at a time: beyond, what is summed is handed out as
//! partial rows, which the views add up. Memory stays bounded whatever the report's key count;
//! a real report has far fewer groups than that.

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

/// One account's month of one group (partial when the groups outgrew [`Groups::AT_ONCE`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub account: AccountId,
    /// The resource and its product, or the tag's key and value.
    pub key: [String; 2],
    pub sums: Sums,
}

/// An account and a group's two columns.
type Group = (AccountId, [String; 2]);

/// A report's groups being summed and handed out; see `ReportSums::groups`.
pub struct Groups<'a> {
    usages: Usages<'a>,
    by: GroupBy,
    only: Option<&'a Monitored>,
    summing: FxHashMap<Group, Sums>,
    /// What was summed, handed out as it is: the map's own memory, no copy of it.
    summed: std::collections::hash_map::IntoIter<Group, Sums>,
    /// Every usage was read (or reading failed).
    read: bool,
}

impl<'a> Groups<'a> {
    /// Groups summed in memory at a time.
    pub const AT_ONCE: usize = 1 << 16;

    pub(super) fn new(usages: Usages<'a>, by: GroupBy, only: Option<&'a Monitored>) -> Self {
        Groups {
            usages,
            by,
            only,
            summing: FxHashMap::default(),
            summed: FxHashMap::default().into_iter(),
            read: false,
        }
    }

    /// Sums usages until [`Groups::AT_ONCE`] groups are summed or the usages end, then makes
    /// what was summed ready to hand out.
    fn sum_some(&mut self) -> Result<(), DailyCostsError> {
        // The groups handed out before free their memory first: an iterator of a map holds
        // the map's table until it is dropped, spent or not.
        self.summed = FxHashMap::default().into_iter();
        while self.summing.len() < Groups::AT_ONCE {
            let Some(usage) = self.usages.next() else {
                self.read = true;
                break;
            };
            let usage = usage?;
            if self.only.is_some_and(|only| !only.contains(usage.account)) {
                continue;
            }
            let mut add = |key: [&str; 2]| {
                let group = (usage.account.clone(), key.map(str::to_owned));
                self.summing
                    .entry(group)
                    .or_default()
                    .add(&usage.month)
                    .ok_or_else(|| DailyCostsError::Inexact {
                        account: usage.account.clone(),
                    })
            };
            match self.by {
                GroupBy::Resource if usage.usage.resource_id.is_empty() => {}
                GroupBy::Resource => add([usage.usage.resource_id, usage.usage.product])?,
                GroupBy::Tag => {
                    for &(key, value) in &usage.usage.tags {
                        add([key, value])?;
                    }
                }
            }
        }
        self.summed = std::mem::take(&mut self.summing).into_iter();
        Ok(())
    }
}

impl Iterator for Groups<'_> {
    type Item = Result<GroupRow, DailyCostsError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(((account, key), sums)) = self.summed.next() {
                return Some(Ok(GroupRow { account, key, sums }));
            }
            if self.read {
                return None;
            }
            if let Err(error) = self.sum_some() {
                self.read = true;
                return Some(Err(error));
            }
        }
    }
}
