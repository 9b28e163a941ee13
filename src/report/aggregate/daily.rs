//! The daily grain's two tables: each distinct usage (product, usage type, operation, zone,
//! resource, tags) once, under an id, its bytes in an arena of fixed-size chunks; and the daily
//! sums keyed by (account, day, usage id). A report has far fewer usages than daily keys (a
//! resource's usage recurs every day), so the daily keys stay small, and the store writes the
//! usages once per report instead of once per day.

use std::hash::{Hash, Hasher};

use chrono::NaiveDate;
use hashbrown::{HashTable, hash_table};
use rustc_hash::FxHasher;

use super::Sums;
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

    /// The id of the usage whose key is `usage`; `is_new` runs before one is added (to check
    /// its fields and derive what it is, once per usage, not once per row).
    pub fn id_of<E>(
        &mut self,
        usage: &[u8],
        is_new: impl FnOnce() -> Result<(ChargeCategory, u32), E>,
    ) -> Result<u64, E> {
        let mut hasher = FxHasher::default();
        hasher.write(usage);
        let hash = hasher.finish();
        let chunks = &self.chunks;
        let same = |known: &Usage| known.hash == hash && bytes(chunks, known.place) == usage;
        let index = self.table.len();
        let index = match self.table.entry(hash, same, |known| known.hash) {
            hash_table::Entry::Occupied(entry) => entry.get().index,
            hash_table::Entry::Vacant(entry) => {
                let (category, service) = is_new()?;
                let index = u32::try_from(index).expect("fewer than 2^32 usages");
                let place = keep(&mut self.chunks, self.chunk, usage);
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

/// The daily sums since the last run was written out, in a hash table of their keys. Each
/// usage remembers where its last (account, day) is in the table, which a report written hour
/// after hour hits 23 times out of 24 without hashing, in a small working set.
#[derive(Default)]
pub(super) struct DailySums {
    table: HashTable<(DailyKey, Sums)>,
    /// By a usage's index in its generation: its last account and day, and their bucket.
    recent: Vec<Option<(u32, Option<NaiveDate>, usize)>>,
}

impl DailySums {
    pub fn sums_of(&mut self, key: DailyKey) -> &mut Sums {
        let local = (key.usage & u64::from(u32::MAX)) as usize;
        if local >= self.recent.len() {
            self.recent.resize(local + 1, None);
        }
        // Buckets move when the table grows, and then `recent` is cleared; the key is checked
        // all the same, as it costs nothing once the entry is read.
        if let Some((account, day, bucket)) = self.recent[local]
            && account == key.account
            && day == key.day
            && self
                .table
                .get_bucket(bucket)
                .is_some_and(|(known, _)| *known == key)
        {
            return &mut self.table.get_bucket_mut(bucket).expect("just read").1;
        }
        let mut hasher = FxHasher::default();
        key.hash(&mut hasher);
        let hash = hasher.finish();
        let grows = self.table.len() == self.table.capacity();
        let hash_of = |(key, _): &(DailyKey, Sums)| {
            let mut hasher = FxHasher::default();
            key.hash(&mut hasher);
            hasher.finish()
        };
        let entry = match self.table.entry(hash, |(known, _)| *known == key, hash_of) {
            hash_table::Entry::Occupied(entry) => entry,
            hash_table::Entry::Vacant(entry) => {
                if grows {
                    self.recent.iter_mut().for_each(|recent| *recent = None);
                }
                entry.insert((key, Sums::default()))
            }
        };
        self.recent[local] = Some((key.account, key.day, entry.bucket_index()));
        &mut entry.into_mut().1
    }

    /// The most memory the sums can take once one more key is added: growing the table holds
    /// the old one beside the new one; writing a run out moves the entries to a vector to sort.
    pub fn peak_bytes_with_one_more(&self) -> usize {
        let entry = size_of::<(DailyKey, Sums)>();
        let (len, capacity) = (self.table.len(), self.table.capacity());
        let recent = size_of::<Option<(u32, Option<NaiveDate>, usize)>>();
        let recent = self.recent.capacity()
            * recent
            * if self.recent.len() == self.recent.capacity() {
                3
            } else {
                1
            };
        table_bytes(capacity, entry) + growth_bytes(len, capacity, entry).max(len * entry) + recent
    }

    /// Every key and its sums, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (DailyKey, &Sums)> {
        self.table.iter().map(|(key, sums)| (*key, sums))
    }

    /// Every key and its sums, in key order (the order of runs); the table is emptied.
    pub fn take_sorted(&mut self) -> Vec<(DailyKey, Sums)> {
        let mut sorted: Vec<_> = std::mem::take(&mut self.table).into_iter().collect();
        self.recent = Vec::new();
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

/// Copies `usage` into the arena, in a new chunk when the last one has no room.
fn keep(chunks: &mut Vec<Vec<u8>>, chunk: usize, usage: &[u8]) -> (u32, u32, u32) {
    let fits = |chunk: &Vec<u8>| chunk.capacity() - chunk.len() >= usage.len();
    if !chunks.last().is_some_and(fits) {
        chunks.push(Vec::with_capacity(chunk.max(usage.len())));
    }
    let index = chunks.len() - 1;
    let last = &mut chunks[index];
    let start = last.len();
    last.extend_from_slice(usage);
    (
        u32::try_from(index).expect("fewer than 2^32 chunks"),
        u32::try_from(start).expect("a chunk is smaller than 4 GiB"),
        u32::try_from(usage.len()).expect("a usage key is smaller than 4 GiB"),
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
    use super::*;

    #[test]
    fn a_usage_keeps_its_id_within_a_generation() {
        let mut usages = Usages::within(64 << 20, 0);
        let mut checked = 0;
        for _ in 0..3 {
            for usage in 0..1000 {
                let usage = format!("usage-{usage}");
                let id = usages
                    .id_of(usage.as_bytes(), || {
                        checked += 1;
                        Ok::<_, ()>((ChargeCategory::Usage, 0))
                    })
                    .unwrap();
                let stored = usages.iter().find(|(known, ..)| *known == id).unwrap().1;
                assert_eq!(stored, usage.as_bytes());
            }
        }
        assert_eq!((usages.iter().count(), checked), (1000, 1000));
        assert!(usages.peak_bytes_with_one_more() > 1000 * 12);
        let mut next = usages.next_generation();
        assert_eq!(next.iter().count(), 0);
        let id = next
            .id_of(b"usage-1", || Ok::<_, ()>((ChargeCategory::Fee, 7)))
            .unwrap();
        assert_eq!(id, 1 << 32, "a new generation numbers its usages anew");
        assert_eq!(next.info_mut(id).category, ChargeCategory::Fee);
        assert_eq!(next.info_mut(id).service, 7);
    }
}
