//! The on-disk cache of compiled components, keyed by the component's
//! digest and the engine's compatibility hash.
//!
//! Loading an artefact maps native code into the process, so the cache
//! directory must be writable only by the account Stockade runs as; it is
//! created with mode 0700. A stale or foreign artefact is refused by
//! wasmtime's own compatibility check and recompiled.

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
        if path.exists() && self.is_private(&path) {
            // SAFETY: the artefact was written by `store` below for this
            // digest and engine; wasmtime checks the engine compatibility
            // before using it, and the directory is private to this account.
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
        let (tmp_path, mut file) = tempfile_in(&self.dir).map_err(|e| e.to_string())?;
        let written = file
            .write_all(&bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp_path, path));
        if let Err(err) = written {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(err.to_string());
        }
        Ok(())
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
