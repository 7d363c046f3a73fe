//! The one error type of the store, shared by both backends so callers can
//! match on what happened rather than on where.

/// What went wrong with a store operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A create found the key already present.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The key that exists.
        key: String,
    },
    /// A read or guarded write named a key that is not there.
    #[error("{key} not found")]
    NotFound {
        /// The missing key.
        key: String,
    },
    /// A guarded write expected another revision: someone else wrote first.
    #[error("conflict on {key}: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key written.
        key: String,
        /// The revision the caller expected.
        expected: i64,
        /// The revision found (0 when the key is gone).
        actual: i64,
    },
    /// A write guarded by a leader's fencing token found that leadership gone.
    #[error("fenced: leadership {fence_key} (token {token}) is no longer held")]
    Fenced {
        /// The election key of the deposed leader.
        fence_key: String,
        /// The token the write carried.
        token: i64,
    },
    /// A lease expired or was revoked (or never existed).
    #[error("lease {0:x} not found or expired")]
    LeaseNotFound(i64),
    /// A value stored under a key could not be decoded as the kind it should be.
    #[error("invalid object at {key}: {message}")]
    Invalid {
        /// Where it is stored.
        key: String,
        /// What the decoder said (with line and column where known).
        message: String,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted (oldest kept: {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The compaction revision.
        compacted: i64,
    },
    /// The store refused the request for good (a compaction to a future
    /// revision, an argument it does not accept): retrying will not help.
    #[error("rejected by the store: {0}")]
    Rejected(String),
    /// The backend could not be reached or failed (network, disk). For a
    /// write this means the outcome is unknown: it may have been applied, so
    /// a retried guarded write can meet its own earlier attempt as a
    /// `Conflict` (or `AlreadyExists`) and must re-read before concluding.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store was closed while the operation was in flight.
    #[error("store closed")]
    Closed,
}

impl Error {
    /// True for errors a caller may retry as they are (the outcome was not a
    /// decision of the store but a failure to reach it).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
