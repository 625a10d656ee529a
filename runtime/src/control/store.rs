//! The switches' state file, `control.json` in the control directory: the
//! one place every server process and the `stockade admin` command agree
//! on. Writers hold an exclusive lock on `control.lock` while they read,
//! change and replace it (write to a temporary file, fsync, rename), so
//! concurrent changes never lose one another and a reader never sees half
//! a file. The directory is the owner's alone (0700, files 0600).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{ControlError, Switches};

/// Where the switches live.
#[derive(Debug, Clone)]
pub struct SwitchStore {
    dir: PathBuf,
}

impl SwitchStore {
    /// The store in `dir`, created owner-only if missing; a directory that
    /// others may write to is refused.
    pub fn open(dir: &Path) -> Result<Self, ControlError> {
        let fail = |reason: String| ControlError::Store {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(e.to_string()))?;
        let mode = std::fs::metadata(dir)
            .map_err(|e| fail(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(fail(format!(
                "group- or other-writable (mode {:o}): anyone who can write here can switch tools on",
                mode & 0o777
            )));
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The control directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("control.json")
    }

    /// The current switches (none set when the file does not exist yet).
    pub fn load(&self) -> Result<Switches, ControlError> {
        let path = self.state_path();
        let fail = |reason: String| ControlError::Store {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Switches::default()),
            Err(err) => Err(fail(err.to_string())),
        }
    }

    /// Applies `change` to the switches under the store's lock and writes
    /// the result; returns it.
    pub fn update(&self, change: impl FnOnce(&mut Switches)) -> Result<Switches, ControlError> {
        let lock_path = self.dir.join("control.lock");
        let fail = |path: &Path, err: std::io::Error| ControlError::Store {
            path: path.display().to_string(),
            reason: err.to_string(),
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| fail(&lock_path, e))?;
        lock.lock().map_err(|e| fail(&lock_path, e))?;
        let mut switches = self.load()?;
        change(&mut switches);
        let path = self.state_path();
        let temporary = self
            .dir
            .join(format!(".control.json.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file: File = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(&serde_json::to_vec_pretty(&switches)?)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| fail(&path, e))?;
        // Dropping the file releases the lock.
        drop(lock);
        Ok(switches)
    }
}
