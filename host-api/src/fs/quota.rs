//! Cumulative quotas of a read-write grant: total bytes and total entries
//! of its directory, across calls and restarts.
//!
//! A call measures the directory itself (a walk that follows no symlink)
//! the first time it would grow it, so what earlier calls, earlier
//! processes or anyone else left there counts. Calls running at the same
//! time see each other through a ledger per directory: every call adds
//! what it creates there while it runs and takes it back when it ends (its
//! files are then on disk, and the next measure finds them). A call may
//! count another's growth twice, never not at all, so concurrent calls can
//! be refused early but never pass the quota together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

/// Growth of the calls now running, per directory.
#[derive(Debug, Default)]
struct Ledger {
    bytes: u64,
    entries: u64,
}

/// One ledger per host directory, shared by every grant of that directory.
static LEDGERS: LazyLock<Mutex<HashMap<PathBuf, Arc<Mutex<Ledger>>>>> =
    LazyLock::new(Mutex::default);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which quota refused a growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuotaKind {
    /// `quota_bytes`.
    Bytes(u64),
    /// `quota_files`.
    Files(u64),
}

impl QuotaKind {
    /// The rule, as the client reads it, for the grant at `guest_path`.
    pub(crate) fn describe(self, guest_path: &str) -> String {
        match self {
            Self::Bytes(n) => format!("quota: {guest_path} quota_bytes ({n} bytes)"),
            Self::Files(n) => format!("quota: {guest_path} quota_files ({n} entries)"),
        }
    }
}

/// One call's use of a grant's quotas, shared by the call's filesystem
/// view and the output streams it opens.
#[derive(Debug, Clone)]
pub(crate) struct QuotaUse(Arc<Mutex<CallQuota>>);

/// What [`QuotaUse`] shares.
#[derive(Debug)]
struct CallQuota {
    host_dir: PathBuf,
    max_bytes: Option<u64>,
    max_entries: Option<u64>,
    ledger: Arc<Mutex<Ledger>>,
    /// The directory as this call first measured it.
    measured: Option<(u64, u64)>,
    /// What this call added (also in the ledger while it runs).
    added_bytes: u64,
    added_entries: u64,
    /// What this call removed, credited to itself only.
    freed_bytes: u64,
    freed_entries: u64,
}

impl QuotaUse {
    /// Quota bookkeeping for one call in `host_dir`, or `None` when the
    /// grant has no quota.
    pub(crate) fn new(
        host_dir: &Path,
        max_bytes: Option<u64>,
        max_entries: Option<u64>,
    ) -> Option<Self> {
        if max_bytes.is_none() && max_entries.is_none() {
            return None;
        }
        let ledger = lock(&LEDGERS)
            .entry(host_dir.to_owned())
            .or_default()
            .clone();
        Some(Self(Arc::new(Mutex::new(CallQuota {
            host_dir: host_dir.to_owned(),
            max_bytes,
            max_entries,
            ledger,
            measured: None,
            added_bytes: 0,
            added_entries: 0,
            freed_bytes: 0,
            freed_entries: 0,
        }))))
    }

    /// Admits growth by `bytes` and `entries`, or names the quota it would
    /// pass. Admitted growth is counted at once.
    pub(crate) fn grow(&self, bytes: u64, entries: u64) -> Result<(), QuotaKind> {
        lock(&self.0).grow(bytes, entries)
    }

    /// Credits this call with `bytes` and `entries` it removed.
    pub(crate) fn free(&self, bytes: u64, entries: u64) {
        lock(&self.0).free(bytes, entries);
    }
}

impl CallQuota {
    fn grow(&mut self, bytes: u64, entries: u64) -> Result<(), QuotaKind> {
        if bytes == 0 && entries == 0 {
            return Ok(());
        }
        let (on_disk_bytes, on_disk_entries) =
            *self.measured.get_or_insert_with(|| measure(&self.host_dir));
        let mut ledger = lock(&self.ledger);
        let total = |disk: u64, running: u64, freed: u64, new: u64| {
            disk.saturating_add(running)
                .saturating_sub(freed)
                .saturating_add(new)
        };
        if let Some(max) = self.max_bytes
            && total(on_disk_bytes, ledger.bytes, self.freed_bytes, bytes) > max
        {
            return Err(QuotaKind::Bytes(max));
        }
        if let Some(max) = self.max_entries
            && total(on_disk_entries, ledger.entries, self.freed_entries, entries) > max
        {
            return Err(QuotaKind::Files(max));
        }
        ledger.bytes += bytes;
        ledger.entries += entries;
        self.added_bytes += bytes;
        self.added_entries += entries;
        Ok(())
    }

    fn free(&mut self, bytes: u64, entries: u64) {
        self.freed_bytes = self.freed_bytes.saturating_add(bytes);
        self.freed_entries = self.freed_entries.saturating_add(entries);
    }
}

/// The call's growth leaves the ledger with its last handle.
impl Drop for CallQuota {
    fn drop(&mut self) {
        let mut ledger = lock(&self.ledger);
        ledger.bytes = ledger.bytes.saturating_sub(self.added_bytes);
        ledger.entries = ledger.entries.saturating_sub(self.added_entries);
    }
}

/// Bytes of regular files and number of entries under `dir`, following no
/// symlink. What cannot be read counts as nothing.
fn measure(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in listing.flatten() {
            entries += 1;
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                bytes = bytes.saturating_add(meta.len());
            }
        }
    }
    (bytes, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("stockade-quota-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a"), [0u8; 100]).unwrap();
        dir
    }

    #[test]
    fn counts_what_is_on_disk_and_what_running_calls_add() {
        let dir = scratch("ledger");
        assert_eq!(measure(&dir), (100, 2));
        let first = QuotaUse::new(&dir, Some(150), Some(4)).unwrap();
        let second = QuotaUse::new(&dir, Some(150), Some(4)).unwrap();
        first.grow(40, 1).unwrap();
        // The second call sees the first one's growth although it is not on disk.
        assert_eq!(second.grow(20, 0), Err(QuotaKind::Bytes(150)));
        assert_eq!(second.grow(0, 2), Err(QuotaKind::Files(4)));
        drop(first);
        second.grow(20, 2).unwrap();
        second.free(100, 1);
        second.grow(90, 0).unwrap();
    }
}
