//! Reads one report object end to end: unzip (when it is a ZIP) on the async side, parse and
//! aggregate on a blocking thread, so that inflating and parsing run on two cores at once. The
//! two meet in a small bounded channel, so memory stays flat whatever the report's size.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio::sync::mpsc;

use super::aggregate::{ReportIdentity, ReportSums};
use super::rows::ParseError;
use super::zip::{self, ZipError, ZipMember};
use crate::domain::Monitored;
use crate::failure::{Classify, FailureKind};

/// Inflated bytes travel in chunks of this size; a few in flight keep both threads busy.
const CHUNK: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Zip(#[from] ZipError),
    #[error("reading the object: {0}")]
    Io(#[source] io::Error),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

impl Classify for ReadError {
    /// The bytes that arrived are the report's: a broken archive or CSV is its content. A
    /// stream that broke off is the network's doing.
    fn kind(&self) -> FailureKind {
        match self {
            ReadError::Zip(_) | ReadError::Parse(_) => FailureKind::Content,
            ReadError::Io(_) => FailureKind::Transient,
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

/// What the reader expects of the object.
pub struct Expected<'a> {
    /// For an object that must be a ZIP (its name ends in `.zip`), the name its member should
    /// have: a different one is only worth a warning (re-zipped extracts; `zip - -` names it
    /// `-`). `None` lets the content decide between ZIP and bare CSV.
    pub zip_member: Option<&'a str>,
    /// What the object's name says the report is.
    pub identity: ReportIdentity,
}

/// How far a report has been read; the counters move while it is, for whoever shows progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of the object read (compressed, for a ZIP).
    pub downloaded: AtomicU64,
    /// Bytes of CSV handed to the parser.
    pub inflated: AtomicU64,
    /// CSV records read.
    pub rows: AtomicU64,
}

/// Reads a report object (a `.csv.zip`, or a bare CSV) and sums it; `progress` counts what
/// went through.
pub async fn read_report<R>(
    object: R,
    expected: &Expected<'_>,
    monitored: Monitored,
    progress: Arc<Progress>,
) -> Result<ReportSums, ReadError>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (chunks, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let identity = expected.identity.clone();
    let parser = {
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            ReportSums::sum_csv(
                ChunkReader::new(receiver),
                identity,
                monitored,
                &progress.rows,
            )
        })
    };
    let counted = Counted {
        inner: object,
        progress: progress.clone(),
    };
    let mut object = BufReader::with_capacity(CHUNK, counted);
    let prefix = object.fill_buf().await.map_err(ReadError::Io)?;
    let sent = if expected.zip_member.is_some() || zip::looks_like_zip(prefix) {
        let member = ZipMember::open(object).await?;
        if let Some(expected) = expected.zip_member.filter(|&name| name != member.name()) {
            tracing::warn!(
                member = member.name(),
                expected,
                "zip member is not named like the object"
            );
        }
        send_chunks(member, chunks, &progress).await
    } else {
        send_chunks(object, chunks, &progress).await
    };
    let parsed = parser
        .await
        .map_err(|e| ReadError::Io(io::Error::other(e)))?;
    // A broken archive (bad CRC, truncated) is the cause even if the CSV happened to parse.
    sent?;
    Ok(parsed?)
}

/// Sends the reader's bytes to the parser until EOF, or until the parser stops listening.
async fn send_chunks<R: AsyncRead + Unpin>(
    mut reader: R,
    chunks: mpsc::Sender<Vec<u8>>,
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
        if !chunk.is_empty() && chunks.send(chunk).await.is_err() {
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

/// A blocking `Read` over the chunks the async side sends.
struct ChunkReader {
    receiver: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    fn new(receiver: mpsc::Receiver<Vec<u8>>) -> ChunkReader {
        ChunkReader {
            receiver,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.chunk.len() {
            match self.receiver.blocking_recv() {
                Some(chunk) => (self.chunk, self.at) = (chunk, 0),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
