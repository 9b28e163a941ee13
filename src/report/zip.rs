//! Streaming reader for the single member of a `.csv.zip`.
//!
//! It reads the local file header, inflates the member as its bytes arrive and, at the member's
//! end, checks CRC-32 and both sizes against the header or the data descriptor (32-bit or ZIP64).
//! It never seeks and never reads the central directory, so an S3 body works as well as a file.
//! It is not a general ZIP library: one member, deflate or stored, no encryption.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_compression::tokio::bufread::DeflateDecoder;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, ReadBuf};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const LOCAL_HEADER_LEN: usize = 30;
const ZIP64_EXTRA: u16 = 0x0001;
const FLAG_ENCRYPTED: u16 = 1 << 0;
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATE: u16 = 8;

/// What can be wrong with a ZIP container. Reported inside `io::Error`s of kind `InvalidData`
/// (or `UnexpectedEof` for [`ZipError::Truncated`]) so that callers reading bytes see it.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("not a zip archive (it does not start with a local file header)")]
    NotZip,
    #[error("the zip archive holds no member")]
    Empty,
    #[error("member {0:?} is encrypted")]
    Encrypted(String),
    #[error("member {name:?} uses compression method {method} ({}); only deflate and stored are supported", method_name(*method))]
    UnsupportedMethod { name: String, method: u16 },
    #[error(
        "member {0:?} is stored with a data descriptor: its end cannot be found while streaming"
    )]
    StoredWithDescriptor(String),
    #[error("the zip archive is truncated")]
    Truncated,
    #[error("member data is corrupt: {0}")]
    Corrupt(String),
    #[error("CRC-32 mismatch: member says {expected:08x}, data has {actual:08x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error(
        "size mismatch: member says {expected_compressed} compressed / {expected_inflated} inflated bytes, data has {actual_compressed} / {actual_inflated}"
    )]
    SizeMismatch {
        expected_compressed: u64,
        expected_inflated: u64,
        actual_compressed: u64,
        actual_inflated: u64,
    },
    #[error("the zip archive holds more than one member: {0:?} follows the first")]
    ExtraMember(String),
    #[error("unexpected record {0:#010x} after the member")]
    UnexpectedRecord(u32),
}

impl From<ZipError> for io::Error {
    fn from(error: ZipError) -> io::Error {
        let kind = match error {
            ZipError::Truncated => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, error)
    }
}

fn method_name(method: u16) -> &'static str {
    match method {
        1..=7 => "shrink/reduce/implode",
        9 => "deflate64",
        12 => "bzip2",
        14 => "lzma",
        93 => "zstd",
        95 => "xz",
        99 => "AES encryption",
        _ => "unknown",
    }
}

/// True when `prefix` (the first bytes of an object) starts like a ZIP archive.
pub fn looks_like_zip(prefix: &[u8]) -> bool {
    prefix.starts_with(&LOCAL_HEADER.to_le_bytes())
        || prefix.starts_with(&END_OF_CENTRAL_DIRECTORY.to_le_bytes())
}

/// What the local header promises about the member; checked when the member ends.
#[derive(Clone, Debug)]
struct LocalHeader {
    name: String,
    method: u16,
    crc: u32,
    compressed: u64,
    inflated: u64,
    /// Sizes (and CRC) follow the data in a data descriptor instead.
    descriptor: bool,
    /// A ZIP64 extra field was present: a data descriptor then carries 64-bit sizes.
    zip64: bool,
}

/// The inflated bytes of the archive's one member. Reading it to EOF verifies the member;
/// any problem comes out of `poll_read` as an `io::Error` wrapping a [`ZipError`].
pub struct ZipMember<R> {
    header: LocalHeader,
    body: Body<R>,
    crc: crc32fast::Hasher,
    inflated: u64,
}

enum Body<R> {
    Deflated(DeflateDecoder<Counted<R>>),
    Stored {
        source: Counted<R>,
        remaining: u64,
    },
    /// The member's data is done; `tail` collects the bytes after it until they can be judged.
    Trailer {
        source: Counted<R>,
        compressed: u64,
        tail: Vec<u8>,
    },
    Verified,
    Failed,
}

impl<R> fmt::Debug for ZipMember<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZipMember")
            .field("header", &self.header)
            .field("inflated", &self.inflated)
            .finish()
    }
}

impl<R: AsyncBufRead + Unpin> ZipMember<R> {
    /// Reads the local file header. The member's bytes are then read from the returned value.
    pub async fn open(mut source: R) -> Result<ZipMember<R>, ZipError> {
        let header = read_local_header(&mut source).await?;
        let source = Counted {
            inner: source,
            consumed: 0,
            failed: false,
            at_eof: false,
        };
        let body = match header.method {
            METHOD_DEFLATE => Body::Deflated(DeflateDecoder::new(source)),
            _ => Body::Stored {
                source,
                remaining: header.compressed,
            },
        };
        Ok(ZipMember {
            header,
            body,
            crc: crc32fast::Hasher::new(),
            inflated: 0,
        })
    }

    /// The member's file name as stored in the archive.
    pub fn name(&self) -> &str {
        &self.header.name
    }

    fn fail(&mut self, error: io::Error) -> Poll<io::Result<()>> {
        self.body = Body::Failed;
        Poll::Ready(Err(error))
    }

    fn take_source_for_trailer(&mut self) {
        let source = match std::mem::replace(&mut self.body, Body::Failed) {
            Body::Deflated(decoder) => decoder.into_inner(),
            Body::Stored { source, .. } => source,
            _ => unreachable!("only a member's data ends in a trailer"),
        };
        let compressed = source.consumed;
        self.body = Body::Trailer {
            source,
            compressed,
            tail: Vec::new(),
        };
    }
}

impl<R: AsyncBufRead + Unpin> AsyncRead for ZipMember<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut this.body {
                Body::Deflated(decoder) => {
                    let before = buf.filled().len();
                    if let Err(error) = ready!(Pin::new(&mut *decoder).poll_read(cx, buf)) {
                        let source = decoder.get_ref();
                        let error = if source.failed {
                            error
                        } else if source.at_eof || error.kind() == io::ErrorKind::UnexpectedEof {
                            ZipError::Truncated.into()
                        } else {
                            ZipError::Corrupt(error.to_string()).into()
                        };
                        return this.fail(error);
                    }
                    let inflated = &buf.filled()[before..];
                    if !inflated.is_empty() {
                        this.crc.update(inflated);
                        this.inflated += inflated.len() as u64;
                        return Poll::Ready(Ok(()));
                    }
                    this.take_source_for_trailer();
                }
                Body::Stored { source, remaining } => {
                    if *remaining == 0 {
                        this.take_source_for_trailer();
                        continue;
                    }
                    let available = ready!(Pin::new(&mut *source).poll_fill_buf(cx))?;
                    if available.is_empty() {
                        return this.fail(ZipError::Truncated.into());
                    }
                    let n = available
                        .len()
                        .min(buf.remaining())
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    buf.put_slice(&available[..n]);
                    this.crc.update(&available[..n]);
                    Pin::new(&mut *source).consume(n);
                    *remaining -= n as u64;
                    this.inflated += n as u64;
                    return Poll::Ready(Ok(()));
                }
                Body::Trailer {
                    source,
                    compressed,
                    tail,
                } => {
                    let actual = Actual {
                        crc: this.crc.clone().finalize(),
                        compressed: *compressed,
                        inflated: this.inflated,
                    };
                    match judge_trailer(&this.header, &actual, tail) {
                        Verdict::Need(want) => {
                            if let Err(error) = ready!(poll_fill_to(source, cx, tail, want)) {
                                return this.fail(error);
                            }
                        }
                        Verdict::Done => {
                            this.body = Body::Verified;
                            return Poll::Ready(Ok(()));
                        }
                        Verdict::Fail(error) => return this.fail(error.into()),
                    }
                }
                Body::Verified => return Poll::Ready(Ok(())),
                Body::Failed => {
                    return Poll::Ready(Err(io::Error::other("zip member read after an error")));
                }
            }
        }
    }
}

/// What the data actually held, to compare with what the archive claims.
struct Actual {
    crc: u32,
    compressed: u64,
    inflated: u64,
}

enum Verdict {
    /// Judging needs this many bytes after the member's data.
    Need(usize),
    Done,
    Fail(ZipError),
}

/// Judges the bytes after the member's data: the data descriptor (if any), then the next record,
/// which must be the central directory. Kept pure so every layout is easy to test.
fn judge_trailer(header: &LocalHeader, actual: &Actual, tail: &[u8]) -> Verdict {
    let known_next = |sig| {
        matches!(
            sig,
            CENTRAL_HEADER | LOCAL_HEADER | END_OF_CENTRAL_DIRECTORY
        )
    };
    let (claimed_crc, claimed_compressed, claimed_inflated, next_at) = if header.descriptor {
        if tail.len() < 4 {
            return Verdict::Need(4);
        }
        let at = if u32_at(tail, 0) == DATA_DESCRIPTOR {
            4
        } else {
            0
        };
        // The descriptor's width is not recorded anywhere reliable: ZIP64 headers imply 64-bit
        // sizes, but writers disagree, so the width whose sizes fit and is followed by a known
        // record wins, the expected one first.
        let widths = if header.zip64 { [8, 4] } else { [4, 8] };
        let read = |width: usize| {
            let sizes_at = at + 4;
            let (compressed, inflated) = if width == 8 {
                (u64_at(tail, sizes_at), u64_at(tail, sizes_at + 8))
            } else {
                (
                    u64::from(u32_at(tail, sizes_at)),
                    u64::from(u32_at(tail, sizes_at + 4)),
                )
            };
            (u32_at(tail, at), compressed, inflated, sizes_at + 2 * width)
        };
        let mut chosen = None;
        for width in widths {
            let need = at + 4 + 2 * width + 4;
            if tail.len() < need {
                return Verdict::Need(need);
            }
            let candidate = read(width);
            let fits = candidate.1 == actual.compressed && candidate.2 == actual.inflated;
            if fits && known_next(u32_at(tail, candidate.3)) {
                chosen = Some(candidate);
                break;
            }
        }
        chosen.unwrap_or_else(|| read(widths[0]))
    } else {
        (header.crc, header.compressed, header.inflated, 0)
    };
    if (claimed_compressed, claimed_inflated) != (actual.compressed, actual.inflated) {
        return Verdict::Fail(ZipError::SizeMismatch {
            expected_compressed: claimed_compressed,
            expected_inflated: claimed_inflated,
            actual_compressed: actual.compressed,
            actual_inflated: actual.inflated,
        });
    }
    if claimed_crc != actual.crc {
        return Verdict::Fail(ZipError::CrcMismatch {
            expected: claimed_crc,
            actual: actual.crc,
        });
    }
    if tail.len() < next_at + 4 {
        return Verdict::Need(next_at + 4);
    }
    match u32_at(tail, next_at) {
        CENTRAL_HEADER | END_OF_CENTRAL_DIRECTORY => Verdict::Done,
        LOCAL_HEADER => {
            let fixed_end = next_at + LOCAL_HEADER_LEN;
            if tail.len() < fixed_end {
                return Verdict::Need(fixed_end);
            }
            let name_end = fixed_end + usize::from(u16_at(tail, next_at + 26));
            if tail.len() < name_end {
                return Verdict::Need(name_end);
            }
            let name = String::from_utf8_lossy(&tail[fixed_end..name_end]).into_owned();
            Verdict::Fail(ZipError::ExtraMember(name))
        }
        other => Verdict::Fail(ZipError::UnexpectedRecord(other)),
    }
}

fn poll_fill_to<R: AsyncBufRead + Unpin>(
    source: &mut R,
    cx: &mut Context<'_>,
    tail: &mut Vec<u8>,
    want: usize,
) -> Poll<io::Result<()>> {
    while tail.len() < want {
        let available = ready!(Pin::new(&mut *source).poll_fill_buf(cx))?;
        if available.is_empty() {
            return Poll::Ready(Err(ZipError::Truncated.into()));
        }
        let n = available.len().min(want - tail.len());
        tail.extend_from_slice(&available[..n]);
        Pin::new(&mut *source).consume(n);
    }
    Poll::Ready(Ok(()))
}

/// Counts the compressed bytes the inflater takes, and remembers whether the source itself
/// failed (a network error is not "corrupt data") or ended (an inflate error is then truncation).
struct Counted<R> {
    inner: R,
    consumed: u64,
    failed: bool,
    at_eof: bool,
}

impl<R: AsyncBufRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<R: AsyncBufRead + Unpin> AsyncBufRead for Counted<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_fill_buf(cx)) {
            Ok(bytes) => {
                this.at_eof = bytes.is_empty();
                Poll::Ready(Ok(bytes))
            }
            Err(error) => {
                this.failed = true;
                Poll::Ready(Err(error))
            }
        }
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let this = self.get_mut();
        this.consumed += amount as u64;
        Pin::new(&mut this.inner).consume(amount);
    }
}

async fn read_local_header<R: AsyncBufRead + Unpin>(
    source: &mut R,
) -> Result<LocalHeader, ZipError> {
    let mut fixed = [0u8; LOCAL_HEADER_LEN];
    read_exact(source, &mut fixed[..4])
        .await
        .map_err(|e| match e {
            ZipError::Truncated => ZipError::NotZip,
            other => other,
        })?;
    match u32_at(&fixed, 0) {
        LOCAL_HEADER => {}
        END_OF_CENTRAL_DIRECTORY => return Err(ZipError::Empty),
        _ => return Err(ZipError::NotZip),
    }
    read_exact(source, &mut fixed[4..]).await?;
    let mut variable = vec![0u8; usize::from(u16_at(&fixed, 26)) + usize::from(u16_at(&fixed, 28))];
    read_exact(source, &mut variable).await?;
    parse_local_header(&fixed, &variable)
}

/// Reads a local header (its fixed part, then name and extra fields) and refuses what this
/// reader cannot stream.
fn parse_local_header(fixed: &[u8], variable: &[u8]) -> Result<LocalHeader, ZipError> {
    let (name, extra) = variable.split_at(usize::from(u16_at(fixed, 26)));
    let flags = u16_at(fixed, 6);
    let mut header = LocalHeader {
        name: String::from_utf8_lossy(name).into_owned(),
        method: u16_at(fixed, 8),
        crc: u32_at(fixed, 14),
        compressed: u64::from(u32_at(fixed, 18)),
        inflated: u64::from(u32_at(fixed, 22)),
        descriptor: flags & FLAG_DATA_DESCRIPTOR != 0,
        zip64: false,
    };
    let mut fields = extra;
    while fields.len() >= 4 {
        let (id, len) = (u16_at(fields, 0), usize::from(u16_at(fields, 2)));
        let data = fields
            .get(4..4 + len)
            .ok_or_else(|| ZipError::Corrupt("an extra field overruns the local header".into()))?;
        if id == ZIP64_EXTRA {
            header.zip64 = true;
            // The ZIP64 field holds the sizes whose 32-bit slots are saturated, inflated first.
            let mut values = data
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
            if header.inflated == u64::from(u32::MAX) {
                header.inflated = values.next().unwrap_or(header.inflated);
            }
            if header.compressed == u64::from(u32::MAX) {
                header.compressed = values.next().unwrap_or(header.compressed);
            }
        }
        fields = &fields[4 + len..];
    }
    let name = header.name.clone();
    if flags & FLAG_ENCRYPTED != 0 {
        return Err(ZipError::Encrypted(name));
    }
    match header.method {
        METHOD_DEFLATE => {}
        METHOD_STORED if header.descriptor => return Err(ZipError::StoredWithDescriptor(name)),
        METHOD_STORED => {}
        method => return Err(ZipError::UnsupportedMethod { name, method }),
    }
    Ok(header)
}

async fn read_exact<R: AsyncBufRead + Unpin>(
    source: &mut R,
    buf: &mut [u8],
) -> Result<(), ZipError> {
    match source.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ZipError::Truncated),
        Err(e) => Err(ZipError::Corrupt(e.to_string())),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(descriptor: bool, zip64: bool) -> LocalHeader {
        LocalHeader {
            name: "a.csv".into(),
            method: METHOD_DEFLATE,
            crc: 0xDEAD_BEEF,
            compressed: 10,
            inflated: 20,
            descriptor,
            zip64,
        }
    }

    const ACTUAL: Actual = Actual {
        crc: 0xDEAD_BEEF,
        compressed: 10,
        inflated: 20,
    };

    fn descriptor(signature: bool, wide: bool) -> Vec<u8> {
        let mut bytes = Vec::new();
        if signature {
            bytes.extend(DATA_DESCRIPTOR.to_le_bytes());
        }
        bytes.extend(0xDEAD_BEEFu32.to_le_bytes());
        if wide {
            bytes.extend(10u64.to_le_bytes());
            bytes.extend(20u64.to_le_bytes());
        } else {
            bytes.extend(10u32.to_le_bytes());
            bytes.extend(20u32.to_le_bytes());
        }
        bytes.extend(CENTRAL_HEADER.to_le_bytes());
        bytes.extend([0; 8]); // the rest of the central directory
        bytes
    }

    fn judge(header: &LocalHeader, actual: &Actual, tail: &[u8]) -> Result<(), String> {
        // Feed the tail as the reader would: only as many bytes as asked for.
        let mut given = 0;
        loop {
            match judge_trailer(header, actual, &tail[..given]) {
                Verdict::Need(want) if want > tail.len() => return Err("truncated".into()),
                Verdict::Need(want) => given = want,
                Verdict::Done => return Ok(()),
                Verdict::Fail(error) => return Err(error.to_string()),
            }
        }
    }

    #[test]
    fn every_descriptor_layout_is_accepted() {
        for signature in [true, false] {
            for wide in [true, false] {
                for zip64 in [true, false] {
                    let tail = descriptor(signature, wide);
                    let verdict = judge(&header(true, zip64), &ACTUAL, &tail);
                    assert_eq!(
                        verdict,
                        Ok(()),
                        "signature {signature}, 64-bit {wide}, zip64 extra {zip64}"
                    );
                }
            }
        }
    }

    #[test]
    fn sizes_in_the_header_are_checked() {
        let tail = CENTRAL_HEADER.to_le_bytes();
        assert_eq!(judge(&header(false, false), &ACTUAL, &tail), Ok(()));
        let short = Actual {
            inflated: 19,
            ..ACTUAL
        };
        let error = judge(&header(false, false), &short, &tail).unwrap_err();
        assert!(error.starts_with("size mismatch"), "{error}");
        let bad_crc = Actual { crc: 1, ..ACTUAL };
        let error = judge(&header(false, false), &bad_crc, &tail).unwrap_err();
        assert_eq!(
            error,
            "CRC-32 mismatch: member says deadbeef, data has 00000001"
        );
    }

    #[test]
    fn what_follows_the_member_is_judged() {
        let mut second = LOCAL_HEADER.to_le_bytes().to_vec();
        second.extend([0; 22]);
        second.extend(5u16.to_le_bytes());
        second.extend(0u16.to_le_bytes());
        second.extend(b"b.csv");
        assert_eq!(
            judge(&header(false, false), &ACTUAL, &second),
            Err("the zip archive holds more than one member: \"b.csv\" follows the first".into())
        );
        assert_eq!(
            judge(&header(false, false), &ACTUAL, &[1, 2]),
            Err("truncated".into())
        );
        assert_eq!(
            judge(&header(false, false), &ACTUAL, &[1, 2, 3, 4]),
            Err("unexpected record 0x04030201 after the member".into())
        );
    }

    #[test]
    fn zip64_extra_sizes_replace_saturated_ones() {
        let mut fixed = [0u8; LOCAL_HEADER_LEN];
        fixed[..4].copy_from_slice(&LOCAL_HEADER.to_le_bytes());
        fixed[8..10].copy_from_slice(&METHOD_DEFLATE.to_le_bytes());
        fixed[18..26].copy_from_slice(&[0xFF; 8]);
        fixed[26..28].copy_from_slice(&1u16.to_le_bytes());
        fixed[28..30].copy_from_slice(&20u16.to_le_bytes());
        let mut variable = b"-".to_vec();
        variable.extend(ZIP64_EXTRA.to_le_bytes());
        variable.extend(16u16.to_le_bytes());
        variable.extend(8_312_381_342u64.to_le_bytes());
        variable.extend(1_000_000_000u64.to_le_bytes());
        let header = parse_local_header(&fixed, &variable).unwrap();
        assert_eq!(
            (header.inflated, header.compressed, header.zip64),
            (8_312_381_342, 1_000_000_000, true)
        );
    }
}
