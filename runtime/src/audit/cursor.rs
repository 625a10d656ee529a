//! A shipper's cursor: the next record number it has to deliver, kept in
//! `ship-NAME.cursor` in the audit directory so a restart resumes there
//! (and retention keeps what is not yet delivered).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The cursor file of shipper `name`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("ship-{name}.cursor"))
}

/// The next record shipper `name` has to deliver (0 when it has none yet).
pub fn read(dir: &Path, name: &str) -> u64 {
    std::fs::read_to_string(path(dir, name))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Saves `next_seq` for shipper `name`, atomically and durably.
pub fn write(dir: &Path, name: &str, next_seq: u64) -> std::io::Result<()> {
    let target = path(dir, name);
    let staged = target.with_extension("cursor.new");
    let mut handle = std::fs::File::create(&staged)?;
    writeln!(handle, "{next_seq}")?;
    handle.sync_all()?;
    std::fs::rename(&staged, &target)
}
