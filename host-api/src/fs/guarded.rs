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
//!   `max_files` and `quota_files`; past either the guest gets `quota`.
//! - `symlink-at` is refused (`not-permitted`) unless the target is a
//!   relative path without `..`: such a link resolves inside the grant
//!   wherever it is created or later moved, so none that could lead out of
//!   a grant is ever left on the host.
//! - `write`, `set-size` and the output streams of a file refuse to make it
//!   larger than the grant's `max_file_size` (`file-too-large`; a stream
//!   reports it through `filesystem-error-code`, which wasi-libc does not
//!   ask, so C and Rust `write()` see `EIO`); growth past `quota_bytes`
//!   gets `quota`.

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
use super::capped::{CapExceeded, CappedFileStream, StreamCaps};

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

    /// Records why `path` is refused and gives the guest `access`.
    fn refused(&self, fd: &Resource<Descriptor>, path: &str, why: &str) -> FsError {
        self.refuse(fd, path, why, ErrorCode::Access)
    }

    /// Records why `path` is refused and gives the guest `code`.
    fn refuse(&self, fd: &Resource<Descriptor>, path: &str, why: &str, code: ErrorCode) -> FsError {
        let grant = self.grant_path(fd).trim_end_matches('/');
        self.guard
            .refusals
            .record(format!("fs denied: {grant}/{path}: {why}"));
        code.into()
    }

    /// Guest path of the grant `fd` belongs to, for the host log.
    fn grant_path(&self, fd: &Resource<Descriptor>) -> &str {
        self.grant(fd)
            .map(|i| self.guard.grants[i].guest_path.as_str())
            .unwrap_or("?")
    }

    /// Checks that grant `index` may gain one more entry in this call and
    /// under its quota, and counts it there.
    fn reserve_entry(&self, index: usize) -> FsResult<()> {
        let grant = &self.guard.grants[index];
        if !grant.writable {
            return Ok(());
        }
        if grant.created >= grant.max_files {
            self.guard.refusals.record(format!(
                "limit exceeded: fs {} max_files ({} per call)",
                grant.guest_path, grant.max_files
            ));
            return Err(ErrorCode::Quota.into());
        }
        self.grow(index, 0, 1)
    }

    /// Admits growth of grant `index` under its quota, or gives `quota`.
    fn grow(&self, index: usize, bytes: u64, entries: u64) -> FsResult<()> {
        let grant = &self.guard.grants[index];
        let admitted = super::grow_within_quota(
            grant.quota.as_ref(),
            &self.guard.refusals,
            &grant.guest_path,
            bytes,
            entries,
        );
        if admitted {
            Ok(())
        } else {
            Err(ErrorCode::Quota.into())
        }
    }

    /// Credits grant `index` with what the call removed from it.
    fn free(&self, index: usize, bytes: u64, entries: u64) {
        if let Some(quota) = &self.guard.grants[index].quota {
            quota.free(bytes, entries);
        }
    }

    /// Settles an entry reserved in grant `index`: counted when `made`
    /// succeeded, given back when it failed.
    fn entry_made<T>(&mut self, index: usize, made: FsResult<T>) -> FsResult<T> {
        match &made {
            Ok(_) => self.guard.grants[index].created += 1,
            Err(_) => self.free(index, 0, 1),
        }
        made
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

    /// Refuses a write through `fd` that would end past the size cap or
    /// grow the grant past its quota; counts the growth.
    fn check_end(&self, fd: &Resource<Descriptor>, end: Option<u64>) -> FsResult<()> {
        let Some(cap) = self.size_cap(fd)? else {
            return Ok(());
        };
        let Some(end) = end.filter(|end| *end <= cap) else {
            self.guard.refusals.record(format!(
                "limit exceeded: fs {} max_file_size ({cap} bytes)",
                self.grant_path(fd)
            ));
            return Err(ErrorCode::FileTooLarge.into());
        };
        let index = self.grant(fd)?;
        if self.guard.grants[index].quota.is_none() {
            return Ok(());
        }
        let len = match self.inner.table.get(fd)? {
            Descriptor::File(file) => file.file.metadata()?.len(),
            Descriptor::Dir(_) => return Ok(()),
        };
        self.grow(index, end.saturating_sub(len), 0)
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
        let caps = StreamCaps {
            max_file_size: grant.max_file_size,
            quota: grant.quota.clone(),
            refusals: self.guard.refusals.clone(),
            grant: grant.guest_path.clone(),
        };
        let stream = CappedFileStream::new(file.file.clone(), position, caps);
        let stream: DynOutputStream = Box::new(stream);
        Ok(self.inner.table.push(stream)?)
    }
}

/// Why a multiply linked file is refused.
const SHARED: &str = "a file with more than one hard link may be a file outside the grant";
/// Why an open is refused.
const UNOPENABLE: &str =
    "not a directory or a regular file with a single link (device, FIFO, socket or hard link)";

/// Whether a symlink with this target resolves inside the directory tree
/// it is created in, wherever that is: relative, and never going up.
fn stays_inside(target: &str) -> bool {
    !target.is_empty() && !target.starts_with('/') && target.split('/').all(|part| part != "..")
}

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
        match self.inner.table.get(&err)?.downcast_ref::<CapExceeded>() {
            Some(CapExceeded::FileSize(_)) => return Ok(Some(ErrorCode::FileTooLarge)),
            Some(CapExceeded::Quota) => return Ok(Some(ErrorCode::Quota)),
            None => {}
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
        let grant = self.grant(&fd)?;
        if self.guard.grants[grant].quota.is_none() {
            return HostDescriptor::set_size(&mut self.inner, fd, size).await;
        }
        // A shrink gives its bytes back to the quota.
        let before = HostDescriptor::stat(&mut self.inner, borrow(&fd))
            .await?
            .size;
        HostDescriptor::set_size(&mut self.inner, fd, size).await?;
        self.free(grant, before.saturating_sub(size), 0);
        Ok(())
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
        let made = HostDescriptor::create_directory_at(&mut self.inner, fd, path).await;
        self.entry_made(grant, made)
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
        Err(self.refuse(&fd, &old_path, why, ErrorCode::NotPermitted))
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
        .await;
        let opened = if creates {
            self.entry_made(grant, opened)?
        } else {
            opened?
        };
        if let Err(code) = vet_opened(self.inner.table.get(&opened)?, truncate) {
            self.inner.table.delete(opened)?;
            return Err(match code {
                ErrorCode::Access => self.refused(&fd, &path, UNOPENABLE),
                other => other.into(),
            });
        }
        if truncate && let Some(stat) = &existing {
            self.free(grant, stat.size, 0);
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
        let grant = self.grant(&fd)?;
        HostDescriptor::remove_directory_at(&mut self.inner, fd, path).await?;
        self.free(grant, 0, 1);
        Ok(())
    }

    async fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let (from, to) = (self.grant(&fd)?, self.grant(&new_fd)?);
        if from == to || self.guard.grants[to].quota.is_none() {
            return HostDescriptor::rename_at(&mut self.inner, fd, old_path, new_fd, new_path)
                .await;
        }
        // Moving into another grant's quota: a file is growth there; a
        // directory (whose size is unknown without a walk) is refused.
        let moved = self.peek(&fd, PathFlags::empty(), &old_path).await?;
        let Some(moved) = moved else {
            return Err(ErrorCode::NoEntry.into());
        };
        if moved.type_ == DescriptorType::Directory {
            let why = "a directory cannot be moved into a grant that has a quota";
            return Err(self.refuse(&new_fd, &new_path, why, ErrorCode::Quota));
        }
        self.grow(to, moved.size, 1)?;
        let renamed =
            HostDescriptor::rename_at(&mut self.inner, fd, old_path, new_fd, new_path).await;
        match renamed {
            Ok(()) => self.free(from, moved.size, 1),
            Err(_) => self.free(to, moved.size, 1),
        }
        renamed
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        let grant = self.grant(&fd)?;
        if !stays_inside(&src_path) {
            let why = format!(
                "symlink target `{src_path}` could lead out of the grant (a tool may create only symlinks whose target is a relative path without `..`)"
            );
            return Err(self.refuse(&fd, &dest_path, &why, ErrorCode::NotPermitted));
        }
        self.reserve_entry(grant)?;
        let made = HostDescriptor::symlink_at(&mut self.inner, fd, src_path, dest_path).await;
        self.entry_made(grant, made)
    }

    async fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        let grant = self.grant(&fd)?;
        let existing = self.peek(&fd, PathFlags::empty(), &path).await?;
        HostDescriptor::unlink_file_at(&mut self.inner, fd, path).await?;
        let bytes = existing
            .filter(|stat| stat.type_ == DescriptorType::RegularFile && stat.link_count <= 1)
            .map_or(0, |stat| stat.size);
        self.free(grant, bytes, 1);
        Ok(())
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
