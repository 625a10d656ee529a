//! Why the audit cannot be written or opened.

/// A failure of the audit sink. Calls fail closed on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// A record could not be written or forced to disk.
    #[error("audit: cannot write {file}: {reason}")]
    Write {
        /// The file.
        file: String,
        /// The operating system's reason.
        reason: String,
    },
    /// An earlier write failed in a way that could not be undone; nothing
    /// more is written until a restart recovers the file.
    #[error("audit: writing stopped after an earlier failure ({0}); restart to recover")]
    Broken(String),
    /// The directory cannot be opened as an audit log.
    #[error("audit: {0}")]
    Open(String),
}
