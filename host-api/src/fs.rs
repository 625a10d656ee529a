//! Filesystem capability: the directories a tool may see, and how.
//!
//! Each grant becomes a WASI preopen. wasmtime-wasi resolves every guest path
//! through cap-std, which refuses `..`, absolute paths and symlinks that
//! would leave the preopened directory; nothing else of the host filesystem
//! exists for the guest.

use std::path::PathBuf;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::SandboxError;

/// Whether a grant may be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsMode {
    /// Read only: every mutation fails with `EACCES`/`EPERM` in the guest.
    ReadOnly,
    /// Read and write.
    ReadWrite,
}

/// One directory granted to a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsGrant {
    /// Absolute path the guest sees, e.g. `/data`.
    pub guest_path: String,
    /// Host directory behind it (canonical, checked at load).
    pub host_dir: PathBuf,
    /// Read-only or read-write.
    pub mode: FsMode,
}

/// Adds every grant to a call's WASI context as a preopened directory.
pub fn apply(grants: &[FsGrant], builder: &mut WasiCtxBuilder) -> Result<(), SandboxError> {
    for grant in grants {
        let perms = match grant.mode {
            FsMode::ReadOnly => FsPerms::ReadOnly,
            FsMode::ReadWrite => FsPerms::ReadWrite,
        };
        builder
            .preopened_dir(&grant.host_dir, &grant.guest_path, perms)
            .map_err(|_| SandboxError::GrantUnavailable {
                guest_path: grant.guest_path.clone(),
            })?;
    }
    Ok(())
}
