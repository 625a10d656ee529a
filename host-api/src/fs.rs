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
//! and sockets, refuses to create hard links and symlinks whose target
//! could leave the grant, and enforces the per-call caps of read-write
//! grants (`max_files` new entries and `max_file_size` bytes per file) and
//! their cumulative quotas (`quota_bytes`, `quota_files`, in the `quota`
//! submodule). Every refusal is recorded in the call's [`Refusals`].

mod capped;
mod guarded;
mod quota;

use std::collections::HashMap;
use std::path::PathBuf;

use wasmtime::component::Linker;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

pub(crate) use guarded::GuardedFs;

use crate::SandboxError;
use crate::call::CallState;
use crate::refusals::Refusals;
use quota::QuotaUse;

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
    /// Total bytes of regular files the directory may hold (rw grants).
    pub quota_bytes: Option<u64>,
    /// Total entries the directory may hold, at any depth (rw grants).
    pub quota_files: Option<u64>,
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
    refusals: Refusals,
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
    /// Cumulative quotas, shared with the grant's output streams.
    quota: Option<QuotaUse>,
}

impl FsGuard {
    /// Fresh bookkeeping for one call under `grants`; refusals go to
    /// `refusals`.
    pub(crate) fn new(grants: &[FsGrant], refusals: Refusals) -> Self {
        Self {
            refusals,
            grants: grants
                .iter()
                .map(|g| GrantUse {
                    guest_path: g.guest_path.clone(),
                    writable: g.mode == FsMode::ReadWrite,
                    max_file_size: g.max_file_size,
                    max_files: g.max_files,
                    created: 0,
                    quota: (g.mode == FsMode::ReadWrite)
                        .then(|| QuotaUse::new(&g.host_dir, g.quota_bytes, g.quota_files))
                        .flatten(),
                })
                .collect(),
            origin: HashMap::new(),
        }
    }
}

/// Admits growth of a grant's directory by `bytes` and `entries` under its
/// quotas, recording the refusal when it would pass one.
fn grow_within_quota(
    quota: Option<&QuotaUse>,
    refusals: &Refusals,
    guest_path: &str,
    bytes: u64,
    entries: u64,
) -> bool {
    let Some(quota) = quota else {
        return true;
    };
    match quota.grow(bytes, entries) {
        Ok(()) => true,
        Err(kind) => {
            refusals.record(kind.describe(guest_path));
            false
        }
    }
}
