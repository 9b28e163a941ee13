//! Reads one report version end to end: each of its objects unpacked (zip, gzip) on the async
//! side, parsed and summed on a blocking thread, so that inflating and parsing run on two cores
//! at once. The two meet in a small bounded channel, so memory stays flat whatever the report's
//! size. A version of several objects (a CUR's parts) is read part after part into one sum.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use async_compression::tokio::bufread::GzipDecoder;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::aggregate::{Grain, ReportIdentity, ReportSums, SumError};
use super::rows::{Layout, ParseError};
use super::zip::{self, ZipError, ZipMember};
use crate::domain::Monitored;
use crate::failure::{Classify, FailureKind};

/// Inflated bytes travel in chunks of this size; a few in flight keep both threads busy.
const CHUNK: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

/// How an object's bytes are packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A ZIP archive of one CSV (a DBR, a CUR's `.csv.zip` part).
    Zip,
    /// A gzip stream of one CSV (a CUR's `.csv.gz` part).
    Gzip,
    /// A ZIP if its first bytes say so, else a bare CSV (`summarize`'s files).
    Sniff,
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Zip(#[from] ZipError),
    #[error("not a gzip stream, or a broken one: {0}")]
    Gzip(#[source] io::Error),
    #[error("reading the object: {0}")]
    Io(#[source] io::Error),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("writing partial sums to the temporary directory: {0}")]
    Spill(#[source] io::Error),
    /// Something in one object of a version of several.
    #[error("{object}: {error}")]
    InObject {
        object: String,
        error: Box<ReadError>,
    },
}

impl From<SumError> for ReadError {
    fn from(error: SumError) -> ReadError {
        match error {
            SumError::Parse(error) => ReadError::Parse(error),
            SumError::Spill(error) => ReadError::Spill(error),
        }
    }
}

impl Classify for ReadError {
    /// The bytes that arrived are the report's: a broken archive or CSV is its content. A
    /// stream that broke off is the network's doing.
    fn kind(&self) -> FailureKind {
        match self {
            ReadError::Zip(_) | ReadError::Gzip(_) | ReadError::Parse(_) => FailureKind::Content,
            ReadError::InObject { error, .. } => error.kind(),
            // A full disk, most likely: it may have room at the next poll.
            ReadError::Io(_) | ReadError::Spill(_) => FailureKind::Transient,
        }
    }
}

impl From<io::Error> for ReadError {
    /// ZIP problems surface from the member reader as `io::Error`s; they get their own variant.
    fn from(error: io::Error) -> ReadError {
        if error.get_ref().is_some_and(|inner| inner.is::<ZipError>()) {
            let inner = error.into_inner().expect("checked above");
            return ReadError::Zip(*inner.downcast::<ZipError>().expect("checked above"));
        }
        ReadError::Io(error)
    }
}

/// What the reader expects of a report version.
pub struct Expected {
    /// How its CSV's header is found and mapped.
    pub layout: &'static Layout,
    /// What its key says the report is.
    pub identity: ReportIdentity,
    /// How finely to sum it.
    pub grain: Grain,
    /// Whether errors name the object they are in: a version of several objects (CUR) has
    /// them; a DBR's ledger entry already names its one object.
    pub name_objects: bool,
}

/// How far a report has been read; the counters move while it is, for whoever shows progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of the objects read (compressed, for a ZIP or gzip).
    pub downloaded: AtomicU64,
    /// Bytes of CSV handed to the parser.
    pub inflated: AtomicU64,
    /// CSV records read.
    pub rows: AtomicU64,
}

/// What travels to the parsing thread: the start of an object, then its CSV's bytes.
enum Piece {
    Object(String),
    Bytes(Vec<u8>),
}

/// A version being read: its objects are handed over one after the other with
/// [`Reading::object`], and [`Reading::finish`] gives the sums.
pub struct Reading {
    pieces: mpsc::Sender<Piece>,
    parser: JoinHandle<Result<ReportSums, (String, SumError)>>,
    progress: Arc<Progress>,
    name_objects: bool,
}

impl Reading {
    /// Starts the parsing thread; `progress` counts what goes through.
    pub fn start(expected: Expected, monitored: Monitored, progress: Arc<Progress>) -> Reading {
        let (pieces, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let Expected {
            layout,
            identity,
            grain,
            name_objects,
        } = expected;
        let parser = {
            let progress = progress.clone();
            tokio::task::spawn_blocking(move || {
                let mut objects = PieceReader::new(receiver);
                let mut sums = ReportSums::new(identity, monitored, grain);
                let mut last = String::new();
                while let Some(name) = objects.next_object() {
                    sums.add_part(&mut objects, layout, &progress.rows)
                        .map_err(|error| (name.clone(), error))?;
                    last = name;
                }
                sums.finish().map_err(|error| (last, error))?;
                Ok(sums)
            })
        };
        Reading {
            pieces,
            parser,
            progress,
            name_objects,
        }
    }

    /// Reads one object (named `name`) through to the parser.
    pub async fn object<R>(
        &mut self,
        name: &str,
        compression: Compression,
        object: R,
    ) -> Result<(), ReadError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let sent: Result<(), ReadError> = async {
            if self
                .pieces
                .send(Piece::Object(name.to_owned()))
                .await
                .is_err()
            {
                return Ok(()); // The parser stopped early; its error says why.
            }
            let counted = Counted {
                inner: object,
                progress: self.progress.clone(),
            };
            let mut object = BufReader::with_capacity(CHUNK, counted);
            let prefix = object.fill_buf().await.map_err(ReadError::Io)?;
            let zipped = match compression {
                Compression::Zip => true,
                Compression::Sniff => zip::looks_like_zip(prefix),
                Compression::Gzip => {
                    let mut gunzip = GzipDecoder::new(object);
                    gunzip.multiple_members(true);
                    return send_chunks(gunzip, &self.pieces, &self.progress)
                        .await
                        .map_err(|error| match error {
                            ReadError::Io(error) if error.kind() != io::ErrorKind::TimedOut => {
                                ReadError::Gzip(error)
                            }
                            error => error,
                        });
                }
            };
            if zipped {
                let member = ZipMember::open(object).await?;
                let expected = name.rsplit('/').next().unwrap_or(name).strip_suffix(".zip");
                if let Some(expected) = expected.filter(|&expected| expected != member.name()) {
                    tracing::warn!(
                        member = member.name(),
                        expected,
                        "zip member is not named like the object"
                    );
                }
                send_chunks(member, &self.pieces, &self.progress).await
            } else {
                send_chunks(object, &self.pieces, &self.progress).await
            }
        }
        .await;
        sent.map_err(|error| in_object(self.name_objects, name, error))
    }

    /// The sums, once every object was handed over.
    pub async fn finish(self) -> Result<ReportSums, ReadError> {
        let Reading {
            pieces,
            parser,
            name_objects,
            ..
        } = self;
        drop(pieces);
        let parsed = parser
            .await
            .map_err(|e| ReadError::Io(io::Error::other(e)))?;
        parsed.map_err(|(object, error)| in_object(name_objects, &object, error.into()))
    }
}

/// `error`, naming the object it is in when `name_objects`.
fn in_object(name_objects: bool, object: &str, error: ReadError) -> ReadError {
    if name_objects {
        ReadError::InObject {
            object: object.to_owned(),
            error: Box::new(error),
        }
    } else {
        error
    }
}

/// Reads a report of one object (a DBR's `.csv.zip`, or a bare CSV) and sums it; `progress`
/// counts what went through.
pub async fn read_report<R>(
    object: R,
    name: &str,
    compression: Compression,
    expected: Expected,
    monitored: Monitored,
    progress: Arc<Progress>,
) -> Result<ReportSums, ReadError>
where
    R: AsyncRead + Unpin + Send,
{
    let mut reading = Reading::start(expected, monitored, progress);
    let sent = reading.object(name, compression, object).await;
    let parsed = reading.finish().await;
    // A broken archive (bad CRC, truncated) is the cause even if the CSV happened to parse.
    sent?;
    parsed
}

/// Sends the reader's bytes to the parser until EOF, or until the parser stops listening.
async fn send_chunks<R: AsyncRead + Unpin>(
    mut reader: R,
    pieces: &mpsc::Sender<Piece>,
    progress: &Progress,
) -> Result<(), ReadError> {
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        // `read_buf` fills the spare capacity without zeroing it first.
        while chunk.len() < CHUNK && reader.read_buf(&mut chunk).await? > 0 {}
        let done = chunk.len() < CHUNK;
        progress
            .inflated
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if !chunk.is_empty() && pieces.send(Piece::Bytes(chunk)).await.is_err() {
            return Ok(()); // The parser stopped early; its error says why.
        }
        if done {
            return Ok(());
        }
    }
}

/// Counts the object's bytes as they are read.
struct Counted<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.progress.downloaded.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

/// A blocking `Read` over the pieces the async side sends: one object's bytes at a time, each
/// ending (as far as `read` says) where the next object starts.
struct PieceReader {
    receiver: mpsc::Receiver<Piece>,
    chunk: Vec<u8>,
    at: usize,
    /// The object that starts after the current one ends.
    next: Option<String>,
    /// The channel closed: no more objects.
    closed: bool,
}

impl PieceReader {
    fn new(receiver: mpsc::Receiver<Piece>) -> PieceReader {
        PieceReader {
            receiver,
            chunk: Vec::new(),
            at: 0,
            next: None,
            closed: false,
        }
    }

    /// Moves on to the next object (skipping what is left of the current one), or `None`
    /// when there is none.
    fn next_object(&mut self) -> Option<String> {
        loop {
            if let Some(name) = self.next.take() {
                return Some(name);
            }
            if self.closed {
                return None;
            }
            match self.receiver.blocking_recv() {
                Some(Piece::Object(name)) => self.next = Some(name),
                Some(Piece::Bytes(_)) => {}
                None => self.closed = true,
            }
        }
    }
}

impl io::Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            if self.next.is_some() || self.closed {
                return Ok(0);
            }
            match self.receiver.blocking_recv() {
                Some(Piece::Bytes(chunk)) => (self.chunk, self.at) = (chunk, 0),
                Some(Piece::Object(name)) => self.next = Some(name),
                None => self.closed = true,
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    //! Whatever bytes arrive, the pipeline ends in sums or a typed error: never a panic, never a
    //! hang. Memory is bounded by the record and field limits (`records.rs`).

    use std::io::Write;

    use proptest::prelude::*;

    use super::*;
    use crate::report::aggregate::MemoryBudget;
    use crate::report::proptest_config;

    const REPORT: &str = "\"InvoiceID\",\"PayerAccountId\",\"LinkedAccountId\",\"RecordType\",\"ProductName\",\"UsageType\",\"Operation\",\"AvailabilityZone\",\"UsageStartDate\",\"UsageQuantity\",\"BlendedCost\",\"UnBlendedCost\",\"ResourceId\",\"user:Name\"\r\n\
        \"Estimated\",\"9\",\"1\",\"LineItem\",\"EC2\",\"Box\",\"Run\",\"us-east-1a\",\"2017-01-01 00:00:00\",\"1\",\"0.5\",\"0.4\",\"i-1\",\"web\"\r\n\
        \"Estimated\",\"9\",\"2\",\"LineItem\",\"S3\",\"Req\",\"Get\",\"\",\"2017-01-02 00:00:00\",\"10\",\"0.01\",\"0.01\",\"b\",\"\"\r\n\
        \"\",\"9\",\"1\",\"AccountTotal\",\"\",\"\",\"\",\"\",\"\",\"\",\"0.5\",\"0.4\",\"\",\"\"\r\n";

    /// `csv` zipped as one deflated member `a.csv`: sizes in the local header, or in a data
    /// descriptor after the data (as `zip` writes from a pipe).
    fn zipped(csv: &[u8], descriptor: bool) -> Vec<u8> {
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflater.write_all(csv).unwrap();
        let data = deflater.finish().unwrap();
        let crc = crc32fast::hash(csv);
        let (flags, header_crc, header_sizes) = if descriptor {
            (8u16, 0, (0u32, 0u32))
        } else {
            (0, crc, (data.len() as u32, csv.len() as u32))
        };
        let mut zip = Vec::new();
        zip.extend(0x0403_4b50u32.to_le_bytes());
        zip.extend(20u16.to_le_bytes());
        zip.extend(flags.to_le_bytes());
        zip.extend(8u16.to_le_bytes());
        zip.extend([0u8; 4]); // time and date
        zip.extend(header_crc.to_le_bytes());
        zip.extend(header_sizes.0.to_le_bytes());
        zip.extend(header_sizes.1.to_le_bytes());
        zip.extend(5u16.to_le_bytes());
        zip.extend(0u16.to_le_bytes());
        zip.extend(b"a.csv");
        zip.extend(&data);
        if descriptor {
            zip.extend(0x0807_4b50u32.to_le_bytes());
            zip.extend(crc.to_le_bytes());
            zip.extend((data.len() as u32).to_le_bytes());
            zip.extend((csv.len() as u32).to_le_bytes());
        }
        zip.extend(0x0201_4b50u32.to_le_bytes());
        zip.extend([0u8; 42]); // the rest of the central directory is not read
        zip
    }

    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
    }

    fn read(bytes: Vec<u8>, zip_member: Option<&str>) -> Result<ReportSums, ReadError> {
        let expected = Expected {
            layout: &crate::formats::dbr::LAYOUT,
            identity: ReportIdentity::default(),
            grain: Grain::Daily(MemoryBudget::unlimited()),
            name_objects: false,
        };
        let (name, compression) = match zip_member {
            Some(member) => (format!("{member}.zip"), Compression::Zip),
            None => ("report.csv".to_owned(), Compression::Sniff),
        };
        RUNTIME.with(|runtime| {
            runtime.block_on(read_report(
                std::io::Cursor::new(bytes),
                &name,
                compression,
                expected,
                Monitored::All,
                Arc::default(),
            ))
        })
    }

    #[test]
    fn an_intact_zip_is_read_in_both_layouts() {
        for descriptor in [false, true] {
            let sums = read(zipped(REPORT.as_bytes(), descriptor), Some("a.csv")).unwrap();
            assert_eq!(sums.rows().kept, 2);
            assert_eq!(sums.accounts()[0].reconciled(), Some(true));
        }
    }

    /// One change to the bytes: a flipped byte, one inserted, one removed.
    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(prop::sample::Index, u8),
        Insert(prop::sample::Index, u8),
        Remove(prop::sample::Index),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(at, x)| Mutation::Flip(at, x)),
            (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
            any::<prop::sample::Index>().prop_map(Mutation::Remove),
        ]
    }

    fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
        let len = bytes.len();
        if len == 0 {
            return;
        }
        match mutation {
            Mutation::Flip(at, x) => bytes[at.index(len)] ^= x,
            Mutation::Insert(at, byte) => bytes.insert(at.index(len), *byte),
            Mutation::Remove(at) => {
                bytes.remove(at.index(len));
            }
        }
    }

    proptest! {
        #![proptest_config(proptest_config(2000))]

        #[test]
        fn mutated_and_truncated_zips_end_in_sums_or_an_error(
            descriptor: bool,
            mutations in prop::collection::vec(mutation(), 0..4),
            keep in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let mut bytes = zipped(REPORT.as_bytes(), descriptor);
            for mutation in &mutations {
                mutate(&mut bytes, mutation);
            }
            if let Some(keep) = keep {
                bytes.truncate(keep.index(bytes.len() + 1));
            }
            let _ = read(bytes, Some("a.csv"));
        }

        #[test]
        fn arbitrary_bytes_end_in_sums_or_an_error(
            bytes in prop::collection::vec(any::<u8>(), 0..2048),
            as_zip: bool,
        ) {
            let _ = read(bytes, as_zip.then_some("a.csv"));
        }

        #[test]
        fn spliced_reports_end_in_sums_or_an_error(
            pieces in prop::collection::vec(prop_oneof![
                Just("\"InvoiceID\",\"PayerAccountId\",\"LinkedAccountId\",\"RecordType\",\"ProductName\",\"UsageType\",\"Operation\",\"AvailabilityZone\",\"UsageStartDate\",\"UsageQuantity\",\"Cost\"\n".to_owned()),
                Just("\"LineItem\"".to_owned()),
                Just("\"AccountTotal\"".to_owned()),
                Just("2017-01-31 23:00:00".to_owned()),
                Just("9999999999999999999999999999".to_owned()),
                Just("0.0000000000000000000000000001".to_owned()),
                Just("\u{feff}".to_owned()),
                Just("\0".to_owned()),
                "[0-9]{1,14}",
                "[-+.,\"\r\n ]{1,3}",
                "\\PC{0,8}",
            ], 0..120),
            cut in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
        ) {
            // A real report with random pieces spliced in somewhere.
            let mut text = REPORT.as_bytes().to_vec();
            let at = at.index(text.len() + 1);
            let spliced: Vec<u8> = pieces.concat().into_bytes();
            text.splice(at..at, spliced);
            text.truncate(cut.index(text.len() + 1).max(at));
            let _ = read(text.clone(), None);
            let _ = read(zipped(&text, true), Some("a.csv"));
        }
    }
}
