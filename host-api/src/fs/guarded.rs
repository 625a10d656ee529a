//! The guarded `wasi:filesystem`: wasmtime-wasi's implementation behind a
//! wrapper that adds the checks cap-std cannot make.
//!
//! Every host function delegates to wasmtime-wasi, so path resolution,
//! read-only enforcement and error mapping stay theirs. Around it:
//! - `open-at` looks at the target first and again at what it opened: a
//!   regular file with more than one hard link, or anything that is not a
//!   regular file or a directory, is refused with `access`. A truncation is
//!   done only after that check, on the opened file.
//! - `stat-at`, `set-times-at` and `metadata-hash-at` refuse multiply
//!   linked files the same way; `link-at` is refused outright.
//! - New entries (`open-at` with `create` where nothing existed,
//!   `create-directory-at`, `symlink-at`) count against the grant's
//!   `max_files`; past it the guest gets `quota`.
//! - `write`, `set-size` and the output streams of a file refuse to make it
//!   larger than the grant's `max_file_size` (`file-too-large`; a stream
//!   reports it through `filesystem-error-code`, which wasi-libc does not
//!   ask, so C and Rust `write()` see `EIO`).

use std::os::unix::fs::MetadataExt;

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode,
    Filesize, HostDescriptor, HostDirectoryEntryStream, MetadataHashValue, NewTimestamp, OpenFlags,
    PathFlags,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult, ReaddirIterator};

use super::FsGuard;
use super::capped::{CapExceeded, CappedFileStream};

/// Marks the guarded view as the data the filesystem bindings run on.
pub(crate) struct Guarded;

impl HasData for Guarded {
    type Data<'a> = GuardedFs<'a>;
}

/// wasmtime-wasi's filesystem view plus this call's [`FsGuard`].
pub(crate) struct GuardedFs<'a> {
    inner: WasiFilesystemCtxView<'a>,
    guard: &'a mut FsGuard,
}

impl<'a> GuardedFs<'a> {
    /// Wraps `inner` with the call's bookkeeping.
    pub(crate) fn new(inner: WasiFilesystemCtxView<'a>, guard: &'a mut FsGuard) -> Self {
        Self { inner, guard }
    }

    /// Index of the grant descriptor `fd` was opened under.
    fn grant(&self, fd: &Resource<Descriptor>) -> FsResult<usize> {
        self.guard.origin.get(&fd.rep()).copied().ok_or_else(|| {
            FsError::trap(wasmtime::format_err!(
                "filesystem descriptor {} has no grant",
                fd.rep()
            ))
        })
    }

    /// Stats `path` under `fd` without the guest seeing it: `None` when
    /// nothing is there.
    async fn peek(
        &mut self,
        fd: &Resource<Descriptor>,
        flags: PathFlags,
        path: &str,
    ) -> FsResult<Option<DescriptorStat>> {
        match HostDescriptor::stat_at(&mut self.inner, borrow(fd), flags, path.to_owned()).await {
            Ok(stat) => Ok(Some(stat)),
            Err(err) if err.downcast_ref() == Some(&ErrorCode::NoEntry) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Refuses `path` when it names a file that shares its inode.
    async fn refuse_shared(
        &mut self,
        fd: &Resource<Descriptor>,
        flags: PathFlags,
        path: &str,
    ) -> FsResult<()> {
        match self.peek(fd, flags, path).await? {
            Some(stat) if shares_inode(&stat) => Err(self.refused(fd, path, SHARED)),
            _ => Ok(()),
        }
    }

    /// Logs why `path` is refused and gives the guest `access`.
    fn refused(&self, fd: &Resource<Descriptor>, path: &str, why: &str) -> FsError {
        self.guard.log.refused(self.grant_path(fd), path, why);
        ErrorCode::Access.into()
    }

    /// Guest path of the grant `fd` belongs to, for the host log.
    fn grant_path(&self, fd: &Resource<Descriptor>) -> &str {
        self.grant(fd)
            .map(|i| self.guard.grants[i].guest_path.as_str())
            .unwrap_or("?")
    }

    /// Checks that grant `index` may gain one more entry in this call.
    fn reserve_entry(&self, index: usize) -> FsResult<()> {
        let grant = &self.guard.grants[index];
        if grant.writable && grant.created >= grant.max_files {
            self.guard
                .log
                .cap(&grant.guest_path, "max_files", grant.max_files.into());
            return Err(ErrorCode::Quota.into());
        }
        Ok(())
    }

    /// The size cap for writes through `fd`, when it is a writable file.
    fn size_cap(&self, fd: &Resource<Descriptor>) -> FsResult<Option<u64>> {
        match self.inner.table.get(fd)? {
            Descriptor::File(file) if !file.perms.write_not_permitted() => {
                Ok(Some(self.guard.grants[self.grant(fd)?].max_file_size))
            }
            _ => Ok(None),
        }
    }

    /// Refuses a write through `fd` that would end past the size cap.
    fn check_end(&self, fd: &Resource<Descriptor>, end: Option<u64>) -> FsResult<()> {
        let Some(cap) = self.size_cap(fd)? else {
            return Ok(());
        };
        if end.is_some_and(|end| end <= cap) {
            return Ok(());
        }
        self.guard
            .log
            .cap(self.grant_path(fd), "max_file_size", cap);
        Err(ErrorCode::FileTooLarge.into())
    }

    /// An output stream over file `fd` that honours the size cap; `None`
    /// appends.
    fn capped_stream(
        &mut self,
        fd: Resource<Descriptor>,
        position: Option<u64>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let grant = &self.guard.grants[self.grant(&fd)?];
        let file = match self.inner.table.get(&fd)? {
            Descriptor::File(file) => file,
            Descriptor::Dir(_) => return Err(ErrorCode::BadDescriptor.into()),
        };
        if file.perms.write_not_permitted() {
            return Err(ErrorCode::NotPermitted.into());
        }
        let stream = CappedFileStream::new(
            file.file.clone(),
            position,
            grant.max_file_size,
            self.guard.log.clone(),
            grant.guest_path.clone(),
        );
        let stream: DynOutputStream = Box::new(stream);
        Ok(self.inner.table.push(stream)?)
    }
}

/// Why a multiply linked file is refused.
const SHARED: &str = "a file with more than one hard link may be a file outside the grant";
/// Why an open is refused.
const UNOPENABLE: &str =
    "not a directory or a regular file with a single link (device, FIFO, socket or hard link)";

/// A second handle on a resource the guest lent us.
fn borrow(fd: &Resource<Descriptor>) -> Resource<Descriptor> {
    Resource::new_borrow(fd.rep())
}

/// A regular file with another name somewhere: it may be a file outside
/// the grant that someone linked into it.
fn shares_inode(stat: &DescriptorStat) -> bool {
    stat.type_ == DescriptorType::RegularFile && stat.link_count > 1
}

/// Whether a stat'd object may be opened at all: directories, symlinks
/// (resolved by the open itself) and regular files with one link.
fn openable(stat: &DescriptorStat) -> bool {
    match stat.type_ {
        DescriptorType::Directory | DescriptorType::SymbolicLink => true,
        DescriptorType::RegularFile => stat.link_count <= 1,
        _ => false,
    }
}

/// The same check on what an open returned, and the deferred truncation.
fn vet_opened(opened: &Descriptor, truncate: bool) -> Result<(), ErrorCode> {
    let Descriptor::File(file) = opened else {
        return Ok(());
    };
    let meta = file.file.metadata()?;
    if !meta.is_file() || meta.nlink() > 1 {
        return Err(ErrorCode::Access);
    }
    if truncate {
        file.file.set_len(0)?;
    }
    Ok(())
}

impl preopens::Host for GuardedFs<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let dirs = preopens::Host::get_directories(&mut self.inner)?;
        for (dir, name) in &dirs {
            if let Some(index) = self.guard.grants.iter().position(|g| &g.guest_path == name) {
                self.guard.origin.insert(dir.rep(), index);
            }
        }
        Ok(dirs)
    }
}

impl types::Host for GuardedFs<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.inner, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        if self.inner.table.get(&err)?.is::<CapExceeded>() {
            return Ok(Some(ErrorCode::FileTooLarge));
        }
        types::Host::filesystem_error_code(&mut self.inner, err)
    }
}

impl HostDescriptor for GuardedFs<'_> {
    async fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
        len: Filesize,
        advice: Advice,
    ) -> FsResult<()> {
        HostDescriptor::advise(&mut self.inner, fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        HostDescriptor::sync_data(&mut self.inner, fd).await
    }

    async fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        HostDescriptor::get_flags(&mut self.inner, fd).await
    }

    async fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        HostDescriptor::get_type(&mut self.inner, fd).await
    }

    async fn set_size(&mut self, fd: Resource<Descriptor>, size: Filesize) -> FsResult<()> {
        self.check_end(&fd, Some(size))?;
        HostDescriptor::set_size(&mut self.inner, fd, size).await
    }

    async fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        HostDescriptor::set_times(&mut self.inner, fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<Descriptor>,
        len: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        HostDescriptor::read(&mut self.inner, fd, len, offset).await
    }

    async fn write(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Vec<u8>,
        offset: Filesize,
    ) -> FsResult<Filesize> {
        self.check_end(&fd, offset.checked_add(buf.len() as u64))?;
        HostDescriptor::write(&mut self.inner, fd, buf, offset).await
    }

    async fn read_directory(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<ReaddirIterator>> {
        HostDescriptor::read_directory(&mut self.inner, fd).await
    }

    async fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        HostDescriptor::sync(&mut self.inner, fd).await
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let grant = self.grant(&fd)?;
        self.reserve_entry(grant)?;
        HostDescriptor::create_directory_at(&mut self.inner, fd, path).await?;
        self.guard.grants[grant].created += 1;
        Ok(())
    }

    async fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        HostDescriptor::stat(&mut self.inner, fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        let stat =
            HostDescriptor::stat_at(&mut self.inner, borrow(&fd), path_flags, path.clone()).await?;
        if shares_inode(&stat) {
            return Err(self.refused(&fd, &path, SHARED));
        }
        Ok(stat)
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        self.refuse_shared(&fd, path_flags, &path).await?;
        HostDescriptor::set_times_at(&mut self.inner, fd, path_flags, path, atim, mtim).await
    }

    async fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        _old_path_flags: PathFlags,
        old_path: String,
        _new_descriptor: Resource<Descriptor>,
        _new_path: String,
    ) -> FsResult<()> {
        let why = "hard links cannot be created in a grant";
        self.guard.log.refused(self.grant_path(&fd), &old_path, why);
        Err(ErrorCode::NotPermitted.into())
    }

    async fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let grant = self.grant(&fd)?;
        let existing = self.peek(&fd, path_flags, &path).await?;
        if existing.as_ref().is_some_and(|stat| !openable(stat)) {
            return Err(self.refused(&fd, &path, UNOPENABLE));
        }
        let creates = oflags.contains(OpenFlags::CREATE) && existing.is_none();
        if creates {
            self.reserve_entry(grant)?;
        }
        // Truncate only once the opened file is known to be the grant's own:
        // open for writing, check, then truncate the descriptor.
        let truncate =
            oflags.contains(OpenFlags::TRUNCATE) && !oflags.contains(OpenFlags::DIRECTORY);
        let (oflags, flags) = if truncate {
            (
                oflags & !OpenFlags::TRUNCATE,
                flags | DescriptorFlags::WRITE,
            )
        } else {
            (oflags, flags)
        };
        let opened = HostDescriptor::open_at(
            &mut self.inner,
            borrow(&fd),
            path_flags,
            path.clone(),
            oflags,
            flags,
        )
        .await?;
        if creates {
            self.guard.grants[grant].created += 1;
        }
        if let Err(code) = vet_opened(self.inner.table.get(&opened)?, truncate) {
            self.inner.table.delete(opened)?;
            return Err(match code {
                ErrorCode::Access => self.refused(&fd, &path, UNOPENABLE),
                other => other.into(),
            });
        }
        self.guard.origin.insert(opened.rep(), grant);
        Ok(opened)
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        self.guard.origin.remove(&fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }

    async fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        HostDescriptor::readlink_at(&mut self.inner, fd, path).await
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<Descriptor>,
        path: String,
    ) -> FsResult<()> {
        HostDescriptor::remove_directory_at(&mut self.inner, fd, path).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        HostDescriptor::rename_at(&mut self.inner, fd, old_path, new_fd, new_path).await
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        let grant = self.grant(&fd)?;
        self.reserve_entry(grant)?;
        HostDescriptor::symlink_at(&mut self.inner, fd, src_path, dest_path).await?;
        self.guard.grants[grant].created += 1;
        Ok(())
    }

    async fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        HostDescriptor::unlink_file_at(&mut self.inner, fd, path).await
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        HostDescriptor::read_via_stream(&mut self.inner, fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.capped_stream(fd, Some(offset))
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.capped_stream(fd, None)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<Descriptor>,
        b: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        HostDescriptor::is_same_object(&mut self.inner, a, b).await
    }

    async fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        HostDescriptor::metadata_hash(&mut self.inner, fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        self.refuse_shared(&fd, path_flags, &path).await?;
        HostDescriptor::metadata_hash_at(&mut self.inner, fd, path_flags, path).await
    }
}

impl HostDirectoryEntryStream for GuardedFs<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<ReaddirIterator>,
    ) -> FsResult<Option<DirectoryEntry>> {
        HostDirectoryEntryStream::read_directory_entry(&mut self.inner, stream).await
    }

    fn drop(&mut self, stream: Resource<ReaddirIterator>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}
