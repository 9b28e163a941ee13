//! Where report objects come from: an S3 bucket, or a local directory laid out like one. Both
//! list every object under the prefix and open one object as a byte stream; what happens to the
//! bytes after that does not depend on the source.

mod dir;
mod s3;

use tokio::io::AsyncRead;

pub use s3::{S3Context, S3Source};

use crate::domain::ObjectMeta;
use crate::failure::{Classify, FailureKind};
use crate::integration::IntegrationSource;
use dir::DirSource;

/// What a listing found: the objects, and what was passed over with the reason (entries of a
/// directory that are not regular files, or cannot be read).
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<ObjectMeta>,
    pub passed_over: Vec<(String, String)>,
}

/// An object's bytes as they arrive.
pub type ObjectBody = Box<dyn AsyncRead + Send + Unpin>;

/// The error a source's client gave, kept as the cause.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `explanation` says what to fix; `kind` tells a permission or a missing bucket from a
    /// passing fault.
    #[error("listing {location}: {explanation}")]
    List {
        location: String,
        explanation: String,
        kind: FailureKind,
        #[source]
        cause: Cause,
    },
    #[error("reading {key}: {explanation}")]
    Open {
        key: String,
        explanation: String,
        kind: FailureKind,
        #[source]
        cause: Cause,
    },
    /// The object was replaced between listing and reading: the next poll reads the new one.
    #[error("{key} changed while it was being read")]
    Changed { key: String },
}

impl Classify for SourceError {
    fn kind(&self) -> FailureKind {
        match self {
            SourceError::List { kind, .. } | SourceError::Open { kind, .. } => *kind,
            SourceError::Changed { .. } => FailureKind::Transient,
        }
    }
}

pub enum Source {
    S3(S3Source),
    Dir(DirSource),
}

impl Source {
    /// An integration's source: its own S3 client (made from the process's `context`), or its
    /// directory.
    pub async fn for_integration(source: &IntegrationSource, context: &S3Context) -> Source {
        match source {
            IntegrationSource::S3(s3) => Source::S3(S3Source::new(context, s3).await),
            IntegrationSource::Dir(path) => Source::Dir(DirSource::new(path.clone())),
        }
    }

    /// Requests sent to S3 so far (none for a directory).
    pub fn requests(&self) -> u64 {
        match self {
            Source::S3(s3) => s3.requests(),
            Source::Dir(_) => 0,
        }
    }

    /// Whether listing fewer prefixes saves anything: requests to S3 do, a directory's
    /// entries cost nothing.
    pub fn lists_by_request(&self) -> bool {
        matches!(self, Source::S3(_))
    }

    /// Names the bucket (or directory) in the ledger and in messages: `s3://bucket/prefix` or
    /// `dir:PATH`.
    pub fn location(&self) -> String {
        match self {
            Source::S3(s3) => s3.location(),
            Source::Dir(dir) => dir.location(),
        }
    }

    /// The prefix every key of this source begins with (none for a directory).
    pub fn prefix(&self) -> &str {
        match self {
            Source::S3(s3) => s3.prefix(),
            Source::Dir(_) => "",
        }
    }

    /// Every object under the configured prefix, page after page.
    pub async fn list(&self) -> Result<Listing, SourceError> {
        self.list_within(None).await
    }

    /// With `within`, only the objects whose keys (after the prefix) start with one of these
    /// (a directory is always listed whole: that costs no request).
    pub async fn list_within(&self, within: Option<&[String]>) -> Result<Listing, SourceError> {
        match self {
            Source::S3(s3) => s3.list(within).await,
            Source::Dir(dir) => dir.list().await,
        }
    }

    /// The bytes of exactly the listed version of `object`.
    pub async fn open(&self, object: &ObjectMeta) -> Result<ObjectBody, SourceError> {
        match self {
            Source::S3(s3) => s3.open(object).await,
            Source::Dir(dir) => dir.open(object).await,
        }
    }
}
