//! Reads one report version end to end, on two threads: one unpacks each object (zip, gzip)
//! and splits its CSV into records, the other sums their rows. The two meet in a small bounded
//! channel, so memory stays flat whatever the report's size. A version of several objects (a
//! CUR's parts) is read part after part into one sum.
//!
//! Why splitting is on the unpacking thread: summing set the pace while the unpacking thread
//! idled a third of its time. A third thread for splitting was slower still: three busy
//! threads on two cores take turns, and each turn evicts the summing thread's tables from its
//! core's cache. It still idled while summing set the pace, so whenever the channel is full
//! it also makes the waiting rows' usage keys (see `Sending::put_rows`): work that only fills
//! time it would spend waiting. A realistic month's `once` went from 1.77 s to 1.66 s.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::task::{Context, Poll};

use async_compression::tokio::bufread::GzipDecoder;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, ReadBuf};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::aggregate::{Grain, ReportIdentity, ReportSums, SumError};
use super::rows::{Columns, Layout, ParseError, RowReader, Rows};
use super::zip::{self, ZipError, ZipMember};
use crate::domain::Monitored;
use crate::failure::{Classify, FailureKind};

/// An object's bytes are read in pieces of this size.
const CHUNK: usize = 256 * 1024;
/// Batches of rows (a record buffer's worth each, 256 KiB) on their way to the summing thread:
/// a few keep both threads busy.
const BATCHES_IN_FLIGHT: usize = 4;

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
    /// Bytes of CSV unpacked.
    pub inflated: AtomicU64,
    /// CSV records read.
    pub rows: AtomicU64,
}

/// What the unpacking side hands to the summing thread, for each object in turn.
enum Part {
    /// An object begins: its name.
    Object(String),
    /// Its header's columns (boxed: they are far larger than the other parts, and rare).
    Header(Box<Columns>),
    Rows(Rows),
    /// The object ended before this line.
    Ends(u64),
    /// The object's header or a record is malformed, or its bytes could not be read: nothing
    /// follows.
    Failed(ParseError),
    /// An object to be split by the summing thread begins: its name, then its bytes follow.
    Unsplit(String),
    Bytes(Vec<u8>),
}

/// Which thread splits the CSV into records: the one that has time for it. Summing a DBR at
/// the daily grain takes longer than inflating it, so the unpacking thread splits; summing per
/// account, or a CUR's rows (see [`Layout::split_while_unpacking`]), takes far less, so the
/// summing thread does (else the unpacking thread alone would set the pace: `summarize` went
/// from 1.0x to 1.34x the time of inflating).
#[derive(Clone, Copy, PartialEq, Eq)]
enum SplitOn {
    Unpacking,
    Summing,
}

/// A version being read: its objects are handed over one after the other with
/// [`Reading::object`], and [`Reading::finish`] gives the sums.
pub struct Reading {
    parts: SyncSender<Part>,
    /// Rows summed, back from the summing thread: the next rows split reuse their memory.
    spares: Option<Receiver<Rows>>,
    parser: JoinHandle<Result<ReportSums, (String, SumError)>>,
    layout: &'static Layout,
    split_on: SplitOn,
    progress: Arc<Progress>,
    name_objects: bool,
    /// The report's [`ReportIdentity::marketplace`].
    marketplace: bool,
}

impl Reading {
    /// Starts the summing thread; `progress` counts what goes through.
    pub fn start(expected: Expected, monitored: Monitored, progress: Arc<Progress>) -> Reading {
        let (parts, parts_received) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        let (spares, spares_received) = std::sync::mpsc::channel();
        let Expected {
            layout,
            identity,
            grain,
            name_objects,
        } = expected;
        let marketplace = identity.marketplace;
        let split_on = match grain {
            Grain::Daily(_) if layout.split_while_unpacking => SplitOn::Unpacking,
            _ => SplitOn::Summing,
        };
        let parser = {
            let progress = progress.clone();
            tokio::task::spawn_blocking(move || {
                let mut summing = Summing {
                    sums: ReportSums::new(identity, monitored, grain),
                    name: String::new(),
                    columns: None,
                    split_on,
                    spares,
                    spare: None,
                    progress,
                    failed: None,
                };
                let mut received = Unsplit::new(parts_received);
                while let Some(part) = received.next_part() {
                    match part {
                        Part::Unsplit(name) => {
                            let _ = split_object(&mut received, name, layout, &mut summing);
                        }
                        part => {
                            let _ = summing.put(part);
                        }
                    }
                    if let Some(error) = summing.failed.take() {
                        return Err((summing.name, error));
                    }
                }
                let Summing { mut sums, name, .. } = summing;
                sums.finish().map_err(|error| (name, error))?;
                Ok(sums)
            })
        };
        Reading {
            parts,
            spares: Some(spares_received),
            parser,
            layout,
            split_on,
            progress,
            name_objects,
            marketplace,
        }
    }

    /// Reads one object (named `name`) through to the summing thread. It is unpacked (and
    /// split, see [`SplitOn`]) on a blocking thread, which runs the object's reads (and so the
    /// inflating) itself.
    pub async fn object<R>(
        &mut self,
        name: &str,
        compression: Compression,
        object: R,
    ) -> Result<(), ReadError>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let spares = self.spares.take().expect("objects are read one at a time");
        let (parts, layout, progress) = (self.parts.clone(), self.layout, self.progress.clone());
        let marketplace = self.marketplace;
        let split_on = self.split_on;
        // Dropped with this future (a shutdown): the blocking thread then stops reading.
        let abandoned = Abandoned::default();
        let (name_owned, stop) = (name.to_owned(), abandoned.0.clone());
        let handle = Handle::current();
        let read = tokio::task::spawn_blocking(move || {
            let unpacked = handle.block_on(unpack(object, compression, &name_owned, &progress));
            let mut sending = Sending {
                parts,
                spares,
                marketplace,
            };
            let read = unpacked.and_then(|(reader, gzip)| {
                let mut input = Blocking {
                    reader,
                    handle,
                    progress,
                    stop,
                    error: None,
                };
                // Malformed, or the summing thread stopped: either way, it has the error.
                let _ = match split_on {
                    SplitOn::Unpacking => {
                        split_object(&mut input, name_owned, layout, &mut sending)
                    }
                    SplitOn::Summing => send_bytes(&mut input, name_owned, &sending.parts),
                };
                match input.error {
                    Some(error) if gzip && error.kind() != io::ErrorKind::TimedOut => {
                        Err(ReadError::Gzip(error))
                    }
                    Some(error) => Err(ReadError::from(error)),
                    None => Ok(()),
                }
            });
            (read, sending.spares)
        });
        let (read, spares) = read
            .await
            .map_err(|error| ReadError::Io(io::Error::other(error)))?;
        self.spares = Some(spares);
        read.map_err(|error| in_object(self.name_objects, name, error))
    }

    /// The sums, once every object was handed over.
    pub async fn finish(self) -> Result<ReportSums, ReadError> {
        let Reading {
            parts,
            parser,
            name_objects,
            ..
        } = self;
        drop(parts);
        let parsed = parser
            .await
            .map_err(|e| ReadError::Io(io::Error::other(e)))?;
        parsed.map_err(|(object, error)| in_object(name_objects, &object, error.into()))
    }
}

/// Where [`split_object`] puts what it split, and finds memory to reuse.
trait Sink {
    /// `Err` when nothing more is wanted: the summing stopped.
    fn put(&mut self, part: Part) -> Result<(), ()>;
    /// Puts rows of `columns`.
    fn put_rows(&mut self, rows: Rows, columns: &Columns) -> Result<(), ()>;
    /// Rows summed before, to be split into again.
    fn spare(&mut self) -> Option<Rows>;
}

/// The unpacking thread's sink: the channel to the summing thread.
struct Sending {
    parts: SyncSender<Part>,
    spares: Receiver<Rows>,
    /// The report's [`ReportIdentity::marketplace`], for the usage keys made here.
    marketplace: bool,
}

impl Sink for Sending {
    fn put(&mut self, part: Part) -> Result<(), ()> {
        self.parts.send(part).map_err(drop)
    }

    /// Rows the summing thread has no room for yet get their usage keys made while they wait
    /// (work taken off the summing thread, which sets the pace then); the others go at once.
    fn put_rows(&mut self, rows: Rows, columns: &Columns) -> Result<(), ()> {
        match self.parts.try_send(Part::Rows(rows)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(part)) => {
                let Part::Rows(mut rows) = part else {
                    unreachable!("a full channel hands back what was sent")
                };
                rows.key_usages(columns, self.marketplace);
                self.put(Part::Rows(rows))
            }
            Err(TrySendError::Disconnected(_)) => Err(()),
        }
    }

    fn spare(&mut self) -> Option<Rows> {
        self.spares.try_recv().ok()
    }
}

/// The summing thread: what it has summed, and of what.
struct Summing {
    sums: ReportSums,
    /// The object being read.
    name: String,
    /// Its header's.
    columns: Option<Columns>,
    split_on: SplitOn,
    /// Rows summed go back to the unpacking thread...
    spares: std::sync::mpsc::Sender<Rows>,
    /// ...or, split here, are split into again.
    spare: Option<Rows>,
    progress: Arc<Progress>,
    /// Why summing stopped.
    failed: Option<SumError>,
}

impl Sink for Summing {
    fn put(&mut self, part: Part) -> Result<(), ()> {
        let added = match part {
            Part::Object(object) => {
                self.name = object;
                Ok(())
            }
            Part::Header(header) => {
                self.sums.begin_part(&header);
                self.columns = Some(*header);
                Ok(())
            }
            Part::Rows(rows) => {
                let columns = self.columns.as_ref().expect("rows follow their header");
                let added = self.sums.add_rows(&rows, columns);
                (self.progress.rows).fetch_add(rows.len() as u64, Ordering::Relaxed);
                match self.split_on {
                    // (The unpacking thread may be done: they are then dropped.)
                    SplitOn::Unpacking => drop(self.spares.send(rows)),
                    SplitOn::Summing => self.spare = Some(rows),
                }
                added
            }
            Part::Ends(line) => {
                self.sums.end_part(line);
                Ok(())
            }
            Part::Failed(error) => Err(SumError::Parse(error)),
            Part::Unsplit(_) | Part::Bytes(_) => unreachable!("split before they are summed"),
        };
        added.map_err(|error| self.failed = Some(error))
    }

    fn put_rows(&mut self, rows: Rows, _: &Columns) -> Result<(), ()> {
        self.put(Part::Rows(rows))
    }

    fn spare(&mut self) -> Option<Rows> {
        self.spare.take()
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
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut reading = Reading::start(expected, monitored, progress);
    let sent = reading.object(name, compression, object).await;
    let parsed = reading.finish().await;
    // A broken archive (bad CRC, truncated) is the cause even if the CSV happened to parse.
    sent?;
    parsed
}

/// An unpacked object's CSV bytes.
type Unpacked = Pin<Box<dyn AsyncRead + Send>>;

/// The object's CSV, unpacked as `compression` says, and whether it is gzipped (its read
/// errors are then the gzip stream's).
async fn unpack<R>(
    object: R,
    compression: Compression,
    name: &str,
    progress: &Arc<Progress>,
) -> Result<(Unpacked, bool), ReadError>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut object = ReadAhead::start(object, progress.clone());
    let prefix = object.fill_buf().await.map_err(ReadError::Io)?;
    let zipped = match compression {
        Compression::Zip => true,
        Compression::Sniff => zip::looks_like_zip(prefix),
        Compression::Gzip => {
            let mut gunzip = GzipDecoder::new(object);
            gunzip.multiple_members(true);
            return Ok((Box::pin(gunzip), true));
        }
    };
    if !zipped {
        return Ok((Box::pin(object), false));
    }
    let member = ZipMember::open(object).await?;
    let expected = name.rsplit('/').next().unwrap_or(name).strip_suffix(".zip");
    if let Some(expected) = expected.filter(|&expected| expected != member.name()) {
        tracing::warn!(
            member = member.name(),
            expected,
            "zip member is not named like the object"
        );
    }
    Ok((Box::pin(member), false))
}

/// Splits one object's CSV into rows for the summing: `Err` when it is malformed (the sink
/// was told) or the summing stopped.
fn split_object(
    object: impl io::Read,
    name: String,
    layout: &'static Layout,
    sink: &mut impl Sink,
) -> Result<(), ()> {
    sink.put(Part::Object(name))?;
    let mut rows = match RowReader::new(object, layout) {
        Ok(rows) => rows,
        Err(error) => return sink.put(Part::Failed(error)).and(Err(())),
    };
    sink.put(Part::Header(Box::new(rows.columns().clone())))?;
    loop {
        match rows.next_rows(sink.spare()) {
            Ok(Some(batch)) => sink.put_rows(batch, rows.columns())?,
            Ok(None) => return sink.put(Part::Ends(rows.line())),
            Err(error) => return sink.put(Part::Failed(error)).and(Err(())),
        }
    }
}

/// Sends one object's CSV bytes unsplit, for the summing thread to split: `Err` when the
/// summing stopped, or the object could not be read (the error is the reader's).
fn send_bytes(object: &mut Blocking, name: String, parts: &SyncSender<Part>) -> Result<(), ()> {
    parts.send(Part::Unsplit(name)).map_err(drop)?;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut piece = io::Read::take(&mut *object, CHUNK as u64);
        let read = io::Read::read_to_end(&mut piece, &mut chunk);
        // A read error ends the bytes: the summing thread sees the CSV end there, and the
        // object's error is what the reader reports.
        let done = read.is_err() || chunk.len() < CHUNK;
        if !chunk.is_empty() {
            parts.send(Part::Bytes(chunk)).map_err(drop)?;
        }
        if done {
            return read.map(drop).map_err(drop);
        }
    }
}

/// The parts the summing thread receives; read as bytes, those of an object sent unsplit,
/// which end where the next part that is not bytes begins.
struct Unsplit {
    received: Receiver<Part>,
    chunk: Vec<u8>,
    at: usize,
    /// The part after the bytes.
    next: Option<Part>,
}

impl Unsplit {
    fn new(received: Receiver<Part>) -> Unsplit {
        Unsplit {
            received,
            chunk: Vec::new(),
            at: 0,
            next: None,
        }
    }

    /// The next part that is not the current object's bytes (those left unread are skipped).
    fn next_part(&mut self) -> Option<Part> {
        (self.chunk, self.at) = (Vec::new(), 0);
        loop {
            match self.next.take().or_else(|| self.received.recv().ok())? {
                Part::Bytes(_) => {}
                part => return Some(part),
            }
        }
    }
}

impl io::Read for Unsplit {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            if self.next.is_some() {
                return Ok(0);
            }
            match self.received.recv() {
                Ok(Part::Bytes(chunk)) => (self.chunk, self.at) = (chunk, 0),
                Ok(part) => self.next = Some(part),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// An unpacked object read with blocking calls, from a blocking thread: each read runs the
/// async reads (and the inflating) on that thread.
struct Blocking {
    reader: Unpacked,
    handle: Handle,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    /// The first read error: the object's, to be told apart from the CSV's.
    error: Option<io::Error>,
}

impl io::Read for Blocking {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("the reading was abandoned"));
        }
        match self.handle.block_on(self.reader.read(buf)) {
            Ok(read) => {
                (self.progress.inflated).fetch_add(read as u64, Ordering::Relaxed);
                Ok(read)
            }
            Err(error) => {
                let told = io::Error::new(error.kind(), error.to_string());
                self.error.get_or_insert(error);
                Err(told)
            }
        }
    }
}

/// Set when dropped: tells the blocking thread reading an object that nobody waits for it.
#[derive(Default)]
struct Abandoned(Arc<AtomicBool>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An object's bytes, read a chunk ahead by a task of their own: the unpacking thread finds
/// the next chunk waiting when it has inflated one, rather than waiting for each read of the
/// object (a file read on tokio's blocking pool, or the body of an S3 answer) in turn.
struct ReadAhead {
    chunks: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

/// Chunks read ahead of the unpacking.
const CHUNKS_AHEAD: usize = 2;

impl ReadAhead {
    /// Starts reading `object`; the reads stop when the `ReadAhead` is dropped, or at the
    /// object's end or first error (returned in its place).
    fn start<R>(mut object: R, progress: Arc<Progress>) -> ReadAhead
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let (chunks, received) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
        tokio::spawn(async move {
            loop {
                let mut chunk = Vec::with_capacity(CHUNK);
                let read = tokio::select! {
                    read = fill(&mut object, &mut chunk) => read,
                    () = chunks.closed() => return,
                };
                progress
                    .downloaded
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                // The bytes read before an error are unpacked before it, as they came.
                let (last, error) = match read {
                    Ok(ended) => (ended, None),
                    Err(error) => (true, Some(error)),
                };
                let sent = chunk.is_empty() || chunks.send(Ok(chunk)).await.is_ok();
                if let Some(error) = error.filter(|_| sent) {
                    let _ = chunks.send(Err(error)).await;
                }
                if last || !sent {
                    return;
                }
            }
        });
        ReadAhead {
            chunks: received,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

/// Reads `object` into `chunk` until it holds [`CHUNK`] bytes (`Ok(false)`) or the object
/// ends (`Ok(true)`).
async fn fill(object: &mut (impl AsyncRead + Unpin), chunk: &mut Vec<u8>) -> io::Result<bool> {
    while chunk.len() < CHUNK {
        if object.read_buf(chunk).await? == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

impl AsyncBufRead for ReadAhead {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.at == this.chunk.len() {
            match std::task::ready!(this.chunks.poll_recv(cx)) {
                Some(Ok(chunk)) => (this.chunk, this.at) = (chunk, 0),
                Some(Err(error)) => return Poll::Ready(Err(error)),
                None => return Poll::Ready(Ok(&[])),
            }
        }
        Poll::Ready(Ok(&this.chunk[this.at..]))
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        self.get_mut().at += amount;
    }
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = std::task::ready!(self.as_mut().poll_fill_buf(cx))?;
        let amount = available.len().min(buf.remaining());
        buf.put_slice(&available[..amount]);
        self.consume(amount);
        Poll::Ready(Ok(()))
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

    /// Some bytes, then an error.
    struct Failing(Vec<u8>);

    impl AsyncRead for Failing {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.0.is_empty() {
                return Poll::Ready(Err(io::Error::other("the connection broke")));
            }
            let amount = self.0.len().min(buf.remaining());
            buf.put_slice(&self.0[..amount]);
            self.0.drain(..amount);
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn bytes_read_ahead_come_as_they_were_read_then_the_error() {
        let bytes: Vec<u8> = (0..=255).cycle().take(CHUNK + 1000).collect();
        let progress = Arc::new(Progress::default());
        let (read, error) = RUNTIME.with(|runtime| {
            runtime.block_on(async {
                let mut ahead = ReadAhead::start(Failing(bytes.clone()), progress.clone());
                let mut read = Vec::new();
                let error = ahead.read_to_end(&mut read).await.unwrap_err();
                (read, error)
            })
        });
        assert_eq!(read, bytes);
        assert_eq!(error.to_string(), "the connection broke");
        assert_eq!(
            progress.downloaded.load(Ordering::Relaxed),
            bytes.len() as u64
        );
    }

    #[test]
    fn an_intact_zip_is_read_in_both_layouts() {
        for descriptor in [false, true] {
            let sums = read(zipped(REPORT.as_bytes(), descriptor), Some("a.csv")).unwrap();
            assert_eq!(sums.rows().kept, 2);
            assert_eq!(sums.accounts()[0].reconciled(), Some(true));
        }
    }

    /// Whichever thread splits a DBR's records (the grain decides, see `SplitOn`), a version of
    /// several objects is read alike: the same rows and sums, and a malformed record is named
    /// with its object and line.
    #[test]
    fn a_version_of_several_objects_is_read_alike_whichever_thread_splits() {
        let broken = REPORT.replacen("\"S3\"", "\"S3\"x", 1);
        for grain in [Grain::Accounts, Grain::Daily(MemoryBudget::unlimited())] {
            let read = |second: &str| {
                let expected = Expected {
                    layout: &crate::formats::dbr::LAYOUT,
                    identity: ReportIdentity::default(),
                    grain: grain.clone(),
                    name_objects: true,
                };
                let objects = [("a.csv", REPORT.to_owned()), ("b.csv", second.to_owned())];
                RUNTIME.with(|runtime| {
                    runtime.block_on(async {
                        let mut reading = Reading::start(expected, Monitored::All, Arc::default());
                        for (name, text) in objects {
                            let object = std::io::Cursor::new(text.into_bytes());
                            reading.object(name, Compression::Sniff, object).await?;
                        }
                        reading.finish().await
                    })
                })
            };
            let sums = read(REPORT).unwrap();
            assert_eq!(
                (sums.rows().line_items, sums.rows().footer),
                (4, 2),
                "{grain:?}"
            );
            let unblended: Vec<_> = (sums.accounts().iter())
                .map(|account| account.sums.unblended_cost.to_string())
                .collect();
            assert_eq!(unblended, ["0.8", "0.02"], "{grain:?}");
            assert_eq!(
                read(&broken).unwrap_err().to_string(),
                "b.csv: line 3: text follows a closing quote",
                "{grain:?}"
            );
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
