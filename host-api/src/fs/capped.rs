//! Output streams over the files of a grant, bounded by `max_file_size`
//! and the grant's quotas.
//!
//! wasmtime-wasi's own file streams write on a blocking thread after the
//! guest's `write` has returned, so a check made before handing the bytes
//! over cannot know where an append will land. These streams write on the
//! calling thread instead (what wasmtime-wasi's
//! `allow_blocking_current_thread` does for every file operation): the size
//! is checked and the bytes written in one step, and appends from all calls
//! are serialised so none lands past the size another one was checked
//! against.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::quota::QuotaUse;
use crate::refusals::Refusals;

/// Bytes a guest may hand over per `write`.
const WRITE_BUDGET: usize = 64 << 10;

/// Held while an append measures the file and writes at its end.
static APPENDS: Mutex<()> = Mutex::new(());

/// Why a stream write failed: it would have made the file larger than
/// `max_file_size`, or the grant's directory larger than its quota. The
/// guest sees `file-too-large` or `quota`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CapExceeded {
    /// `max_file_size`.
    #[error("limit exceeded: fs max_file_size ({0} bytes)")]
    FileSize(u64),
    /// `quota_bytes`.
    #[error("quota exceeded")]
    Quota,
}

/// An output stream over one file of a read-write grant.
pub(crate) struct CappedFileStream {
    file: Arc<File>,
    /// Where the next write goes; `None` appends.
    position: Option<u64>,
    max_file_size: u64,
    quota: Option<QuotaUse>,
    /// The call's refusals and the guest path of the grant.
    refusals: Refusals,
    grant: String,
    closed: bool,
}

/// What a stream is bounded by: the file size cap and the grant's quota.
pub(crate) struct StreamCaps {
    /// `max_file_size` of the grant.
    pub(crate) max_file_size: u64,
    /// The grant's quotas, if it has any.
    pub(crate) quota: Option<QuotaUse>,
    /// Where refusals are recorded.
    pub(crate) refusals: Refusals,
    /// Guest path of the grant.
    pub(crate) grant: String,
}

impl CappedFileStream {
    /// A stream writing `file` at `position` (or appending, for `None`).
    pub(crate) fn new(file: Arc<File>, position: Option<u64>, caps: StreamCaps) -> Self {
        Self {
            file,
            position,
            max_file_size: caps.max_file_size,
            quota: caps.quota,
            refusals: caps.refusals,
            grant: caps.grant,
            closed: false,
        }
    }

    fn write_checked(&mut self, bytes: &[u8]) -> Result<(), wasmtime::Error> {
        let _append = self.position.is_none().then(|| {
            APPENDS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        });
        let len = self.file.metadata()?.len();
        let at = self.position.unwrap_or(len);
        let end = at
            .checked_add(bytes.len() as u64)
            .filter(|end| *end <= self.max_file_size);
        let Some(end) = end else {
            self.refusals.record(format!(
                "limit exceeded: fs {} max_file_size ({} bytes)",
                self.grant, self.max_file_size
            ));
            return Err(wasmtime::Error::new(CapExceeded::FileSize(
                self.max_file_size,
            )));
        };
        let growth = end.saturating_sub(len);
        if !super::grow_within_quota(self.quota.as_ref(), &self.refusals, &self.grant, growth, 0) {
            return Err(wasmtime::Error::new(CapExceeded::Quota));
        }
        self.file.write_all_at(bytes, at)?;
        if let Some(position) = &mut self.position {
            *position = end;
        }
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedFileStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        if bytes.len() > WRITE_BUDGET {
            return Err(StreamError::trap("write larger than check_write allowed"));
        }
        self.write_checked(&bytes).map_err(|err| {
            // A failed write ends the stream, as WASI specifies.
            self.closed = true;
            StreamError::LastOperationFailed(err)
        })
    }

    fn flush(&mut self) -> StreamResult<()> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedFileStream {
    /// Always ready: every write completes before `write` returns.
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> Arc<File> {
        let path =
            std::env::temp_dir().join(format!("stockade-capped-{name}-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        Arc::new(file)
    }

    fn stream(file: &Arc<File>, position: Option<u64>, max: u64) -> CappedFileStream {
        let caps = StreamCaps {
            max_file_size: max,
            quota: None,
            refusals: Refusals::new("t"),
            grant: "/w".into(),
        };
        CappedFileStream::new(file.clone(), position, caps)
    }

    fn refused_for_size(result: StreamResult<()>) -> bool {
        matches!(result, Err(StreamError::LastOperationFailed(e)) if e.is::<CapExceeded>())
    }

    #[test]
    fn positional_writes_stop_at_the_cap_and_close_the_stream() {
        let file = scratch("position");
        let mut out = stream(&file, Some(0), 10);
        out.write(Bytes::from_static(b"0123456789")).unwrap();
        assert!(refused_for_size(out.write(Bytes::from_static(b"x"))));
        assert!(matches!(out.check_write(), Err(StreamError::Closed)));
        let mut late = stream(&file, Some(9), 10);
        assert!(refused_for_size(late.write(Bytes::from_static(b"ab"))));
        assert_eq!(file.metadata().unwrap().len(), 10);
    }

    #[test]
    fn appends_from_several_streams_share_one_cap() {
        let file = scratch("append");
        let mut a = stream(&file, None, 8);
        let mut b = stream(&file, None, 8);
        a.write(Bytes::from_static(b"aaaa")).unwrap();
        b.write(Bytes::from_static(b"bbbb")).unwrap();
        assert!(refused_for_size(a.write(Bytes::from_static(b"a"))));
        assert_eq!(file.metadata().unwrap().len(), 8);
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut &*file, &mut read).unwrap();
        assert_eq!(read, b"aaaabbbb");
    }
}
