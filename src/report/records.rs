//! CSV records (RFC 4180) from any byte stream, split with SIMD searches (`memchr`).
//!
//! Why not the `csv` crate: its byte-at-a-time state machine was 40% of the CPU time of a whole
//! report (DBR fields are all quoted and short), and the parse thread is the pipeline's
//! bottleneck. Here a quoted field is one search for the next `"`, an unquoted one a search for
//! `,` or `\n`. Records are borrowed from the buffer; only fields with `""` escapes are copied.
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

/// Where a field's bytes are: in the input buffer, or unescaped into the scratch space.
#[derive(Clone, Copy, Debug)]
enum Field {
    Raw(usize, usize),
    Unescaped(usize, usize),
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
    fields: Vec<Field>,
    scratch: Vec<u8>,
    /// Whether a byte-order mark at the start was looked for.
    bom_skipped: bool,
}

/// One record, borrowed from the reader until the next call.
pub struct Record<'a> {
    buf: &'a [u8],
    scratch: &'a [u8],
    fields: &'a [Field],
    /// The buffer before the record, and the lines before that: the line number, when asked.
    before: &'a [u8],
    lines_dropped: u64,
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn get(&self, index: usize) -> &'a [u8] {
        match self.fields[index] {
            Field::Raw(from, to) => &self.buf[from..to],
            Field::Unescaped(from, to) => &self.scratch[from..to],
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
    /// The field being read is longer than [`MAX_FIELD`].
    TooLong,
}

/// Splits the unquoted fields from `at` on into `fields`, until a quoted field starts or the
/// record ends. A CUR line is about 200 fields, most of them empty or a few bytes long: a
/// search per field cost more than the field. Here the bytes are looked at eight at a time in a
/// `u64` (SWAR), and every `,`, `\n` and `"` of a word is taken from its bit mask in turn. A `"`
/// inside an unquoted field is text, and a `\r` before the line end is dropped, as before.
fn unquoted_fields(buf: &[u8], at: usize, eof: bool, fields: &mut Vec<Field>) -> Run {
    let end = buf.len();
    let mut field = at;
    let mut word_at = at;
    while word_at < end {
        let (mut found, len) = match buf.get(word_at..word_at + 8) {
            Some(word) => {
                let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
                let found =
                    bytes_equal(word, b',') | bytes_equal(word, b'\n') | bytes_equal(word, b'"');
                (found, 8)
            }
            None => {
                let tail = &buf[word_at..];
                let found = tail.iter().enumerate().fold(0u64, |found, (i, &b)| {
                    let delimiter = matches!(b, b',' | b'\n' | b'"');
                    found | (u64::from(delimiter) << (8 * i + 7))
                });
                (found, tail.len())
            }
        };
        while found != 0 {
            let at = word_at + found.trailing_zeros() as usize / 8;
            found &= found - 1;
            match buf[at] {
                b'"' if at == field => return Run::Quoted(at),
                b'"' => {}
                b',' => {
                    if at - field > MAX_FIELD {
                        return Run::TooLong;
                    }
                    fields.push(Field::Raw(field, at));
                    field = at + 1;
                }
                _ => return line_end(buf, field, at, fields),
            }
        }
        word_at += len;
        if word_at - field > MAX_FIELD + 1 {
            return Run::TooLong;
        }
    }
    if !eof {
        return Run::Ends(Split::NeedMore);
    }
    // The end of the input ends the record.
    match line_end(buf, field, end, fields) {
        Run::Ends(Split::Record(_)) => Run::Ends(Split::Record(end)),
        other => other,
    }
}

/// The last field of a record, `buf[field..at]` without a `\r` before the line end at `at`.
fn line_end(buf: &[u8], field: usize, at: usize, fields: &mut Vec<Field>) -> Run {
    let trimmed = if at > field && buf[at - 1] == b'\r' {
        at - 1
    } else {
        at
    };
    if trimmed - field > MAX_FIELD {
        return Run::TooLong;
    }
    fields.push(Field::Raw(field, trimmed));
    Run::Ends(Split::Record(at + 1))
}

/// The high bit of each byte of `word` that equals `byte`, and no other bit (exact: no carry
/// crosses a byte).
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
            fields: Vec::new(),
            scratch: Vec::new(),
            bom_skipped: false,
        }
    }

    /// The line reached: the one the next record starts on.
    pub fn line(&self) -> u64 {
        line_after(self.lines_dropped, &self.buf[..self.start])
    }

    /// The next record, or `None` at the end of the input. Blank lines are skipped, and so is a
    /// UTF-8 byte-order mark before the first record.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, RecordError> {
        if !self.bom_skipped {
            while self.end < BOM.len() && !self.eof {
                self.refill()?;
            }
            if self.buf[..self.end].starts_with(BOM) {
                self.start = BOM.len();
            }
            self.bom_skipped = true;
        }
        loop {
            let split = self.split();
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
                    return Ok(Some(Record {
                        buf: &self.buf,
                        scratch: &self.scratch,
                        fields: &self.fields,
                        before: &self.buf[..at],
                        lines_dropped: self.lines_dropped,
                    }));
                }
                Split::Blank(next) => self.start = next,
                Split::NeedMore if self.eof => return Ok(None),
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

    fn field_too_long(&self) -> Split {
        let message = format!(
            "field {} is longer than {} KiB",
            self.fields.len() + 1,
            MAX_FIELD >> 10
        );
        Split::Malformed(self.start, message)
    }

    /// Splits one record off `buf[start..end]` into `fields`. At EOF, the end of the bytes ends
    /// the record.
    fn split(&mut self) -> Split {
        let (buf, end, eof) = (&self.buf[..self.end], self.end, self.eof);
        self.fields.clear();
        self.scratch.clear();
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
                let mut from = at + 1;
                let mut escaped: Option<usize> = None; // scratch offset, once a `""` was seen
                loop {
                    let Some(found) = memchr(b'"', &buf[from..]) else {
                        return if end - (at + 1) > MAX_FIELD {
                            self.field_too_long()
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
                                return self.field_too_long();
                            }
                            match escaped {
                                Some(scratch_from) => {
                                    self.scratch.extend_from_slice(&buf[from..quote]);
                                    self.fields
                                        .push(Field::Unescaped(scratch_from, self.scratch.len()));
                                }
                                None => self.fields.push(Field::Raw(at + 1, quote)),
                            }
                            at = quote + 1;
                            break;
                        }
                    }
                }
            } else {
                match unquoted_fields(buf, at, eof, &mut self.fields) {
                    Run::Quoted(quote) => {
                        at = quote;
                        continue;
                    }
                    Run::Ends(split) => return split,
                    Run::TooLong => return self.field_too_long(),
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
        let mut reader = Records::new(text);
        let mut all = Vec::new();
        while let Some(record) = reader
            .next_record()
            .map_err(|e| format!("line {}: {}", e.line, e.message))?
        {
            all.push((record.line(), record.iter().map(<[u8]>::to_vec).collect()));
        }
        Ok(all)
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
        // Fewer cases than elsewhere: the read tests feed these bytes through records too.
        #![proptest_config(crate::report::proptest_config(500))]


        /// Any bytes, however they arrive, end in records or an error, never a panic.
        #[test]
        fn arbitrary_bytes_end_in_records_or_an_error(
            bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'"'), Just(b','), Just(b'\n'), Just(b'\r')], 0..512),
            trickle in prop_oneof![1usize..8, 64usize..4096],
        ) {
            let mut reader = Records::new(Trickle(&bytes, trickle));
            for _ in 0..=bytes.len() {
                match reader.next_record() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
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
            trickle in 1usize..7,
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
