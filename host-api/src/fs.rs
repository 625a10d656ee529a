//! Filesystem capability: the directories a tool may see, and how.
//!
//! Each grant becomes a WASI preopen. wasmtime-wasi resolves every guest path
//! through cap-std, which refuses `..`, absolute paths and symlinks that
//! would leave the preopened directory; nothing else of the host filesystem
//! exists for the guest.
//!
//! What cap-std cannot see, the `guarded` submodule adds: `wasi:filesystem/types` is
//! linked through a wrapper around wasmtime-wasi's own implementation that
//! refuses files with more than one hard link (a link planted inside a
//! grant may share its inode with a file outside it), device nodes, FIFOs
//! and sockets, refuses to create hard links, and enforces the per-call
//! caps of read-write grants: `max_files` new entries and `max_file_size`
//! bytes per file.

mod capped;
mod guarded;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::Linker;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

pub(crate) use guarded::GuardedFs;

use crate::SandboxError;
use crate::call::CallState;

/// Default `max_file_size` of a read-write grant: 64 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 << 20;
/// Default `max_files` of a read-write grant: 1000 new entries per call.
pub const DEFAULT_MAX_FILES: u32 = 1000;

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
    /// Largest size, in bytes, one call may make a file reach (rw grants).
    pub max_file_size: u64,
    /// Entries (files, directories, symlinks) one call may create (rw grants).
    pub max_files: u32,
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

/// Replaces wasmtime-wasi's `wasi:filesystem/types` and `preopens` in
/// `linker` (which must already hold them) with the guarded versions.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
    linker.allow_shadowing(true);
    let linked = types::add_to_linker::<CallState, guarded::Guarded>(linker, CallState::guarded_fs)
        .and_then(|()| {
            preopens::add_to_linker::<CallState, guarded::Guarded>(linker, CallState::guarded_fs)
        });
    linker.allow_shadowing(false);
    linked
}

/// One call's filesystem bookkeeping: which grant every descriptor comes
/// from, and what the call has created in each grant.
pub(crate) struct FsGuard {
    log: RefusalLog,
    grants: Vec<GrantUse>,
    /// Descriptor handle (resource rep) -> index in `grants`.
    origin: HashMap<u32, usize>,
}

/// A grant's caps and how much of them this call has used.
struct GrantUse {
    guest_path: String,
    writable: bool,
    max_file_size: u64,
    max_files: u32,
    created: u32,
}

impl FsGuard {
    /// Fresh bookkeeping for one call of tool `label` under `grants`.
    pub(crate) fn new(label: &str, grants: &[FsGrant]) -> Self {
        Self {
            log: RefusalLog {
                tool: label.into(),
                warned: Arc::default(),
            },
            grants: grants
                .iter()
                .map(|g| GrantUse {
                    guest_path: g.guest_path.clone(),
                    writable: g.mode == FsMode::ReadWrite,
                    max_file_size: g.max_file_size,
                    max_files: g.max_files,
                    created: 0,
                })
                .collect(),
            origin: HashMap::new(),
        }
    }
}

/// The host log of one call's refusals: the first at `warn`, the rest at
/// `debug`, so a tool looping on a refused operation cannot flood the log.
#[derive(Clone)]
struct RefusalLog {
    tool: Arc<str>,
    warned: Arc<AtomicBool>,
}

impl RefusalLog {
    /// Logs that `path` of `grant` was refused, and why.
    fn refused(&self, grant: &str, path: &str, why: &str) {
        let tool = &*self.tool;
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(tool, grant, path, "refused: {why}");
        } else {
            tracing::warn!(tool, grant, path, "refused: {why}");
        }
    }

    /// Logs that the call hit cap `key` (= `value`) of `grant`.
    fn cap(&self, grant: &str, key: &str, value: u64) {
        let tool = &*self.tool;
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(tool, grant, "limit exceeded: fs {key} ({value})");
        } else {
            tracing::warn!(tool, grant, "limit exceeded: fs {key} ({value})");
        }
    }
}
