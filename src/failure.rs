//! What kind of failure an error is, decided in one place for every error of the service: it
//! tells whether a report is read again, and how often a failure is logged.

use std::fmt;

/// The three kinds of failure, each with its own retry rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Something in the report's bytes (a broken archive, a bad amount, a sum that overflows):
    /// the same version fails the same way, so it is not read again until AWS writes a new one.
    Content,
    /// The network, S3 or the database failed for a while: retried at the next poll.
    Transient,
    /// Permissions, credentials, a missing bucket or database, a region: fixed by an operator,
    /// reported by `check`, retried at the next poll and logged once per poll.
    Configuration,
}

impl FailureKind {
    /// Whether the same report version is read again at the next poll.
    pub fn retried(self) -> bool {
        self != FailureKind::Content
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Content => "content",
            FailureKind::Transient => "transient",
            FailureKind::Configuration => "configuration",
        }
    }

    pub fn parse(text: &str) -> Option<FailureKind> {
        [
            FailureKind::Content,
            FailureKind::Transient,
            FailureKind::Configuration,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that knows which kind of failure it is.
pub trait Classify {
    fn kind(&self) -> FailureKind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_failures_wait_for_a_new_version() {
        for kind in [
            FailureKind::Content,
            FailureKind::Transient,
            FailureKind::Configuration,
        ] {
            assert_eq!(FailureKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.retried(), kind != FailureKind::Content);
        }
        assert_eq!(FailureKind::parse("other"), None);
    }
}
