//! A local directory read like a bucket: keys are paths relative to it, with `/`. Regular files
//! are objects; symbolic links (not followed, so nothing outside the directory is read), FIFOs,
//! sockets, devices and entries that cannot be read are passed over with the reason.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{Listing, ObjectBody, SourceError};
use crate::domain::ObjectMeta;
use crate::failure::FailureKind;

pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: PathBuf) -> DirSource {
        DirSource { root }
    }

    pub fn location(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    pub async fn list(&self) -> Result<Listing, SourceError> {
        let root = self.root.clone();
        let location = self.location();
        tokio::task::spawn_blocking(move || {
            let mut listing = Listing::default();
            // The root itself must be readable: without it there is nothing to list.
            let entries = std::fs::read_dir(&root).map_err(|e| SourceError::List {
                location,
                explanation: e.to_string(),
                kind: io_failure_kind(&e),
                cause: e.into(),
            })?;
            walk(&root, entries, &mut listing);
            listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
            listing.passed_over.sort();
            Ok(listing)
        })
        .await
        .expect("listing a directory does not panic")
    }

    pub async fn open(&self, object: &ObjectMeta) -> Result<ObjectBody, SourceError> {
        let open_error = |e: std::io::Error| SourceError::Open {
            key: object.key.clone(),
            explanation: e.to_string(),
            kind: io_failure_kind(&e),
            cause: e.into(),
        };
        let path = self.root.join(&object.key);
        let file = tokio::fs::File::open(&path).await.map_err(open_error)?;
        let now = meta(&object.key, &file.metadata().await.map_err(open_error)?);
        if now.etag != object.etag {
            return Err(SourceError::Changed {
                key: object.key.clone(),
            });
        }
        Ok(Box::new(file))
    }
}

/// A missing directory or a permission is for an operator to fix; anything else may pass.
fn io_failure_kind(error: &std::io::Error) -> FailureKind {
    match error.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            FailureKind::Configuration
        }
        _ => FailureKind::Transient,
    }
}

fn walk(root: &Path, entries: std::fs::ReadDir, listing: &mut Listing) {
    let key_of = |path: &Path| {
        path.strip_prefix(root)
            .expect("walked from the root")
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                listing
                    .passed_over
                    .push((String::new(), format!("an entry cannot be read: {error}")));
                continue;
            }
        };
        let path = entry.path();
        let key = key_of(&path);
        // `DirEntry::metadata` does not follow symbolic links.
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            Err(error) => {
                listing
                    .passed_over
                    .push((key, format!("cannot be read: {error}")));
                continue;
            }
        };
        let kind = metadata.file_type();
        if kind.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => walk(root, entries, listing),
                Err(error) => listing.passed_over.push((
                    format!("{key}/"),
                    format!("a folder that cannot be read: {error}"),
                )),
            }
        } else if kind.is_file() {
            // Opened here, so that an unreadable file is said now rather than failing its poll.
            match std::fs::File::open(&path) {
                Ok(_) => listing.objects.push(meta(&key, &metadata)),
                Err(error) => listing
                    .passed_over
                    .push((key, format!("cannot be read: {error}"))),
            }
        } else {
            listing.passed_over.push((key, not_a_file(&kind).into()));
        }
    }
}

fn not_a_file(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_symlink() {
        "a symbolic link (not followed: only regular files under the directory are read)"
    } else if kind.is_fifo() {
        "a FIFO, not a regular file"
    } else if kind.is_socket() {
        "a socket, not a regular file"
    } else {
        "a device, not a regular file"
    }
}

/// A file's version: size and modification time stand in for an S3 ETag.
fn meta(key: &str, metadata: &std::fs::Metadata) -> ObjectMeta {
    let modified = metadata.modified().ok().map(DateTime::<Utc>::from);
    let nanos = modified
        .and_then(|m| m.timestamp_nanos_opt())
        .unwrap_or_default();
    ObjectMeta {
        key: key.to_owned(),
        etag: format!("{}-{nanos}", metadata.len()),
        size: metadata.len(),
        last_modified: modified,
    }
}
