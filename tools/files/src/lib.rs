//! Files under the directories the manifest grants: list, read, search,
//! and write where the grant is read-write. The host decides what exists:
//! paths outside the grants simply are not there.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stockade_sdk::{Output, Tool, ToolError, Toolbox};

/// Arguments of `list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    /// Directory to list, e.g. `/data`.
    path: String,
}

/// One directory entry.
#[derive(Serialize, JsonSchema)]
struct Entry {
    name: String,
    kind: String,
    size: u64,
}

/// Result of `list`.
#[derive(Serialize, JsonSchema)]
struct Listing {
    entries: Vec<Entry>,
}

/// Arguments of `read`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    /// File to read.
    path: String,
    /// Read at most this many bytes (default 65536).
    #[serde(default)]
    max_bytes: Option<u32>,
}

/// Arguments of `search`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// Directory to search recursively.
    path: String,
    /// Text to look for (case-sensitive substring).
    #[schemars(length(min = 1))]
    pattern: String,
    /// Stop after this many matches (default 100).
    #[serde(default)]
    max_results: Option<u32>,
}

/// Arguments of `write`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    /// File to write (created if missing).
    path: String,
    /// Text to write.
    content: String,
    /// Append instead of replacing.
    #[serde(default)]
    append: bool,
    /// Replace the file whole or not at all: write a temporary file beside
    /// it, then rename it over the file (not with `append`).
    #[serde(default)]
    atomic: bool,
}

fn io_error(path: &str, err: std::io::Error) -> ToolError {
    match err.kind() {
        std::io::ErrorKind::NotFound => ToolError::Failed(format!("{path}: not found")),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            ToolError::Denied(format!("{path}: permission denied"))
        }
        _ => ToolError::Failed(format!("{path}: {err}")),
    }
}

fn list(args: ListArgs) -> Result<Output, ToolError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(&args.path).map_err(|e| io_error(&args.path, e))? {
        let entry = entry.map_err(|e| io_error(&args.path, e))?;
        let meta = entry.metadata().map_err(|e| io_error(&args.path, e))?;
        let kind = if meta.is_dir() {
            "dir"
        } else if meta.is_symlink() {
            "symlink"
        } else {
            "file"
        };
        entries.push(Entry {
            name: entry.file_name().to_string_lossy().into_owned(),
            kind: kind.into(),
            size: meta.len(),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Output::json(&Listing { entries })
}

fn read(args: ReadArgs) -> Result<Output, ToolError> {
    let max = args.max_bytes.unwrap_or(65536) as usize;
    let bytes = fs::read(&args.path).map_err(|e| io_error(&args.path, e))?;
    let shown = &bytes[..bytes.len().min(max)];
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if bytes.len() > max {
        text.push_str(&format!("\n[... {} more bytes]", bytes.len() - max));
    }
    Ok(Output::text(text))
}

fn search(args: SearchArgs) -> Result<Output, ToolError> {
    let limit = args.max_results.unwrap_or(100) as usize;
    let mut matches = Vec::new();
    let mut pending = vec![PathBuf::from(&args.path)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(path),
                Ok(t) if t.is_file() => search_file(&path, &args.pattern, limit, &mut matches),
                _ => {}
            }
            if matches.len() >= limit {
                return Ok(Output::text(matches.join("\n")));
            }
        }
    }
    if matches.is_empty() {
        return Ok(Output::text(format!("no match for `{}`", args.pattern)));
    }
    Ok(Output::text(matches.join("\n")))
}

fn search_file(path: &Path, pattern: &str, limit: usize, matches: &mut Vec<String>) {
    let Ok(file) = fs::File::open(path) else {
        return;
    };
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let Ok(line) = line else { return };
        if line.contains(pattern) {
            matches.push(format!(
                "{}:{}: {}",
                path.display(),
                number + 1,
                line.trim()
            ));
            if matches.len() >= limit {
                return;
            }
        }
    }
}

fn write(args: WriteArgs) -> Result<Output, ToolError> {
    if args.atomic {
        return write_atomically(args);
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(args.append)
        .truncate(!args.append)
        .open(&args.path)
        .map_err(|e| io_error(&args.path, e))?;
    file.write_all(args.content.as_bytes())
        .map_err(|e| io_error(&args.path, e))?;
    Ok(Output::text(format!(
        "wrote {} bytes to {}",
        args.content.len(),
        args.path
    )))
}

/// Writes `.NAME.partial` beside the file, syncs it, and renames it over
/// the file: a reader (or a restart after a crash) sees the old file or the
/// new one, never part of it.
fn write_atomically(args: WriteArgs) -> Result<Output, ToolError> {
    if args.append {
        return Err(ToolError::InvalidInput(
            "`atomic` replaces the file whole; it cannot `append`".into(),
        ));
    }
    let target = Path::new(&args.path);
    let name = target
        .file_name()
        .ok_or_else(|| ToolError::InvalidInput(format!("{}: not a file name", args.path)))?;
    let partial = target.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let shown = partial.display().to_string();
    let mut file = fs::File::create(&partial).map_err(|e| io_error(&shown, e))?;
    file.write_all(args.content.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&shown, e))?;
    fs::rename(&partial, target).map_err(|e| io_error(&args.path, e))?;
    Ok(Output::text(format!(
        "wrote {} bytes to {} (atomically)",
        args.content.len(),
        args.path
    )))
}

/// The files tools.
pub struct Files;

impl Toolbox for Files {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new("list_dir", "List a granted directory.", list)
                .title("List directory")
                .output::<Listing>()
                .read_only()
                .idempotent(),
            Tool::new(
                "read_file",
                "Read a text file from a granted directory.",
                read,
            )
            .title("Read file")
            .read_only()
            .idempotent(),
            Tool::new(
                "search_files",
                "Find lines containing a text in the files under a granted directory.",
                search,
            )
            .title("Search files")
            .read_only()
            .idempotent(),
            Tool::new(
                "write_file",
                "Write a text file in a read-write granted directory.",
                write,
            )
            .title("Write file")
            .destructive(),
        ]
    }
}

stockade_sdk::export_toolbox!(Files);
