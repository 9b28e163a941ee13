//! The daily grain's two tables: each distinct usage (product, usage type, operation, zone,
//! resource, tags) once, under an id, its bytes in an arena of fixed-size chunks; and the daily
//! sums keyed by (account, day, usage id). A report has far fewer usages than daily keys (a
//! resource's usage recurs every day), so the daily keys stay small, and the store writes the
//! usages once per report instead of once per day.

use std::hash::{Hash, Hasher};

use chrono::NaiveDate;
use hashbrown::{HashTable, hash_table};
use rustc_hash::FxHasher;

use super::{Sums, Wide};
use crate::report::dimensions::ChargeCategory;

/// The arena grows by chunks of a sixteenth of the budget, within these bounds, never by
/// doubling.
const CHUNKS: std::ops::RangeInclusive<usize> = (4 << 10)..=(1 << 20);

/// The grain of the daily sums. Ordered as the runs written out are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct DailyKey {
    pub account: u32,
    pub day: Option<NaiveDate>,
    /// The usage's id: its generation in the high 32 bits, its index in the low ones.
    pub usage: u64,
}

/// The usages of one generation: ids `generation << 32 | index`. A report whose usages alone
/// outgrow the budget starts a new generation after writing this one out, so a usage may then
/// have two ids (and a daily key two partial sums, which the views add up).
pub(super) struct Usages {
    generation: u32,
    table: HashTable<Usage>,
    /// What is summed per usage beside its bytes, by index.
    infos: Vec<UsageInfo>,
    chunks: Vec<Vec<u8>>,
    chunk: usize,
}

/// What a usage's line items came to beside its bytes: its charge category, its service (an
/// index into the report's services) and its month's sums so far in this generation.
pub(super) struct UsageInfo {
    pub category: ChargeCategory,
    pub service: u32,
    pub month: Sums,
}

/// A usage in the table: the hash of its bytes, its index, and where its bytes are (chunk,
/// start, length), so that a lookup reads the table and the bytes, nothing else.
struct Usage {
    hash: u64,
    index: u32,
    place: (u32, u32, u32),
}

impl Usages {
    /// An empty generation for a memory budget of `budget` bytes.
    pub fn within(budget: usize, generation: u32) -> Usages {
        Usages {
            generation,
            table: HashTable::new(),
            infos: Vec::new(),
            chunks: Vec::new(),
            chunk: (budget / 16).clamp(*CHUNKS.start(), *CHUNKS.end()),
        }
    }

    /// The next generation, empty; this one's memory is freed.
    pub fn next_generation(&self) -> Usages {
        Usages::within(self.chunk * 16, self.generation + 1)
    }

    /// The id of `account`'s usage whose key ([`Row::usage_key`]) is `usage`, of hash
    /// `usage_hash` ([`hash_usage_key`]); `is_new` runs before one is added (to check its
    /// fields and derive what it is, once per usage, not once per row). A usage is kept as the
    /// account's slot (4 bytes, little-endian) followed by its key: its month is one account's.
    ///
    /// [`Row::usage_key`]: crate::report::rows::Row::usage_key
    /// [`hash_usage_key`]: crate::report::rows::hash_usage_key
    pub fn id_of<E>(
        &mut self,
        account: u32,
        usage: &[u8],
        usage_hash: u64,
        is_new: impl FnOnce() -> Result<(ChargeCategory, u32), E>,
    ) -> Result<u64, E> {
        let mut hasher = FxHasher::default();
        hasher.write_u64(usage_hash);
        hasher.write_u32(account);
        let hash = hasher.finish();
        let account = account.to_le_bytes();
        let chunks = &self.chunks;
        let same = |known: &Usage| {
            known.hash == hash && {
                let (slot, key) = bytes(chunks, known.place).split_at(account.len());
                slot == account && key == usage
            }
        };
        let index = self.table.len();
        let index = match self.table.entry(hash, same, |known| known.hash) {
            hash_table::Entry::Occupied(entry) => entry.get().index,
            hash_table::Entry::Vacant(entry) => {
                let (category, service) = is_new()?;
                let index = u32::try_from(index).expect("fewer than 2^32 usages");
                let place = keep(&mut self.chunks, self.chunk, &account, usage);
                entry.insert(Usage { hash, index, place });
                self.infos.push(UsageInfo {
                    category,
                    service,
                    month: Sums::default(),
                });
                index
            }
        };
        Ok(u64::from(self.generation) << 32 | u64::from(index))
    }

    /// The most memory this generation can take once one more usage is added.
    pub fn peak_bytes_with_one_more(&self) -> usize {
        let (len, capacity, entry) = (self.table.len(), self.table.capacity(), size_of::<Usage>());
        table_bytes(capacity, entry)
            + growth_bytes(len, capacity, entry)
            + (self.chunks.len() + 1) * self.chunk
            + self.infos.capacity()
                * size_of::<UsageInfo>()
                * if len == self.infos.capacity() { 3 } else { 1 }
    }

    /// What is known of a usage of this generation beside its bytes.
    pub fn info_mut(&mut self, id: u64) -> &mut UsageInfo {
        debug_assert_eq!(id >> 32, u64::from(self.generation));
        &mut self.infos[(id & u64::from(u32::MAX)) as usize]
    }

    /// Every usage of this generation with its id and its month's sums, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8], &Sums)> {
        let generation = u64::from(self.generation) << 32;
        self.table.iter().map(move |usage| {
            (
                generation | u64::from(usage.index),
                bytes(&self.chunks, usage.place),
                &self.infos[usage.index as usize].month,
            )
        })
    }
}

/// The daily sums since the last run was written out, in a hash table of their keys.
///
/// A usage's first row of a day is added to the table; its next rows of that day are summed
/// beside it, in an open day (one of [`OPEN_DAYS`], by usage), and added to the table when the
/// usage's next day begins. A report written hour after hour thus touches the table twice per
/// usage and day instead of 24 times: its entries are spread over a table of the whole month,
/// each touch a cache miss, while the open days stay in the cache. A report in no order
/// touches it once per row, as it would anyway.
#[derive(Default)]
pub(super) struct DailySums {
    table: HashTable<(DailyKey, Sums)>,
    /// By usage index, modulo their number: [`FIRST_OPEN_DAYS`] with the first row,
    /// [`OPEN_DAYS`] once more usages come.
    open: Vec<Option<OpenDay>>,
}

/// How many usages may have a day open at once: a fixed, small memory (about 1.4 MB), and
/// beyond the usages of a realistic report (thousands); with more, usages take turns.
const OPEN_DAYS: usize = 8192;

/// The open days' slots until a report has more usages, then [`OPEN_DAYS`]: filling all of
/// them at once touched 1.4 MB for a small report of a few usages, more work than its rows
/// (the fill and its page faults were a fifth of a replica's samples reading 400-line
/// reports). Kept below malloc's threshold for a mapping of its own (128 KiB), so that freeing
/// it does not raise that threshold.
const FIRST_OPEN_DAYS: usize = 512;
const _: () = assert!(FIRST_OPEN_DAYS * size_of::<Option<OpenDay>>() < 128 << 10);

/// A usage's rows of one day after the first, not yet added to the table, and where its key's
/// entry is.
#[derive(Clone, Copy)]
struct OpenDay {
    usage: u64,
    account: u32,
    day: Option<NaiveDate>,
    bucket: usize,
    sums: WideSums,
}

impl OpenDay {
    fn add_to(self, table: &mut HashTable<(DailyKey, Sums)>) -> Result<(), u32> {
        if self.sums.line_items == 0 {
            return Ok(());
        }
        let (_, sums) = table
            .get_bucket_mut(self.bucket)
            .expect("an open day's entry");
        let exact = self.sums.to_sums().and_then(|open| sums.add(&open));
        exact.ok_or(self.account)
    }
}

/// [`Sums`] as integers: the open days' sums, added to once per row.
#[derive(Clone, Copy, Default)]
struct WideSums {
    unblended_cost: Wide,
    blended_cost: Wide,
    amortized_cost: Wide,
    usage_quantity: Wide,
    line_items: u64,
}

impl WideSums {
    fn add(&mut self, sums: &Sums) -> Option<()> {
        self.unblended_cost.add(sums.unblended_cost)?;
        self.blended_cost.add(sums.blended_cost)?;
        self.amortized_cost.add(sums.amortized_cost)?;
        self.usage_quantity.add(sums.usage_quantity)?;
        self.line_items += sums.line_items;
        Some(())
    }

    /// The sums as decimals, or `None` where one needs more than 28 significant digits.
    fn to_sums(self) -> Option<Sums> {
        Some(Sums {
            unblended_cost: self.unblended_cost.to_decimal()?,
            blended_cost: self.blended_cost.to_decimal()?,
            amortized_cost: self.amortized_cost.to_decimal()?,
            usage_quantity: self.usage_quantity.to_decimal()?,
            line_items: self.line_items,
        })
    }
}

impl DailySums {
    /// Adds `sums` to `key`'s. Fails with the account whose daily sum would need more than 28
    /// significant digits (another than `key`'s, when the table grows).
    pub fn add(&mut self, key: DailyKey, sums: &Sums) -> Result<(), u32> {
        // A usage's index in its generation (ids count from 0 as usages are met): a slot each,
        // up to OPEN_DAYS, the slots closed and made more when more usages come.
        let index = key.usage as u32 as usize;
        if index >= self.open.len() && self.open.len() < OPEN_DAYS {
            self.close()?;
            let slots = if index < FIRST_OPEN_DAYS {
                FIRST_OPEN_DAYS
            } else {
                OPEN_DAYS
            };
            self.open = vec![None; slots];
        }
        // Both powers of two: a mask, not a division, for every row.
        let slot = index & (self.open.len() - 1);
        if let Some(open) = &mut self.open[slot]
            && open.usage == key.usage
            && open.account == key.account
            && open.day == key.day
        {
            return open.sums.add(sums).ok_or(key.account);
        }
        if let Some(open) = self.open[slot].take() {
            open.add_to(&mut self.table)?;
        }
        // Growing the table moves its entries: every open day is closed first.
        if self.table.len() == self.table.capacity() {
            self.close()?;
        }
        let hash_of = |key: &DailyKey| {
            let mut hasher = FxHasher::default();
            key.hash(&mut hasher);
            hasher.finish()
        };
        let entry = self.table.entry(
            hash_of(&key),
            |(known, _)| *known == key,
            |(key, _)| hash_of(key),
        );
        let mut entry = entry.or_insert_with(|| (key, Sums::default()));
        entry.get_mut().1.add(sums).ok_or(key.account)?;
        self.open[slot] = Some(OpenDay {
            usage: key.usage,
            account: key.account,
            day: key.day,
            bucket: entry.bucket_index(),
            sums: WideSums::default(),
        });
        Ok(())
    }

    /// Adds every open day to the table, for the sums to be read. Fails as [`DailySums::add`].
    pub fn close(&mut self) -> Result<(), u32> {
        (self.open.iter_mut().filter_map(Option::take))
            .try_for_each(|open| open.add_to(&mut self.table))
    }

    /// The most memory the sums can take once one more key is added: growing the table holds
    /// the old one beside the new one; writing a run out moves the entries to a vector to sort.
    pub fn peak_bytes_with_one_more(&self) -> usize {
        let entry = size_of::<(DailyKey, Sums)>();
        let (len, capacity) = (self.table.len(), self.table.capacity());
        let open = OPEN_DAYS * size_of::<Option<OpenDay>>();
        table_bytes(capacity, entry) + growth_bytes(len, capacity, entry).max(len * entry) + open
    }

    /// Every key and its sums, in no particular order: all of them once [`DailySums::close`]d.
    pub fn iter(&self) -> impl Iterator<Item = (DailyKey, &Sums)> {
        self.table.iter().map(|(key, sums)| (*key, sums))
    }

    /// Every key and its sums, in key order (the order of runs), once [`DailySums::close`]d;
    /// the table is emptied.
    pub fn take_sorted(&mut self) -> Vec<(DailyKey, Sums)> {
        debug_assert!(self.open.iter().all(Option::is_none), "an open day");
        let mut sorted: Vec<_> = std::mem::take(&mut self.table).into_iter().collect();
        self.open = Vec::new();
        sorted.sort_unstable_by_key(|(key, _)| *key);
        sorted
    }
}

/// The bytes of a hashbrown table of `capacity` entries of `entry` bytes (a control byte per
/// bucket, at most 7 entries per 8 buckets).
pub(super) fn table_bytes(capacity: usize, entry: usize) -> usize {
    (capacity * 8 / 7).next_power_of_two() * (entry + 1)
}

/// What adding an entry to a table of `len` entries in `capacity` allocates: growing holds the
/// old table beside the new one.
pub(super) fn growth_bytes(len: usize, capacity: usize, entry: usize) -> usize {
    if len == capacity {
        table_bytes(capacity * 2 + 1, entry)
    } else {
        0
    }
}

/// Copies `account` and `usage` into the arena, one after the other, in a new chunk when the
/// last one has no room.
fn keep(chunks: &mut Vec<Vec<u8>>, chunk: usize, account: &[u8], usage: &[u8]) -> (u32, u32, u32) {
    let length = account.len() + usage.len();
    let fits = |chunk: &Vec<u8>| chunk.capacity() - chunk.len() >= length;
    if !chunks.last().is_some_and(fits) {
        chunks.push(Vec::with_capacity(chunk.max(length)));
    }
    let index = chunks.len() - 1;
    let last = &mut chunks[index];
    let start = last.len();
    last.extend_from_slice(account);
    last.extend_from_slice(usage);
    (
        u32::try_from(index).expect("fewer than 2^32 chunks"),
        u32::try_from(start).expect("a chunk is smaller than 4 GiB"),
        u32::try_from(length).expect("a usage key is smaller than 4 GiB"),
    )
}

fn bytes(chunks: &[Vec<u8>], (chunk, start, length): (u32, u32, u32)) -> &[u8] {
    let start = start as usize;
    &chunks[chunk as usize][start..start + length as usize]
}

impl std::fmt::Debug for Usages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usages")
            .field("generation", &self.generation)
            .field("usages", &self.table.len())
            .finish()
    }
}

impl std::fmt::Debug for DailySums {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DailySums")
            .field("keys", &self.table.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::report::rows::hash_usage_key;

    proptest! {
        /// However the days of usages interleave (an hour-by-hour report, or one at random),
        /// however often the table and the open days grow, and whichever usages share an open
        /// day's slot (beyond OPEN_DAYS usages, or of a later generation), the sums are each
        /// key's, as a map adds them up.
        #[test]
        fn open_days_add_up_to_each_keys_sums(
            rows in prop::collection::vec((
                prop_oneof![3 => 0..40u64, 1 => 0..20_000u64, 1 => (1u64 << 32)..(1u64 << 32) + 200],
                0..3u32, 1..5u32, -1000..1000i64, 0..6u32,
            ), 0..2000),
        ) {
            let mut sums = DailySums::default();
            let mut expected: BTreeMap<DailyKey, Sums> = BTreeMap::new();
            for (usage, account, day, mantissa, scale) in rows {
                let key = DailyKey {
                    account,
                    day: NaiveDate::from_ymd_opt(2017, 1, day),
                    usage,
                };
                let row = Sums {
                    unblended_cost: Decimal::new(mantissa, scale),
                    line_items: 1,
                    ..Sums::default()
                };
                sums.add(key, &row).unwrap();
                expected.entry(key).or_default().add(&row).unwrap();
            }
            sums.close().unwrap();
            // As text: the same digits, and the same scale.
            let text = |sums: &Sums| (sums.unblended_cost.to_string(), sums.line_items);
            let summed: BTreeMap<_, _> = sums.iter().map(|(key, sums)| (key, text(sums))).collect();
            let expected: BTreeMap<_, _> = expected.iter().map(|(key, sums)| (*key, text(sums))).collect();
            prop_assert_eq!(summed, expected);
        }
    }

    #[test]
    fn a_usage_keeps_its_id_within_a_generation() {
        let mut usages = Usages::within(64 << 20, 0);
        let mut checked = 0;
        // Each key under two accounts: two usages, each kept after its account's slot.
        for _ in 0..3 {
            for usage in 0..1000 {
                for account in [1u32, 2] {
                    let usage = format!("usage-{usage}");
                    let hash = hash_usage_key(usage.as_bytes());
                    let id = usages
                        .id_of(account, usage.as_bytes(), hash, || {
                            checked += 1;
                            Ok::<_, ()>((ChargeCategory::Usage, 0))
                        })
                        .unwrap();
                    let stored = usages.iter().find(|(known, ..)| *known == id).unwrap().1;
                    assert_eq!(stored, [&account.to_le_bytes(), usage.as_bytes()].concat());
                }
            }
        }
        assert_eq!((usages.iter().count(), checked), (2000, 2000));
        assert!(usages.peak_bytes_with_one_more() > 2000 * 16);
        let mut next = usages.next_generation();
        assert_eq!(next.iter().count(), 0);
        let id = next
            .id_of(1, b"usage-1", hash_usage_key(b"usage-1"), || {
                Ok::<_, ()>((ChargeCategory::Fee, 7))
            })
            .unwrap();
        assert_eq!(id, 1 << 32, "a new generation numbers its usages anew");
        assert_eq!(next.info_mut(id).category, ChargeCategory::Fee);
        assert_eq!(next.info_mut(id).service, 7);
    }
}
