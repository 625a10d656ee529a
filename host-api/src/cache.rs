//! The on-disk cache of compiled components, keyed by the component's
//! digest and the engine's compatibility hash.
//!
//! Loading an artefact maps native code into the process, so the cache
//! directory must be writable only by the account Stockade runs as; it is
//! created with mode 0700. A stale or foreign artefact is refused by
//! wasmtime's own compatibility check and recompiled.
//!
//! Crash safety: an artefact is written to a temporary file, synced and
//! renamed into place, then its length and CRC-32 are written beside it the
//! same way. It is loaded only when it matches them; a missing or different
//! check (a crash between the two renames, a damaged disk) means a
//! recompile. The check guards against accidents, not attackers: whoever
//! can write the (private) directory can rewrite both files, so a
//! cryptographic digest would add start-up time (about 2 ms per MiB-sized
//! artefact) and no protection.

use std::hash::{BuildHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::SandboxError;

/// Where compiled artefacts live.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache in `dir` for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, SandboxError> {
        create_private_dir(dir).map_err(|err| SandboxError::Cache {
            path: dir.to_owned(),
            reason: err.to_string(),
        })?;
        sweep_temporaries(dir);
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path_for(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// Whether the artefact at `path` matches the check written beside it.
    fn verified(&self, path: &Path) -> bool {
        let sidecar = check_path(path);
        // `is_private` is false, quietly, for a file that is not there.
        if !self.is_private(path) || !self.is_private(&sidecar) {
            return false;
        }
        let (Ok(actual), Ok(expected)) = (file_check(path), std::fs::read_to_string(&sidecar))
        else {
            return false;
        };
        let matches = actual == expected.trim();
        if !matches {
            tracing::warn!(
                "recompiling: cached artefact {} does not match its check (length and CRC-32)",
                path.display()
            );
        }
        matches
    }

    /// Loads the compiled form of the component with `digest`, compiling
    /// `bytes` and storing the result when there is no usable artefact.
    /// Returns the component and whether it came from the cache.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(Component, bool), SandboxError> {
        let path = self.path_for(digest);
        if self.verified(&path) {
            // SAFETY: the file is the one `store` below wrote for this
            // digest and engine (it matches the check written after it,
            // and files here are only ever replaced whole, by rename);
            // wasmtime checks the engine compatibility before using it,
            // and the directory is private to this account.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, true)),
                Err(err) => tracing::warn!("recompiling: cached artefact unusable: {err}"),
            }
        }
        let component = Component::new(engine, bytes)
            .map_err(|err| SandboxError::Compile(format!("{err:#}")))?;
        if let Err(err) = self.store(&path, &component) {
            tracing::warn!("cannot write compiled artefact to the cache: {err}");
        }
        Ok((component, false))
    }

    /// Whether an artefact may be loaded: owned by the cache directory's
    /// owner and writable by no one else. Anything else is recompiled (and
    /// replaced by a private file).
    fn is_private(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let (Ok(file), Ok(dir)) = (
            std::fs::symlink_metadata(path),
            std::fs::metadata(&self.dir),
        ) else {
            return false;
        };
        let private = file.is_file() && file.uid() == dir.uid() && file.mode() & 0o022 == 0;
        if !private {
            tracing::warn!(
                "recompiling: cached artefact {} is not private (a symlink, another owner, or writable by group or others)",
                path.display()
            );
        }
        private
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), String> {
        let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
        self.replace(path, &bytes)?;
        self.replace(&check_path(path), check_of(&bytes).as_bytes())?;
        std::fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| e.to_string())
    }

    /// Writes `bytes` to `path` whole or not at all: a synced temporary
    /// file renamed over it.
    fn replace(&self, path: &Path, bytes: &[u8]) -> Result<(), String> {
        let (tmp_path, mut file) = tempfile_in(&self.dir).map_err(|e| e.to_string())?;
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp_path, path));
        if let Err(err) = written {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(err.to_string());
        }
        Ok(())
    }
}

/// The check written for `bytes`: their length and CRC-32.
fn check_of(bytes: &[u8]) -> String {
    format!("{} {:08x}", bytes.len(), crc32fast::hash(bytes))
}

/// The check of the file at `path`, read in pieces.
fn file_check(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut length = 0usize;
    let mut buffer = vec![0; 256 << 10];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(format!("{length} {:08x}", hasher.finalize())),
            read => {
                hasher.update(&buffer[..read]);
                length += read;
            }
        }
    }
}

/// Where the check of the artefact at `path` is kept.
fn check_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".check");
    PathBuf::from(name)
}

/// Temporary files older than this were left by a process that died while
/// writing (a compile takes seconds); younger ones may be another
/// process's, still being written.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes temporary files a crashed process left in `dir`.
fn sweep_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(".tmp-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > STALE_AFTER));
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = format!(".tmp-{}-{:x}", std::process::id(), rand_suffix());
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    Ok((path, file))
}

fn rand_suffix() -> u64 {
    std::hash::RandomState::new().hash_one(std::time::SystemTime::now())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(std::io::Error::other(
            "the cache directory is writable by group or others; make it private (chmod 700)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: a header and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn cache() -> (PathBuf, Engine, ArtifactCache) {
        let dir = std::env::temp_dir().join(format!(
            "stockade-cache-test-{}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        let engine = Engine::default();
        let cache = ArtifactCache::open(&dir, &engine).unwrap();
        (dir, engine, cache)
    }

    fn from_cache(engine: &Engine, cache: &ArtifactCache) -> bool {
        cache
            .load_or_compile(engine, "d", EMPTY_COMPONENT)
            .unwrap()
            .1
    }

    #[test]
    fn an_artefact_is_loaded_only_while_it_matches_its_check() {
        let (dir, engine, cache) = cache();
        let path = cache.path_for("d");
        assert!(!from_cache(&engine, &cache), "nothing cached yet");
        assert!(from_cache(&engine, &cache), "written whole, with its check");

        // One byte changed: recompiled, and the good artefact written back.
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(!from_cache(&engine, &cache));
        assert!(from_cache(&engine, &cache));

        // Cut short (a crash with no atomic rename would leave this).
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
        assert!(!from_cache(&engine, &cache));

        // The check missing (a crash between the two renames).
        std::fs::remove_file(check_path(&path)).unwrap();
        assert!(!from_cache(&engine, &cache));
        assert!(from_cache(&engine, &cache));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stale_temporaries_are_swept_and_fresh_ones_kept() {
        let (dir, engine, _) = cache();
        let stale = dir.join(".tmp-1-dead");
        let fresh = dir.join(".tmp-2-busy");
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&fresh, b"half").unwrap();
        let old = std::time::SystemTime::now() - 2 * STALE_AFTER;
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        ArtifactCache::open(&dir, &engine).unwrap();
        assert!(!stale.exists() && fresh.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
