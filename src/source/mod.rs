//! Where report objects come from: an S3 bucket, or a local directory laid out like one. Both
//! list every object under the prefix and open one object as a byte stream; what happens to the
//! bytes after that does not depend on the source.

mod dir;
mod s3;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

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

/// Where a listing looks in a folder it comes upon (a key prefix ending in `/`): the prefix to
/// list there, the folder or a narrower one. The formats say it (`formats::look_in`): they know
/// which folders hold what.
pub type LookIn = fn(&str) -> String;

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

/// Small objects read before, by key and ETag (objects listed without an ETag are not kept).
/// Dropped whole at [`SmallObjects::KEPT`] entries, far more than a bucket's manifests.
#[derive(Default)]
pub struct SmallObjects(Mutex<HashMap<KeyAndEtag, Arc<[u8]>>>);

type KeyAndEtag = (String, String);

impl SmallObjects {
    const KEPT: usize = 10_000;

    fn get(&self, object: &ObjectMeta) -> Option<Arc<[u8]>> {
        let kept = self.0.lock().expect("not poisoned");
        kept.get(&(object.key.clone(), object.etag.clone()))
            .cloned()
    }

    fn insert(&self, object: &ObjectMeta, bytes: Arc<[u8]>) {
        if object.etag.is_empty() {
            return;
        }
        let mut kept = self.0.lock().expect("not poisoned");
        if kept.len() >= SmallObjects::KEPT {
            kept.clear();
        }
        kept.insert((object.key.clone(), object.etag.clone()), bytes);
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

    /// Every object under the configured prefix, in the folders below it only where `look_in`
    /// says (a directory is listed whole: that costs no request).
    pub async fn list(&self, look_in: LookIn) -> Result<Listing, SourceError> {
        self.list_within(None, look_in).await
    }

    /// With `within`, only the objects whose keys (after the prefix) start with one of these.
    pub async fn list_within(
        &self,
        within: Option<&[String]>,
        look_in: LookIn,
    ) -> Result<Listing, SourceError> {
        match self {
            Source::S3(s3) => s3.list(within, look_in).await,
            Source::Dir(dir) => dir.list().await,
        }
    }

    /// The first `limit` + 1 bytes of a small object (a manifest): the caller refuses one that
    /// is longer than `limit`. An S3 object is read once per ETag; a directory's file every time,
    /// which costs no request.
    pub async fn read_small(
        &self,
        object: &ObjectMeta,
        limit: u64,
    ) -> Result<Arc<[u8]>, SourceError> {
        let kept = match self {
            Source::S3(s3) => Some(s3.small_objects()),
            Source::Dir(_) => None,
        };
        if let Some(bytes) = kept.and_then(|kept| kept.get(object)) {
            return Ok(bytes);
        }
        let mut bytes = Vec::new();
        self.open(object)
            .await?
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|error| SourceError::Open {
                key: object.key.clone(),
                explanation: error.to_string(),
                kind: FailureKind::Transient,
                cause: error.into(),
            })?;
        let bytes: Arc<[u8]> = bytes.into();
        if let Some(kept) = kept {
            kept.insert(object, bytes.clone());
        }
        Ok(bytes)
    }

    /// The bytes of exactly the listed version of `object`.
    pub async fn open(&self, object: &ObjectMeta) -> Result<ObjectBody, SourceError> {
        match self {
            Source::S3(s3) => s3.open(object).await,
            Source::Dir(dir) => dir.open(object).await,
        }
    }
}
