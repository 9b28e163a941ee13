//! CSV records (RFC 4180) from any byte stream, split with SIMD searches.
//!
//! Why not the `csv` crate: its byte-at-a-time state machine was 40% of the CPU time of a whole
//! report (DBR fields are all quoted and short), and the parse thread is the pipeline's
//! bottleneck. Here a quoted field is one search for the next `"` (`memchr`), and runs of
//! unquoted fields (a CUR's) are split 64 bytes at a time from bit masks of their delimiters
//! ([`unquoted_fields`]). A reader may [`Records::project`] the records onto the columns it
//! reads: the others are counted, not recorded. Records are borrowed from the buffer; only
//! fields with `""` escapes are copied.
//! What it does not do: other delimiters, comments, or the csv crate's leniency about text after a
//! closing quote (an error here: a billing report should not have it).
//!
//! Line numbers are only needed for errors, so they are counted lazily.
//!
//! Limits: a record of more than [`MAX_RECORD`] bytes or a field of more than [`MAX_FIELD`] is an
//! error, so a report without line ends (or with a quote never closed) costs bounded memory and
//! time. Real DBR records are a few hundred bytes.

use std::io::{self, Read};

use memchr::{memchr, memchr_iter};

const INITIAL_BUFFER: usize = 256 * 1024;
/// The longest record read, line ends included.
pub const MAX_RECORD: usize = 1 << 20;
/// The longest field read: far above any DBR field (descriptions, ARNs, tag values).
pub const MAX_FIELD: usize = 64 << 10;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A malformed record, or the input failing.
#[derive(Debug)]
pub struct RecordError {
    pub line: u64,
    pub message: String,
}

/// Where a field's bytes are: `from..to` in the input buffer, or, with [`Field::UNESCAPED`] set
/// in `from`, in the scratch space. (Both are far smaller than 2 GiB: a record is at most
/// [`MAX_RECORD`] bytes, and a batch's buffer holds a few.) Eight bytes: a batch holds one per
/// field, on its way to another thread.
#[derive(Clone, Copy, Debug, Default)]
struct Field {
    from: u32,
    to: u32,
}

impl Field {
    const UNESCAPED: u32 = 1 << 31;

    fn raw(from: usize, to: usize) -> Field {
        Field {
            from: from as u32,
            to: to as u32,
        }
    }

    fn unescaped(from: usize, to: usize) -> Field {
        Field {
            from: from as u32 | Field::UNESCAPED,
            to: to as u32,
        }
    }
}

/// Reads CSV records one at a time, reusing its buffers.
pub struct Records<R> {
    input: R,
    buf: Vec<u8>,
    /// Unparsed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    /// Newlines in the bytes already dropped from the front of `buf`.
    lines_dropped: u64,
    kept: Kept,
    scratch: Vec<u8>,
    /// Whether a byte-order mark at the start was looked for.
    bom_skipped: bool,
    /// A malformed record found after others of a batch: the next call's error.
    malformed: Option<RecordError>,
}

/// The fields of the record being split: every one, or (once [`Records::project`] was called)
/// only the columns asked for, each at its column's index.
///
/// Why: a CUR line has about 200 fields and a reader needs about 40. Counting the fields it
/// does not need, with one instruction for a block's, costs far less than recording each (see
/// [`unquoted_fields`]).
struct Kept {
    /// The record's fields from `base` on; before, those of the batch's records so far.
    fields: Vec<Field>,
    base: usize,
    projection: Option<Projection>,
    /// The fields split so far: the index of the next one.
    count: usize,
}

struct Projection {
    /// For each column, where its field is kept: at its own index if wanted, else in the
    /// last slot, never read. (A store to a slot costs less than a branch mispredicted: which
    /// columns are wanted follows no pattern the processor learns.)
    slots: Vec<usize>,
    /// The wanted columns, a bit each (the lowest bit of the first word is column 0).
    wanted: Vec<u64>,
}

impl Kept {
    /// A record starts, its fields kept from `fields[base]` on (those before are a batch's).
    fn start(&mut self, base: usize) {
        self.count = 0;
        self.base = base;
        self.fields.truncate(base);
        if let Some(projection) = &self.projection {
            self.fields
                .resize(base + projection.slots.len() + 1, Field::default());
        }
    }

    #[inline]
    fn keep(&mut self, field: Field) {
        self.keep_at(self.count, field);
        self.count += 1;
    }

    /// The fields kept, by column (without the slot of those not kept).
    fn by_column(&self) -> &[Field] {
        match &self.projection {
            None => &self.fields[self.base..],
            Some(projection) => &self.fields[self.base..self.base + projection.slots.len()],
        }
    }

    /// Keeps `field` as the record's field `index`, which is the next one (`count`, kept in a
    /// register by a caller that splits many).
    #[inline]
    fn keep_at(&mut self, index: usize, field: Field) {
        match &self.projection {
            None => self.fields.push(field),
            Some(projection) => {
                let slot = projection.slots.get(index);
                self.fields[self.base + slot.copied().unwrap_or(projection.slots.len())] = field;
            }
        }
    }

    /// Which of the `n` fields (1 to 64) from field `index` on are wanted, a bit each; `None`
    /// when every field is kept.
    fn wanted_among(&self, index: usize, n: u32) -> Option<Mask> {
        let projection = self.projection.as_ref()?;
        let word = |at: usize| projection.wanted.get(at).copied().unwrap_or(0);
        let (at, shift) = (index / 64, index % 64);
        let bits = (u128::from(word(at + 1)) << 64 | u128::from(word(at))) >> shift;
        Some(bits as Mask & Mask::MAX >> (Mask::BITS - n))
    }
}

/// One record, borrowed from the reader until the next call.
pub struct Record<'a> {
    buf: &'a [u8],
    scratch: &'a [u8],
    fields: &'a [Field],
    len: usize,
    /// The buffer before the record, and the lines before that: the line number, when asked.
    before: &'a [u8],
    lines_dropped: u64,
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The field at `index`; empty for a column not projected, or past the record's end.
    pub fn get(&self, index: usize) -> &'a [u8] {
        match self.fields.get(index) {
            Some(&Field { from, to }) if index < self.len && from & Field::UNESCAPED == 0 => {
                &self.buf[from as usize..to as usize]
            }
            Some(&Field { from, to }) if index < self.len => {
                &self.scratch[(from & !Field::UNESCAPED) as usize..to as usize]
            }
            _ => &[],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The line the record starts on, counting from 1.
    pub fn line(&self) -> u64 {
        line_after(self.lines_dropped, self.before)
    }
}

fn line_after(lines_dropped: u64, before: &[u8]) -> u64 {
    lines_dropped + memchr_iter(b'\n', before).count() as u64 + 1
}

/// Records split by [`Records::next_batch`]: the bytes of whole records and where their
/// fields are.
#[derive(Default)]
pub struct Batch {
    buf: Vec<u8>,
    scratch: Vec<u8>,
    fields: Vec<Field>,
    records: Vec<Span>,
    /// Newlines before `buf`.
    lines_dropped: u64,
}

/// Where one record of a [`Batch`] is: it starts at `buf[start]`, and its `stored` fields
/// (by column) from `fields[first]`; it has `len` fields.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    first: u32,
    stored: u32,
    len: u32,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The batch's record `index`.
    pub fn record(&self, index: usize) -> Record<'_> {
        let span = self.records[index];
        let first = span.first as usize;
        Record {
            buf: &self.buf,
            scratch: &self.scratch,
            fields: &self.fields[first..first + span.stored as usize],
            len: span.len as usize,
            before: &self.buf[..span.start as usize],
            lines_dropped: self.lines_dropped,
        }
    }
}

/// What [`Records::advance`] found.
enum Next {
    /// A record, split into `kept`, that starts at this offset.
    Record(usize),
    /// The buffered bytes end within the next record.
    NeedMore,
    End,
}

/// What splitting the buffered bytes found.
enum Split {
    /// A record ends at this offset (after its line terminator).
    Record(usize),
    /// Only blank line(s) up to this offset.
    Blank(usize),
    /// The record runs past the buffered bytes.
    NeedMore,
    Malformed(usize, String),
}

/// How a run of unquoted fields ended.
enum Run {
    /// A quoted field starts here.
    Quoted(usize),
    /// The record ended (or more bytes are needed to end it).
    Ends(Split),
    /// The field being read (this one of the record) is longer than [`MAX_FIELD`].
    TooLong(usize),
}

/// Splits the unquoted fields from `at` on into `kept`, until a quoted field starts or the
/// record ends. A CUR line is about 200 fields, most of them empty or a few bytes long: a
/// search per field cost more than the field. Here the bytes are looked at a [`BLOCK`] at a
/// time, as bit masks of their `,` and of their `\n` and `"` ([`block_masks`]). The commas
/// before a block's first `\n` or `"` each end a field: those up to the last one kept are
/// taken from the mask, the rest counted at once. A `"` inside an unquoted field is text, and
/// a `\r` before the line end is dropped, as before.
fn unquoted_fields(buf: &[u8], at: usize, eof: bool, kept: &mut Kept) -> Run {
    let end = buf.len();
    let mut field = at;
    let mut block_at = at;
    // The field count, in a register while the run lasts: through memory, each field waited
    // for the last one's store.
    let mut count = kept.count;
    while block_at < end {
        let ((mut commas, mut stops), len) = match buf.get(block_at..block_at + BLOCK) {
            Some(block) => (block_masks(block.try_into().expect("a block")), BLOCK),
            None => (tail_masks(&buf[block_at..]), end - block_at),
        };
        loop {
            // The commas before the next `"` or `\n` (all of them when there is none).
            let ends = commas & (stops.wrapping_sub(1) & !stops);
            commas &= !ends;
            let fields = ends.count_ones() as usize;
            if fields > 0 {
                // Only the first can have begun before the block.
                if block_at + ends.trailing_zeros() as usize - field > MAX_FIELD {
                    return Run::TooLong(count);
                }
                let kept_fields = kept.wanted_among(count, fields as u32);
                let taken =
                    kept_fields.map_or(fields, |w| (Mask::BITS - w.leading_zeros()) as usize);
                let mut rest = ends;
                for _ in 0..taken {
                    let at = block_at + rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    kept.keep_at(count, Field::raw(field, at));
                    count += 1;
                    field = at + 1;
                }
                count += fields - taken;
                field = block_at + (Mask::BITS - ends.leading_zeros()) as usize;
            }
            if stops == 0 {
                break;
            }
            let at = block_at + stops.trailing_zeros() as usize;
            stops &= stops - 1;
            match buf[at] {
                b'"' if at == field => {
                    kept.count = count;
                    return Run::Quoted(at);
                }
                b'"' => {}
                _ => {
                    kept.count = count;
                    return line_end(buf, field, at, kept);
                }
            }
        }
        block_at += len;
        if block_at - field > MAX_FIELD + 1 {
            return Run::TooLong(count);
        }
    }
    kept.count = count;
    if !eof {
        return Run::Ends(Split::NeedMore);
    }
    // The end of the input ends the record.
    match line_end(buf, field, end, kept) {
        Run::Ends(Split::Record(_)) => Run::Ends(Split::Record(end)),
        other => other,
    }
}

/// How a run of simple quoted fields ended.
enum QuotedRun {
    /// The next field, not split yet, starts here.
    Next(usize),
    /// The record ended; the next one starts here.
    Ends(usize),
}

/// Splits the simple quoted fields from `at` on (a `"`, text without `"` or `\n`, a `"`, then
/// a `,` or the line's end) into `kept`. Each closing quote is the first bit of a mask of a
/// block's quotes and line ends ([`block_masks`]), and one block's mask serves all the fields
/// in it: a DBR's line is such fields, a few bytes long, and a search per field (`memchr`)
/// cost more than the field. Anything else (an escaped quote, a line end within quotes, the
/// end of the buffered bytes, an unquoted field) is left to the general path, from the start
/// of the field it is in.
fn quoted_fields(buf: &[u8], at: usize, kept: &mut Kept) -> QuotedRun {
    let end = buf.len();
    // The quotes and line ends of the bytes from `block_at` on, the first byte's lowest bit.
    let (mut block_at, mut stops): (usize, Mask) = (usize::MAX, 0);
    let mut field = at;
    // The field count, in a register while the run lasts (as in `unquoted_fields`).
    let mut count = kept.count;
    let run = loop {
        // `field` is an opening quote: the next quote or line end closes it, or not.
        let mut from = field + 1;
        let close = loop {
            if !(block_at..block_at.saturating_add(BLOCK)).contains(&from) {
                block_at = from;
                stops = match buf.get(from..from + BLOCK) {
                    Some(block) => block_masks(block.try_into().expect("a block")).1,
                    None => tail_masks(&buf[from..]).1,
                };
            }
            let ahead = stops >> (from - block_at);
            if ahead != 0 {
                break Some(from + ahead.trailing_zeros() as usize);
            }
            from = block_at + BLOCK;
            if from >= end || from - field > MAX_FIELD {
                break None;
            }
        };
        let Some(close) =
            close.filter(|&close| buf[close] == b'"' && close - (field + 1) <= MAX_FIELD)
        else {
            break QuotedRun::Next(field);
        };
        let (next, run) = match buf.get(close + 1) {
            Some(b',') => (close + 2, None),
            Some(b'\n') => (close + 2, Some(QuotedRun::Ends(close + 2))),
            Some(b'\r') if buf.get(close + 2) == Some(&b'\n') => {
                (close + 3, Some(QuotedRun::Ends(close + 3)))
            }
            _ => break QuotedRun::Next(field),
        };
        kept.keep_at(count, Field::raw(field + 1, close));
        count += 1;
        if let Some(run) = run {
            break run;
        }
        field = next;
        if buf.get(field) != Some(&b'"') {
            break QuotedRun::Next(field);
        }
    };
    kept.count = count;
    run
}

/// The bytes [`unquoted_fields`] looks at at once.
const BLOCK: usize = 64;
/// One bit per byte of a block, the first byte's lowest.
type Mask = u64;

/// Where a block's bytes are `,`, and where they are `\n` or `"`. On x86_64 with SSE2 (part of
/// every x86_64 processor): sixteen bytes per compare.
#[cfg(target_arch = "x86_64")]
fn block_masks(block: &[u8; BLOCK]) -> (Mask, Mask) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let sixteen = |bytes: &[u8; 16]| -> (Mask, Mask) {
        // SAFETY: SSE2 is part of x86_64, so every processor running this has these
        // instructions; the unaligned load reads the 16 bytes of `bytes`, no more.
        unsafe {
            let v = _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>());
            let equal =
                |byte: u8| _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(byte as i8))) as Mask;
            (equal(b','), equal(b'\n') | equal(b'"'))
        }
    };
    block
        .chunks_exact(16)
        .enumerate()
        .fold((0, 0), |(commas, stops), (i, bytes)| {
            let (more_commas, more_stops) = sixteen(bytes.try_into().expect("16 bytes"));
            (
                commas | more_commas << (16 * i),
                stops | more_stops << (16 * i),
            )
        })
}

#[cfg(not(target_arch = "x86_64"))]
fn block_masks(block: &[u8; BLOCK]) -> (Mask, Mask) {
    portable_block_masks(block)
}

/// [`block_masks`] eight bytes at a time in a `u64` (SWAR), for other processors.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn portable_block_masks(block: &[u8; BLOCK]) -> (Mask, Mask) {
    let (mut commas, mut stops) = (0, 0);
    for (i, word) in block.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        commas |= gather(bytes_equal(word, b',')) << (8 * i);
        stops |= gather(bytes_equal(word, b'\n') | bytes_equal(word, b'"')) << (8 * i);
    }
    (commas, stops)
}

/// The high bits of a word's bytes as the low eight bits of a mask: one multiplication moves
/// each to its place, and no two products overlap.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn gather(high_bits: u64) -> Mask {
    ((high_bits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as Mask
}

/// [`block_masks`] of the last bytes of the buffer, fewer than a block.
fn tail_masks(tail: &[u8]) -> (Mask, Mask) {
    tail.iter()
        .enumerate()
        .fold((0, 0), |(commas, stops), (i, &byte)| {
            (
                commas | Mask::from(byte == b',') << i,
                stops | Mask::from(matches!(byte, b'\n' | b'"')) << i,
            )
        })
}

/// The last field of a record, `buf[field..at]` without a `\r` before the line end at `at`.
fn line_end(buf: &[u8], field: usize, at: usize, kept: &mut Kept) -> Run {
    let trimmed = if at > field && buf[at - 1] == b'\r' {
        at - 1
    } else {
        at
    };
    if trimmed - field > MAX_FIELD {
        return Run::TooLong(kept.count);
    }
    kept.keep(Field::raw(field, trimmed));
    Run::Ends(Split::Record(at + 1))
}

/// The high bit of each byte of `word` that equals `byte`, and no other bit (exact: no carry
/// crosses a byte).
#[cfg(any(test, not(target_arch = "x86_64")))]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let x = word ^ (u64::from(byte) * 0x0101_0101_0101_0101);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

impl<R: Read> Records<R> {
    pub fn new(input: R) -> Records<R> {
        Records {
            input,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            eof: false,
            lines_dropped: 0,
            kept: Kept {
                fields: Vec::new(),
                base: 0,
                projection: None,
                count: 0,
            },
            scratch: Vec::new(),
            bom_skipped: false,
            malformed: None,
        }
    }

    /// From now on, keeps only the fields of `columns` (of a header `width` columns wide): the
    /// others read as empty, and are only counted.
    pub fn project(&mut self, columns: impl IntoIterator<Item = usize>, width: usize) {
        let mut wanted = vec![false; width];
        for column in columns {
            wanted[column] = true;
        }
        let slots = (0..width)
            .map(|column| if wanted[column] { column } else { width })
            .collect();
        let wanted = wanted
            .chunks(64)
            .map(|bits| (bits.iter().rev()).fold(0, |word, &bit| word << 1 | u64::from(bit)))
            .collect();
        self.kept = Kept {
            fields: Vec::new(),
            base: 0,
            projection: Some(Projection { slots, wanted }),
            count: 0,
        };
    }

    /// The line reached: the one the next record starts on.
    pub fn line(&self) -> u64 {
        line_after(self.lines_dropped, &self.buf[..self.start])
    }

    /// The next record, or `None` at the end of the input. Blank lines are skipped, and so is a
    /// UTF-8 byte-order mark before the first record.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, RecordError> {
        self.scratch.clear();
        self.kept.fields.clear();
        match self.advance(true)? {
            Next::Record(at) => Ok(Some(Record {
                buf: &self.buf,
                scratch: &self.scratch,
                fields: self.kept.by_column(),
                len: self.kept.count,
                before: &self.buf[..at],
                lines_dropped: self.lines_dropped,
            })),
            Next::End | Next::NeedMore => Ok(None),
        }
    }

    /// The next records, as many as the buffered bytes hold (at least one), or `None` at the end
    /// of the input: split here, to be read elsewhere (on another thread). The buffer goes with
    /// them, and what follows them begins a new one: `spare`'s, a batch read before (its
    /// memory is reused rather than allocated and zeroed again). Skips what
    /// [`Records::next_record`] skips. A malformed record ends the batch before it, and is the
    /// next call's error.
    pub fn next_batch(&mut self, spare: Option<Batch>) -> Result<Option<Batch>, RecordError> {
        if let Some(error) = self.malformed.take() {
            return Err(error);
        }
        let mut batch = spare.unwrap_or_default();
        batch.records.clear();
        // The records' fields are split straight into the batch's.
        self.kept.fields = std::mem::take(&mut batch.fields);
        self.kept.fields.clear();
        self.scratch.clear();
        loop {
            match self.advance(batch.records.is_empty()) {
                Ok(Next::Record(at)) => {
                    let (first, stored) = (self.kept.base, self.kept.by_column().len());
                    batch.records.push(Span {
                        start: at as u32,
                        first: first as u32,
                        stored: stored as u32,
                        len: self.kept.count as u32,
                    });
                    // (Projected, the slot of the fields not kept goes.)
                    self.kept.fields.truncate(first + stored);
                }
                Ok(Next::End | Next::NeedMore) => break,
                Err(error) if batch.records.is_empty() => return Err(error),
                Err(error) => {
                    self.malformed = Some(error);
                    break;
                }
            }
        }
        if batch.records.is_empty() {
            return Ok(None);
        }
        // Without the fields of a record split in part.
        let last = batch.records[batch.records.len() - 1];
        self.kept
            .fields
            .truncate((last.first + last.stored) as usize);
        batch.fields = std::mem::take(&mut self.kept.fields);
        // The bytes after the batch's records move to the front of the spare buffer.
        let rest = self.end - self.start;
        let mut next = std::mem::take(&mut batch.buf);
        if next.len() < rest.max(INITIAL_BUFFER) {
            next = vec![0; rest.max(INITIAL_BUFFER)];
        }
        next[..rest].copy_from_slice(&self.buf[self.start..self.end]);
        batch.buf = std::mem::replace(&mut self.buf, next);
        batch.lines_dropped = self.lines_dropped;
        self.lines_dropped += memchr_iter(b'\n', &batch.buf[..self.start]).count() as u64;
        (self.start, self.end) = (0, rest);
        std::mem::swap(&mut batch.scratch, &mut self.scratch);
        Ok(Some(batch))
    }

    /// Splits the next record off the buffered bytes into `kept`, reading more when they end
    /// within it (unless `refill` is false: then [`Next::NeedMore`]). The kept fields and the
    /// scratch space from their current lengths on are the record's.
    fn advance(&mut self, refill: bool) -> Result<Next, RecordError> {
        if !self.bom_skipped {
            while self.end < BOM.len() && !self.eof {
                self.refill()?;
            }
            if self.buf[..self.end].starts_with(BOM) {
                self.start = BOM.len();
            }
            self.bom_skipped = true;
        }
        let (scratch_from, fields_from) = (self.scratch.len(), self.kept.fields.len());
        loop {
            let split = self.split(scratch_from, fields_from);
            let reach = match split {
                Split::Record(next) => next,
                Split::NeedMore => self.end,
                _ => self.start,
            };
            if reach - self.start > MAX_RECORD {
                return Err(RecordError {
                    line: line_after(self.lines_dropped, &self.buf[..self.start]),
                    message: format!("record longer than {} MiB", MAX_RECORD >> 20),
                });
            }
            match split {
                Split::Record(next) => {
                    let at = self.start;
                    self.start = next;
                    return Ok(Next::Record(at));
                }
                Split::Blank(next) => self.start = next,
                Split::NeedMore if self.eof => return Ok(Next::End),
                Split::NeedMore if !refill => return Ok(Next::NeedMore),
                Split::NeedMore => self.refill()?,
                Split::Malformed(at, message) => {
                    return Err(RecordError {
                        line: line_after(self.lines_dropped, &self.buf[..at]),
                        message,
                    });
                }
            }
        }
    }

    /// Moves the unparsed bytes to the front (growing the buffer if one record fills it) and
    /// reads more. Sets `eof` when the input is exhausted.
    fn refill(&mut self) -> Result<(), RecordError> {
        self.lines_dropped += memchr_iter(b'\n', &self.buf[..self.start]).count() as u64;
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(RecordError {
                        line: line_after(self.lines_dropped, &self.buf[..self.end]),
                        message: format!("reading the report: {e}"),
                    });
                }
            }
        }
    }

    /// Field `index` (from 0) is longer than [`MAX_FIELD`].
    fn field_too_long(&self, index: usize) -> Split {
        let message = format!("field {} is longer than {} KiB", index + 1, MAX_FIELD >> 10);
        Split::Malformed(self.start, message)
    }

    /// Splits one record off `buf[start..end]` into the kept fields from `fields_from` on, its
    /// unescaped fields into the scratch space from `scratch_from` on. At EOF, the end of the bytes ends the record.
    fn split(&mut self, scratch_from: usize, fields_from: usize) -> Split {
        let (buf, end, eof) = (&self.buf[..self.end], self.end, self.eof);
        self.kept.start(fields_from);
        self.scratch.truncate(scratch_from);
        let mut at = self.start;
        if at == end {
            return Split::NeedMore;
        }
        if buf[at] == b'\n' || (buf[at] == b'\r' && buf.get(at + 1) == Some(&b'\n')) {
            return Split::Blank(at + if buf[at] == b'\n' { 1 } else { 2 });
        }
        loop {
            // One field, starting at `at`.
            if buf.get(at) == Some(&b'"') {
                match quoted_fields(buf, at, &mut self.kept) {
                    QuotedRun::Ends(next) => return Split::Record(next),
                    QuotedRun::Next(next) if next != at => {
                        at = next;
                        continue;
                    }
                    QuotedRun::Next(_) => {} // This field is not a simple one.
                }
                let mut from = at + 1;
                let mut escaped: Option<usize> = None; // scratch offset, once a `""` was seen
                loop {
                    let Some(found) = memchr(b'"', &buf[from..]) else {
                        return if end - (at + 1) > MAX_FIELD {
                            self.field_too_long(self.kept.count)
                        } else if eof {
                            Split::Malformed(self.start, "a quoted field is not closed".into())
                        } else {
                            Split::NeedMore
                        };
                    };
                    let quote = from + found;
                    match buf.get(quote + 1) {
                        Some(b'"') => {
                            // An escaped quote: keep the text so far and one `"`.
                            escaped.get_or_insert(self.scratch.len());
                            self.scratch.extend_from_slice(&buf[from..=quote]);
                            from = quote + 2;
                        }
                        None if !eof => return Split::NeedMore,
                        _ => {
                            if quote - (at + 1) > MAX_FIELD {
                                return self.field_too_long(self.kept.count);
                            }
                            match escaped {
                                Some(scratch_from) => {
                                    self.scratch.extend_from_slice(&buf[from..quote]);
                                    (self.kept)
                                        .keep(Field::unescaped(scratch_from, self.scratch.len()));
                                }
                                None => self.kept.keep(Field::raw(at + 1, quote)),
                            }
                            at = quote + 1;
                            break;
                        }
                    }
                }
            } else {
                match unquoted_fields(buf, at, eof, &mut self.kept) {
                    Run::Quoted(quote) => {
                        at = quote;
                        continue;
                    }
                    Run::Ends(split) => return split,
                    Run::TooLong(index) => return self.field_too_long(index),
                }
            }
            // After a field: a delimiter, the end of the record, or the end of the input.
            match buf.get(at) {
                Some(b',') => at += 1,
                Some(b'\n') => return Split::Record(at + 1),
                Some(b'\r') => match buf.get(at + 1) {
                    Some(b'\n') => return Split::Record(at + 2),
                    None if !eof => return Split::NeedMore,
                    _ => return Split::Record(at + 1),
                },
                None if eof => return Split::Record(at),
                None => return Split::NeedMore,
                Some(_) => {
                    return Split::Malformed(self.start, "text follows a closing quote".into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Each record as its line and its fields.
    type Lines = Vec<(u64, Vec<Vec<u8>>)>;

    fn records(text: &[u8]) -> Result<Lines, String> {
        match read_all(text) {
            (all, None) => Ok(all),
            (_, Some(error)) => Err(error),
        }
    }

    /// Every record up to the end or the first error, and that error.
    fn read_all(input: impl Read) -> (Lines, Option<String>) {
        let mut reader = Records::new(input);
        let mut all = Vec::new();
        loop {
            match reader.next_record() {
                Ok(Some(record)) => {
                    all.push((record.line(), record.iter().map(<[u8]>::to_vec).collect()))
                }
                Ok(None) => return (all, None),
                Err(e) => return (all, Some(format!("line {}: {}", e.line, e.message))),
            }
        }
    }

    /// [`read_all`], through batches (each reusing the memory of the one before).
    fn read_batches(input: impl Read) -> (Lines, Option<String>) {
        let mut reader = Records::new(input);
        let (mut all, mut spare) = (Vec::new(), None);
        loop {
            match reader.next_batch(spare.take()) {
                Ok(Some(batch)) => {
                    all.extend((0..batch.len()).map(|index| {
                        let record = batch.record(index);
                        (record.line(), record.iter().map(<[u8]>::to_vec).collect())
                    }));
                    spare = Some(batch);
                }
                Ok(None) => return (all, None),
                Err(e) => return (all, Some(format!("line {}: {}", e.line, e.message))),
            }
        }
    }

    fn strings(text: &str) -> Vec<(u64, Vec<String>)> {
        records(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(line, fields)| {
                (
                    line,
                    fields
                        .into_iter()
                        .map(|f| String::from_utf8(f).unwrap())
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_byte_is_found_in_a_word_exactly() {
        for byte in 0..=255u8 {
            for at in 0..8 {
                let mut word = [b'x'; 8];
                word[at] = byte;
                let found = bytes_equal(u64::from_le_bytes(word), b',');
                let expected = if byte == b',' { 0x80 << (8 * at) } else { 0 };
                assert_eq!(found, expected, "{byte} at {at}");
            }
        }
    }

    #[test]
    fn quoted_bare_empty_and_escaped_fields() {
        let text = "\"a\",b,,\"\",\"x, \"\"y\"\"\"\r\n\r\n1,\"multi\nline\",3\n\"last\"";
        assert_eq!(
            strings(text),
            [
                (
                    1,
                    vec![
                        "a".into(),
                        "b".into(),
                        "".into(),
                        "".into(),
                        "x, \"y\"".into()
                    ]
                ),
                (3, vec!["1".into(), "multi\nline".into(), "3".into()]),
                (5, vec!["last".into()]),
            ]
        );
    }

    #[test]
    fn malformed_records_name_their_line() {
        assert_eq!(
            records(b"a,b\n\"x\"y,z\n").unwrap_err(),
            "line 2: text follows a closing quote"
        );
        assert_eq!(
            records(b"a,b\nc,\"open\n").unwrap_err(),
            "line 2: a quoted field is not closed"
        );
    }

    #[test]
    fn records_longer_than_the_buffer() {
        let field = "x".repeat(MAX_FIELD);
        let fields = [field.as_str(); INITIAL_BUFFER * 3 / MAX_FIELD];
        let (quoted, bare) = (format!("\"{}\"", fields.join("\",\"")), fields.join(","));
        let text = format!("a,{quoted}\n{bare},b\n");
        let parsed = strings(&text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].1.len(), 1 + fields.len());
        assert_eq!(parsed[0].1[1], field);
        assert_eq!(parsed[1].1.last().unwrap(), "b");
    }

    #[test]
    fn a_record_or_field_without_end_is_cut_off_at_its_limit() {
        // Counts the bytes handed out: reading stops soon after the limit, not at the end.
        struct Endless(usize);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                buf.fill(b'x');
                self.0 += buf.len();
                Ok(buf.len())
            }
        }
        for (start, expected) in [
            ("a,b\n", "line 2: field 1 is longer than 64 KiB"),
            ("a,b\nc,\"", "line 2: field 2 is longer than 64 KiB"),
        ] {
            let mut input = start.as_bytes().chain(Endless(0));
            let mut reader = Records::new(&mut input);
            reader.next_record().unwrap();
            let error = reader.next_record().err().unwrap();
            assert_eq!(format!("line {}: {}", error.line, error.message), expected);
        }
        // Many short fields: the record's limit.
        let mut commas = Endless(0);
        let record = std::iter::repeat_n(b"x,".as_slice(), MAX_RECORD)
            .flatten()
            .copied()
            .collect::<Vec<u8>>();
        let mut reader = Records::new(record.as_slice().chain(&mut commas));
        let error = reader.next_record().err().unwrap();
        assert_eq!(
            (error.line, error.message.as_str()),
            (1, "record longer than 1 MiB")
        );
        assert!(commas.0 <= 4 * MAX_RECORD, "read {} bytes", commas.0);
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        assert_eq!(
            strings("\u{feff}\"InvoiceID\",b\nc,d\n"),
            [
                (1, vec!["InvoiceID".into(), "b".into()]),
                (2, vec!["c".into(), "d".into()])
            ]
        );
        assert_eq!(strings("\u{feff}"), []);
    }

    /// Feeds the input a few bytes at a time, to split records at every possible place.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    proptest! {
        /// Every way of finding a block's delimiters finds the same.
        #[test]
        fn block_masks_agree(block in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'"'), Just(b','), Just(b'\n')], BLOCK)) {
            let block: &[u8; BLOCK] = block.as_slice().try_into().unwrap();
            let expected = tail_masks(block);
            prop_assert_eq!(block_masks(block), expected);
            prop_assert_eq!(portable_block_masks(block), expected);
        }
    }

    proptest! {
        // Fewer cases than elsewhere: the read tests feed these bytes through records too.
        #![proptest_config(crate::report::proptest_config(500))]


        /// Any bytes, however they arrive, end in records or an error, never a panic.
        #[test]
        fn arbitrary_bytes_end_in_records_or_an_error(
            bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'"'), Just(b'"'), Just(b','), Just(b'\n'), Just(b'\r')], 0..512),
            trickle in prop_oneof![1usize..8, 64usize..4096],
        ) {
            // However they arrive: the same records, the same error. (Trickled, a field is
            // seldom whole in the buffer, and split by the general path.) In batches too, each
            // ending where the bytes read so far do, within a record.
            let whole = read_all(Trickle(&bytes, usize::MAX));
            prop_assert_eq!(read_all(Trickle(&bytes, trickle)), whole.clone());
            prop_assert_eq!(read_batches(Trickle(&bytes, trickle)), whole);
        }
    }

    proptest! {
        /// Projected, wide records keep the fields of the columns asked for, read every other
        /// one as empty, and still count them all.
        #[test]
        fn a_projection_keeps_the_columns_asked_for(
            rows in prop::collection::vec(prop::collection::vec("[a-z\",\r\n é]{0,6}", 1..150), 1..8),
            wanted in prop::collection::vec(any::<bool>(), 150),
            trickle in prop_oneof![1usize..8, 64usize..1024],
        ) {
            let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
            for row in &rows {
                writer.write_record(row).unwrap();
            }
            let text = writer.into_inner().unwrap();
            let width = rows[0].len();
            let check = |record: Record<'_>, row: &Vec<String>| {
                prop_assert_eq!(record.len(), row.len());
                for (column, field) in row.iter().enumerate() {
                    let expected = if column < width && wanted[column] { field.as_str() } else { "" };
                    prop_assert_eq!(record.get(column), expected.as_bytes(), "column {}", column);
                }
                Ok(())
            };
            let mut reader = Records::new(Trickle(&text, trickle));
            reader.project((0..width).filter(|&column| wanted[column]), width);
            for row in &rows {
                check(reader.next_record().unwrap().unwrap(), row)?;
            }
            prop_assert!(reader.next_record().unwrap().is_none());
            // The same, split in batches.
            let mut reader = Records::new(Trickle(&text, trickle));
            reader.project((0..width).filter(|&column| wanted[column]), width);
            let mut rows = rows.iter();
            while let Some(batch) = reader.next_batch(None).unwrap() {
                for index in 0..batch.len() {
                    check(batch.record(index), rows.next().unwrap())?;
                }
            }
            prop_assert!(rows.next().is_none());
        }
    }

    proptest! {
        /// Whatever the csv crate writes, these records read back the same, however the bytes
        /// arrive.
        #[test]
        fn reads_back_what_the_csv_crate_writes(
            rows in prop::collection::vec(prop::collection::vec("[a-z\",\r\n é]{0,6}", 1..5), 1..20),
            crlf: bool,
            always_quote: bool,
            trickle in prop_oneof![1usize..7, Just(usize::MAX)],
        ) {
            let mut writer = csv::WriterBuilder::new()
                .flexible(true)
                .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
                .quote_style(if always_quote { csv::QuoteStyle::Always } else { csv::QuoteStyle::Necessary })
                .from_writer(Vec::new());
            for row in &rows {
                writer.write_record(row).unwrap();
            }
            let text = writer.into_inner().unwrap();
            let mut reader = Records::new(Trickle(&text, trickle));
            let mut lines = 1;
            for row in &rows {
                let record = reader.next_record().unwrap().unwrap();
                let fields: Vec<String> = record.iter().map(|f| String::from_utf8(f.to_vec()).unwrap()).collect();
                prop_assert_eq!(&fields, row);
                prop_assert!(record.line() >= lines);
                lines = record.line();
            }
            prop_assert!(reader.next_record().unwrap().is_none());
        }
    }
}
