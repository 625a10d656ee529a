//! Configuration versions: every configuration a server accepts (at start
//! or on reload) is kept, numbered, in `versions/` under the control
//! directory: the bytes of the config, of every manifest and of the lock
//! and its signature, and every component, each stored once by its
//! SHA-256 in `versions/blobs/`. `N.json` names the files by their paths.
//! A configuration identical to a kept version is that version again (so
//! a rollback to version 1 serves version 1); `served.json` lists the
//! versions in the order they were served.
//!
//! Rolling back to version N writes those files back where they were (the
//! config, manifests, lock and components return to what N had), after
//! which the servers reload.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::StockadeConfig;
use crate::registry::Registry;

/// Why a version could not be kept or restored.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct VersionError {
    /// The file or directory.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

fn failed(path: &Path) -> impl Fn(std::io::Error) -> VersionError + '_ {
    move |err| VersionError {
        path: path.display().to_string(),
        reason: err.to_string(),
    }
}

/// One file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Where it lives (absolute).
    pub path: PathBuf,
    /// SHA-256 of its bytes (its name in `blobs/`).
    pub sha256: String,
}

/// One accepted configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    /// Its number, from 1.
    pub number: u32,
    /// When it was first accepted (UTC).
    pub accepted: String,
    /// SHA-256 over all its files' digests: equal configurations, equal
    /// digests.
    pub digest: String,
    /// The config file.
    pub config: PathBuf,
    /// Config, manifests, lock and signature, components.
    pub files: Vec<StoredFile>,
    /// Every served tool and its component's digest.
    pub tools: BTreeMap<String, String>,
}

/// The versions kept in one control directory.
pub struct VersionStore {
    dir: PathBuf,
}

impl VersionStore {
    /// The store under `control_dir` (created owner-only if missing).
    pub fn open(control_dir: &Path) -> Result<Self, VersionError> {
        let dir = control_dir.join("versions");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("blobs"))
            .map_err(failed(&dir))?;
        Ok(Self { dir })
    }

    /// Keeps the configuration `config` (read from `config_path`) as
    /// served by `registry`; returns its version number (the latest one's,
    /// when nothing changed).
    pub fn record(
        &self,
        config_path: &Path,
        config: &StockadeConfig,
        registry: &Registry,
    ) -> Result<u32, VersionError> {
        let _held = self.lock()?;
        let mut paths = vec![config_path.to_owned()];
        for manifest in &config.tools {
            paths.push(manifest.path.clone());
            paths.push(manifest.component.clone());
        }
        if let Some(lock) = &config.lock.file {
            paths.push(lock.clone());
            paths.push(crate::lock::signature_path(lock));
        }
        let mut absolute: Vec<PathBuf> = Vec::with_capacity(paths.len());
        let mut seen = std::collections::HashSet::new();
        for path in paths {
            let path = std::path::absolute(&path).map_err(failed(&path))?;
            // Many manifests may name one component: each file once.
            if seen.insert(path.clone()) {
                absolute.push(path);
            }
        }
        // The served components were read and checked against their
        // pinned digests when they were loaded: one already kept is not
        // read again.
        let served: HashMap<PathBuf, &str> = registry
            .iter()
            .filter_map(|t| {
                let manifest = &t.component.manifest;
                let path = std::path::absolute(&manifest.component).ok()?;
                Some((path, manifest.sha256.as_str()))
            })
            .collect();
        let mut files = Vec::with_capacity(absolute.len());
        for path in absolute {
            if let Some(sha256) = served.get(&path)
                && self.dir.join("blobs").join(sha256).exists()
            {
                files.push(StoredFile {
                    sha256: (*sha256).to_owned(),
                    path,
                });
                continue;
            }
            let bytes = std::fs::read(&path).map_err(failed(&path))?;
            let sha256 = hex::encode(Sha256::digest(&bytes));
            self.keep_blob(&sha256, &bytes)?;
            files.push(StoredFile { path, sha256 });
        }
        let mut digest = Sha256::new();
        for file in &files {
            digest.update(file.path.as_os_str().as_encoded_bytes());
            digest.update(b"\0");
            digest.update(file.sha256.as_bytes());
            digest.update(b"\n");
        }
        let digest = hex::encode(digest.finalize());
        let versions = self.list()?;
        if let Some(same) = versions.iter().find(|v| v.digest == digest) {
            self.served(same.number)?;
            return Ok(same.number);
        }
        let version = Version {
            number: versions.last().map_or(1, |v| v.number + 1),
            accepted: crate::audit::chain::now(),
            digest,
            config: std::path::absolute(config_path).map_err(failed(config_path))?,
            files,
            tools: registry
                .iter()
                .map(|t| {
                    (
                        t.descriptor.name.clone(),
                        t.component.manifest.sha256.clone(),
                    )
                })
                .collect(),
        };
        let path = self.dir.join(format!("{}.json", version.number));
        let text = serde_json::to_vec_pretty(&version).map_err(|e| VersionError {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        write_private(&path, &text)?;
        self.served(version.number)?;
        Ok(version.number)
    }

    /// The versions in the order they were served (`served.json`).
    fn history(&self) -> Result<Vec<u32>, VersionError> {
        let path = self.dir.join("served.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| VersionError {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(err) => Err(failed(&path)(err)),
        }
    }

    /// Notes that version `number` is now served.
    fn served(&self, number: u32) -> Result<(), VersionError> {
        let mut history = self.history()?;
        if history.last() == Some(&number) {
            return Ok(());
        }
        history.push(number);
        let path = self.dir.join("served.json");
        let text = serde_json::to_vec(&history).unwrap_or_default();
        write_private(&path, &text)
    }

    /// Every version, oldest first.
    pub fn list(&self) -> Result<Vec<Version>, VersionError> {
        let mut versions = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(failed(&self.dir))? {
            let path = entry.map_err(failed(&self.dir))?.path();
            let numbered = path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| s.parse::<u32>().is_ok());
            if numbered && path.extension().is_some_and(|e| e == "json") {
                let bytes = std::fs::read(&path).map_err(failed(&path))?;
                let version: Version =
                    serde_json::from_slice(&bytes).map_err(|e| VersionError {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                versions.push(version);
            }
        }
        versions.sort_by_key(|v| v.number);
        Ok(versions)
    }

    /// Writes the files of version `number` back where they were (with
    /// `None`, the version served before the current one); returns that
    /// version.
    pub fn restore(&self, number: Option<u32>) -> Result<Version, VersionError> {
        let _held = self.lock()?;
        let versions = self.list()?;
        let previous = self.history()?.iter().rev().nth(1).copied();
        let wanted = match number.or(previous) {
            Some(n) => versions.iter().find(|v| v.number == n),
            None => None,
        };
        let Some(version) = wanted.cloned() else {
            let known: Vec<String> = versions.iter().map(|v| v.number.to_string()).collect();
            return Err(VersionError {
                path: self.dir.display().to_string(),
                reason: match number {
                    Some(n) => format!(
                        "no version {n} (kept: {})",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                    None => "no configuration was served before the current one".into(),
                },
            });
        };
        // Every blob is checked before any file is touched.
        let mut contents = Vec::new();
        for file in &version.files {
            let blob = self.dir.join("blobs").join(&file.sha256);
            let bytes = std::fs::read(&blob).map_err(failed(&blob))?;
            if hex::encode(Sha256::digest(&bytes)) != file.sha256 {
                return Err(VersionError {
                    path: blob.display().to_string(),
                    reason: "the stored copy does not match its digest".into(),
                });
            }
            contents.push((file, bytes));
        }
        for (file, bytes) in contents {
            let current = std::fs::read(&file.path).ok();
            if current.is_some_and(|c| hex::encode(Sha256::digest(&c)) == file.sha256) {
                continue;
            }
            replace(&file.path, &bytes)?;
        }
        Ok(version)
    }

    fn keep_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), VersionError> {
        let path = self.dir.join("blobs").join(sha256);
        if path.exists() {
            return Ok(());
        }
        write_private(&path, bytes)
    }

    /// Holds the store's lock until dropped.
    fn lock(&self) -> Result<std::fs::File, VersionError> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(failed(&path))?;
        file.lock().map_err(failed(&path))?;
        Ok(file)
    }
}

/// Writes `bytes` to a new owner-only file at `path`, replacing it whole.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), VersionError> {
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(failed(path))
}

/// Puts `bytes` at `path` in one step (a temporary file beside it renamed
/// over it), keeping the file's permissions.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), VersionError> {
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let temporary = path.with_extension(format!("rollback{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&temporary, bytes)?;
        if let Some(permissions) = permissions.clone() {
            std::fs::set_permissions(&temporary, permissions)?;
        }
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(failed(path))
}
