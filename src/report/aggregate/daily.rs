//! The daily grain's two tables: each distinct usage (product, usage type, operation, zone,
//! resource, tags) once, under an id, its bytes in an arena of fixed-size chunks; and the daily
//! sums keyed by (account, day, usage id). A report has far fewer usages than daily keys (a
//! resource's usage recurs every day), so the daily keys stay small, and the store writes the
//! usages once per report instead of once per day.

use std::hash::Hasher;

use chrono::NaiveDate;
use hashbrown::{HashTable, hash_table};
use rustc_hash::FxHasher;

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
    /// (hash of the bytes, index) per usage.
    table: HashTable<(u64, u32)>,
    /// Each index's bytes: chunk, start and length in the arena.
    places: Vec<(u32, u32, u32)>,
    chunks: Vec<Vec<u8>>,
    chunk: usize,
}

impl Usages {
    /// An empty generation for a memory budget of `budget` bytes.
    pub fn within(budget: usize, generation: u32) -> Usages {
        Usages {
            generation,
            table: HashTable::new(),
            places: Vec::new(),
            chunks: Vec::new(),
            chunk: (budget / 16).clamp(*CHUNKS.start(), *CHUNKS.end()),
        }
    }

    /// The next generation, empty; this one's memory is freed.
    pub fn next_generation(&self) -> Usages {
        Usages::within(self.chunk * 16, self.generation + 1)
    }

    /// The id of the usage whose key is `usage`; `is_new` runs before one is added (to check
    /// its fields once per usage, not once per row).
    pub fn id_of<E>(
        &mut self,
        usage: &[u8],
        is_new: impl FnOnce() -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut hasher = FxHasher::default();
        hasher.write(usage);
        let hash = hasher.finish();
        let (places, chunks) = (&self.places, &self.chunks);
        let same =
            |&(h, index): &(u64, u32)| h == hash && bytes(chunks, places[index as usize]) == usage;
        let index = match self.table.entry(hash, same, |&(h, _)| h) {
            hash_table::Entry::Occupied(entry) => entry.get().1,
            hash_table::Entry::Vacant(entry) => {
                is_new()?;
                let index = u32::try_from(self.places.len()).expect("fewer than 2^32 usages");
                self.places.push(keep(&mut self.chunks, self.chunk, usage));
                entry.insert((hash, index));
                index
            }
        };
        Ok(u64::from(self.generation) << 32 | u64::from(index))
    }

    /// The most memory this generation can take once one more usage is added.
    pub fn peak_bytes_with_one_more(&self) -> usize {
        let (len, capacity) = (self.table.len(), self.table.capacity());
        let table = table_bytes(capacity, 16) + growth_bytes(len, capacity, 16);
        let places = self.places.capacity() * size_of::<(u32, u32, u32)>();
        let places = if self.places.len() == self.places.capacity() {
            places * 3
        } else {
            places
        };
        table + places + (self.chunks.len() + 1) * self.chunk
    }

    /// Every usage of this generation with its id, in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let generation = u64::from(self.generation) << 32;
        self.places
            .iter()
            .enumerate()
            .map(move |(index, &place)| (generation | index as u64, bytes(&self.chunks, place)))
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
            .field("usages", &self.places.len())
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
                        Ok::<_, ()>(())
                    })
                    .unwrap();
                assert_eq!(usages.iter().nth(id as usize).unwrap().1, usage.as_bytes());
            }
        }
        assert_eq!((usages.iter().count(), checked), (1000, 1000));
        assert!(usages.peak_bytes_with_one_more() > 1000 * 12);
        let mut next = usages.next_generation();
        assert_eq!(next.iter().count(), 0);
        let id = next.id_of(b"usage-1", || Ok::<_, ()>(())).unwrap();
        assert_eq!(id, 1 << 32, "a new generation numbers its usages anew");
    }
}
