//! A local directory read like a bucket: keys are paths relative to it, with `/`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{ObjectBody, SourceError};
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

    pub async fn list(&self) -> Result<Vec<ObjectMeta>, SourceError> {
        let root = self.root.clone();
        let location = self.location();
        tokio::task::spawn_blocking(move || {
            let mut objects = Vec::new();
            walk(&root, &root, &mut objects).map_err(|e| SourceError::List {
                location,
                explanation: e.to_string(),
                kind: io_failure_kind(&e),
                cause: e.into(),
            })?;
            objects.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(objects)
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

fn walk(root: &Path, dir: &Path, objects: &mut Vec<ObjectMeta>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            walk(root, &path, objects)?;
        } else if metadata.is_file() {
            let relative = path.strip_prefix(root).expect("walked from the root");
            let key = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            objects.push(meta(&key, &metadata));
        }
    }
    Ok(())
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
