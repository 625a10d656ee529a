//! The audit directory: chained JSON Lines files (`audit-DAY-SEQ.jsonl`),
//! rotated by size and by UTC day, forced to disk by policy, closed by a
//! signed checkpoint on a timer (the latest one also kept in `audit.head`),
//! old files deleted with the deletion recorded in the chain. On open, a
//! torn last line (the process died mid-write) is found, recorded and
//! skipped, and a log cut shorter than its head is refused.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::chain::{self, Chain, Sealed};
use super::error::AuditError;
use super::settings::{AuditSettings, Fsync};
use super::signing::Signer;

/// The file that holds the latest checkpoint line.
pub const HEAD_FILE: &str = "audit.head";

/// How far from its end a file is read to find its last record.
const TAIL_BYTES: u64 = 8 << 20;

/// A chained, rotated, checkpointed audit directory.
pub struct FileLog {
    dir: PathBuf,
    settings: AuditSettings,
    signer: Option<Signer>,
    state: Mutex<State>,
    /// The number of the checkpoint `audit.head` holds; taken while the
    /// head is written.
    head: Mutex<Option<u64>>,
    stopped: AtomicBool,
}

/// A checkpoint line written to its file, not yet forced to disk nor
/// made the head.
struct Checkpoint {
    file: Arc<File>,
    path: PathBuf,
    seq: u64,
    line: String,
}

/// The file being written and where the chain stands.
struct State {
    /// Shared with the flush thread, which forces it to disk outside the lock.
    file: Arc<File>,
    name: String,
    size: u64,
    /// UTC day of the file, `YYYY-MM-DD`.
    day: String,
    chain: Chain,
    unsynced: bool,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    broken: Option<String>,
}

/// One audit file in a directory, by the number of its first record.
#[derive(Debug, Clone)]
pub struct LogFile {
    /// Its path.
    pub path: PathBuf,
    /// Sequence number of its first record.
    pub first_seq: u64,
    /// Its UTC day, `YYYY-MM-DD`.
    pub day: String,
}

/// The audit files of `dir`, oldest first.
pub fn list_files(dir: &Path) -> std::io::Result<Vec<LogFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(file) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_name)
        {
            files.push(LogFile { path, ..file });
        }
    }
    files.sort_by_key(|f| f.first_seq);
    Ok(files)
}

/// The first record number an audit file's name gives.
pub fn first_seq_of(path: &Path) -> Option<u64> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_name)
        .map(|f| f.first_seq)
}

/// `audit-20261201-000000000042.jsonl` as its day and first number.
fn parse_name(name: &str) -> Option<LogFile> {
    let stem = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    let (day, seq) = stem.split_once('-')?;
    if day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(LogFile {
        path: PathBuf::new(),
        first_seq: seq.parse().ok()?,
        day: format!("{}-{}-{}", &day[..4], &day[4..6], &day[6..]),
    })
}

fn file_name(day: &str, first_seq: u64) -> String {
    format!("audit-{}-{first_seq:012}.jsonl", day.replace('-', ""))
}

/// A line of a file that is not a record, skipped on recovery.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    /// Byte offset of the line in its file.
    pub offset: u64,
    /// Its length, without a newline.
    pub bytes: u64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// The end of a file: its last record (number and hash) and what follows
/// it that is not a record.
struct Tail {
    last: Option<(u64, String)>,
    skipped: Vec<Skipped>,
    /// The file does not end in a newline.
    torn: bool,
}

/// Reads the end of `path` back to its last line that is a record.
fn read_tail(path: &Path) -> std::io::Result<Tail> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let start = size.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let torn = bytes.last().is_some_and(|b| *b != b'\n');
    let mut skipped = Vec::new();
    let mut lines: Vec<(usize, &[u8])> = Vec::new();
    let mut from = 0;
    for (at, byte) in bytes.iter().enumerate() {
        if *byte == b'\n' {
            lines.push((from, &bytes[from..at]));
            from = at + 1;
        }
    }
    if from < bytes.len() {
        lines.push((from, &bytes[from..]));
    }
    if start > 0 && !lines.is_empty() {
        // Cut by the read window: not a whole line.
        lines.remove(0);
    }
    for (offset, line) in lines.into_iter().rev() {
        if let Some(seq) = record_seq(line) {
            skipped.reverse();
            return Ok(Tail {
                last: Some((seq, chain::line_hash(line))),
                skipped,
                torn,
            });
        }
        skipped.push(Skipped {
            offset: start + offset as u64,
            bytes: line.len() as u64,
            sha256: chain::line_hash(line),
        });
    }
    skipped.reverse();
    Ok(Tail {
        last: None,
        skipped,
        torn,
    })
}

/// The `seq` of a line that is a chained record.
pub fn record_seq(line: &[u8]) -> Option<u64> {
    let value: Value = serde_json::from_slice(line).ok()?;
    value.get("prev")?.as_str()?;
    value.get("seq")?.as_u64()
}

fn io_error(path: &Path, err: std::io::Error) -> AuditError {
    AuditError::Write {
        file: path.display().to_string(),
        reason: err.to_string(),
    }
}

impl FileLog {
    /// Opens (or creates) the log in `settings.dir`, recovers its tail and
    /// starts the thread that forces records to disk and checkpoints them.
    pub fn open(settings: AuditSettings, signer: Option<Signer>) -> Result<Arc<Self>, AuditError> {
        let dir = settings
            .dir
            .clone()
            .ok_or_else(|| AuditError::Open("no audit.dir".into()))?;
        let open_error = |what: &str, err: std::io::Error| {
            AuditError::Open(format!("{what} {}: {err}", dir.display()))
        };
        private_dir(&dir)?;
        let files = list_files(&dir).map_err(|e| open_error("cannot list", e))?;
        let today = chain::now()[..10].to_owned();
        let (chain, day, name, skipped) = match files.last() {
            None => (
                Chain::genesis(),
                today.clone(),
                file_name(&today, 0),
                Vec::new(),
            ),
            Some(last) => {
                let tail = read_tail(&last.path).map_err(|e| open_error("cannot read", e))?;
                // A newest file with no whole record (the process died just
                // after rotating) continues the chain of the file before it.
                let found = match tail.last.clone() {
                    Some(found) => Some(found),
                    None if last.first_seq == 0 => None,
                    None => {
                        let before = files.iter().rev().nth(1).ok_or_else(|| {
                            AuditError::Open(format!(
                                "{}: no record in it, and no earlier file to continue from",
                                last.path.display()
                            ))
                        })?;
                        let earlier =
                            read_tail(&before.path).map_err(|e| open_error("cannot read", e))?;
                        Some(earlier.last.ok_or_else(|| {
                            AuditError::Open(format!(
                                "{}: no record in its last {TAIL_BYTES} bytes; it is not an audit file Stockade can continue",
                                before.path.display()
                            ))
                        })?)
                    }
                };
                if tail.torn {
                    // The torn bytes become a line of their own, which the
                    // recovery record names.
                    let mut file = OpenOptions::new()
                        .append(true)
                        .open(&last.path)
                        .map_err(|e| open_error("cannot open", e))?;
                    file.write_all(b"\n")
                        .map_err(|e| open_error("cannot repair", e))?;
                }
                let name = last
                    .path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                let chain = match found {
                    Some((seq, hash)) => Chain {
                        next_seq: seq + 1,
                        prev: hash,
                    },
                    None => Chain::genesis(),
                };
                (chain, last.day.clone(), name, tail.skipped)
            }
        };
        check_head(&dir, &chain)?;
        let path = dir.join(&name);
        let file = append_to(&path).map_err(|e| open_error("cannot open", e))?;
        let size = file
            .metadata()
            .map_err(|e| open_error("cannot stat", e))?
            .len();
        let log = Arc::new(Self {
            dir,
            settings,
            signer,
            state: Mutex::new(State {
                file: Arc::new(file),
                name: name.clone(),
                size,
                day,
                chain,
                unsynced: false,
                since_checkpoint: 0,
                last_checkpoint: Instant::now(),
                broken: None,
            }),
            head: Mutex::new(None),
            stopped: AtomicBool::new(false),
        });
        if !skipped.is_empty() {
            let body = json!({
                "event": "recovered",
                "file": name,
                "skipped": skipped,
                "detail": "the file ended in an incomplete record (the process stopped mid-write); those bytes are skipped and the chain continues from the last whole record",
            });
            log.append(&chain::now(), &body.to_string())?;
        }
        let mut state = log.lock();
        log.retire_expired(&mut state)?;
        drop(state);
        let flusher = Arc::clone(&log);
        std::thread::Builder::new()
            .name("stockade-audit".into())
            .spawn(move || flusher.flush_loop())
            .map_err(|e| AuditError::Open(format!("cannot start the audit thread: {e}")))?;
        Ok(log)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done that
        // the next writer cannot see: `broken` says so.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one record (a JSON object, without chain fields) at `ts`;
    /// with `fsync = "every"`, forces it to disk before returning.
    pub fn append(&self, ts: &str, body: &str) -> Result<(), AuditError> {
        let mut state = self.lock();
        self.append_locked(&mut state, ts, body)?;
        if self.settings.fsync == Fsync::Every {
            self.sync_locked(&mut state)?;
        }
        Ok(())
    }

    fn append_locked(&self, state: &mut State, ts: &str, body: &str) -> Result<(), AuditError> {
        if let Some(reason) = &state.broken {
            return Err(AuditError::Broken(reason.clone()));
        }
        if ts.get(..10).is_some_and(|day| day != state.day)
            || state.size >= self.settings.max_file_size
        {
            self.rotate(state, ts)?;
        }
        let sealed = state.chain.seal(ts, body);
        self.write_line(state, &sealed)
    }

    /// Writes a sealed line with one `write`; a failed write is cut back
    /// so the file never holds half a record.
    fn write_line(&self, state: &mut State, sealed: &Sealed) -> Result<(), AuditError> {
        let mut bytes = Vec::with_capacity(sealed.line.len() + 1);
        bytes.extend_from_slice(sealed.line.as_bytes());
        bytes.push(b'\n');
        let path = self.dir.join(&state.name);
        if let Err(err) = (&*state.file).write_all(&bytes) {
            if let Err(cut) = state.file.set_len(state.size) {
                state.broken = Some(format!("{err}; cutting the partial record failed: {cut}"));
            }
            return Err(io_error(&path, err));
        }
        state.size += bytes.len() as u64;
        state.chain.advance(sealed);
        state.unsynced = true;
        state.since_checkpoint += 1;
        Ok(())
    }

    fn sync_locked(&self, state: &mut State) -> Result<(), AuditError> {
        if state.unsynced {
            state
                .file
                .sync_data()
                .map_err(|e| io_error(&self.dir.join(&state.name), e))?;
            state.unsynced = false;
        }
        Ok(())
    }

    /// Closes the current file with a checkpoint and starts the next one.
    fn rotate(&self, state: &mut State, ts: &str) -> Result<(), AuditError> {
        let checkpoint = self.checkpoint_locked(state, ts)?;
        self.publish(checkpoint)?;
        let day = ts.get(..10).unwrap_or(&state.day).to_owned();
        let name = file_name(&day, state.chain.next_seq);
        let path = self.dir.join(&name);
        let file = append_to(&path).map_err(|e| io_error(&path, e))?;
        state.file = Arc::new(file);
        state.name = name;
        state.size = 0;
        state.day = day;
        self.retire_expired(state)
    }

    /// Writes a checkpoint (signed when there is a key); [`FileLog::publish`]
    /// then forces it to disk and makes it the head.
    fn checkpoint_locked(&self, state: &mut State, ts: &str) -> Result<Checkpoint, AuditError> {
        let mut body = json!({"event": "checkpoint", "records": state.since_checkpoint});
        if let Some(signer) = &self.signer {
            let message = chain::checkpoint_message(state.chain.next_seq, &state.chain.prev);
            body["key"] = Value::String(signer.key_id.clone());
            body["sig"] = Value::String(signer.sign(&message));
        }
        let seq = state.chain.next_seq;
        let sealed = state.chain.seal(ts, &body.to_string());
        self.write_line(state, &sealed)?;
        state.since_checkpoint = 0;
        state.last_checkpoint = Instant::now();
        Ok(Checkpoint {
            file: Arc::clone(&state.file),
            path: self.dir.join(&state.name),
            seq,
            line: sealed.line,
        })
    }

    /// Forces a checkpoint's file to disk, then makes it the head (never
    /// replacing a later one). Needs no state lock.
    fn publish(&self, checkpoint: Checkpoint) -> Result<(), AuditError> {
        let mut published = self.head.lock().unwrap_or_else(|p| p.into_inner());
        checkpoint
            .file
            .sync_data()
            .map_err(|e| io_error(&checkpoint.path, e))?;
        if published.is_some_and(|seq| seq >= checkpoint.seq) {
            return Ok(());
        }
        let head = self.dir.join(HEAD_FILE);
        let staged = self.dir.join(format!("{HEAD_FILE}.new"));
        let write_head = || -> std::io::Result<()> {
            let mut file = File::create(&staged)?;
            file.write_all(checkpoint.line.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&staged, &head)
        };
        write_head().map_err(|e| io_error(&head, e))?;
        *published = Some(checkpoint.seq);
        Ok(())
    }

    /// Deletes files older than `retention`, after recording which.
    fn retire_expired(&self, state: &mut State) -> Result<(), AuditError> {
        let Ok(files) = list_files(&self.dir) else {
            return Ok(());
        };
        let Ok(today) = parse_day(&state.day) else {
            return Ok(());
        };
        let days = (self.settings.retention.as_secs() / 86_400) as i64;
        let expired: Vec<&LogFile> = files
            .iter()
            .filter(|f| f.first_seq < state.chain.next_seq && !f.path.ends_with(&state.name))
            .filter(|f| parse_day(&f.day).is_ok_and(|d| (today - d).whole_days() > days))
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        // A file a shipper has not delivered yet stays, however old.
        let unshipped = self.unshipped_from();
        let mut deleted = Vec::new();
        let mut retired = Vec::new();
        for file in expired {
            let tail = read_tail(&file.path).map_err(|e| io_error(&file.path, e))?;
            let (last_seq, last_hash) = tail.last.unwrap_or((file.first_seq, String::new()));
            if last_seq >= unshipped {
                tracing::warn!(target: "stockade::auditing", "{} is past audit.retention but not yet shipped; kept", file.path.display());
                continue;
            }
            retired.push(file);
            deleted.push(json!({
                "file": file.path.file_name().and_then(|n| n.to_str()),
                "first_seq": file.first_seq,
                "last_seq": last_seq,
                "last_hash": last_hash,
            }));
        }
        if retired.is_empty() {
            return Ok(());
        }
        let body = json!({
            "event": "retention",
            "deleted": deleted,
            "detail": format!("files older than audit.retention ({days} days) deleted"),
        });
        let sealed = state.chain.seal(&chain::now(), &body.to_string());
        self.write_line(state, &sealed)?;
        self.sync_locked(state)?;
        for file in retired {
            if let Err(err) = std::fs::remove_file(&file.path) {
                tracing::warn!(target: "stockade::auditing", "cannot delete expired audit file {}: {err}", file.path.display());
            }
        }
        Ok(())
    }

    /// The first record some configured shipper has not delivered
    /// (`u64::MAX` when nothing ships).
    fn unshipped_from(&self) -> u64 {
        let names = [
            self.settings.syslog.as_ref().map(|_| "syslog"),
            self.settings.otlp.as_ref().map(|_| "otlp"),
        ];
        names
            .into_iter()
            .flatten()
            .map(|name| super::cursor::read(&self.dir, name))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Forces records to disk within the fsync window and checkpoints on
    /// the interval, until [`FileLog::close`].
    fn flush_loop(&self) {
        let tick = match self.settings.fsync {
            Fsync::Batch(window) => window,
            Fsync::Every => Duration::from_millis(100),
        }
        .min(self.settings.checkpoint_interval);
        while !self.stopped.load(Ordering::Acquire) {
            std::thread::sleep(tick);
            let mut state = self.lock();
            if state.broken.is_some() {
                continue;
            }
            if state.since_checkpoint > 0
                && state.last_checkpoint.elapsed() >= self.settings.checkpoint_interval
            {
                // Written under the lock; forced to disk and published
                // outside it, so writers do not wait for the disk.
                let published =
                    self.checkpoint_locked(&mut state, &chain::now())
                        .and_then(|checkpoint| {
                            drop(state);
                            self.publish(checkpoint)
                        });
                if let Err(err) = published {
                    tracing::error!(target: "stockade::auditing", "{err}");
                }
                continue;
            }
            if !state.unsynced {
                continue;
            }
            // Forced to disk outside the lock, so writers do not wait for it.
            state.unsynced = false;
            let (file, name) = (Arc::clone(&state.file), state.name.clone());
            drop(state);
            if let Err(err) = file.sync_data() {
                tracing::error!(target: "stockade::auditing", "{}", io_error(&self.dir.join(name), err));
                self.lock().unsynced = true;
            }
        }
    }

    /// Writes a last checkpoint and stops the background thread.
    pub fn close(&self) -> Result<(), AuditError> {
        self.stopped.store(true, Ordering::Release);
        let mut state = self.lock();
        if state.broken.is_some() {
            return Ok(());
        }
        let checkpoint = self.checkpoint_locked(&mut state, &chain::now())?;
        self.publish(checkpoint)
    }

    /// The next record number to be written.
    pub fn next_seq(&self) -> u64 {
        self.lock().chain.next_seq
    }

    /// The directory and whether writing has stopped, for readiness.
    pub fn state(&self) -> (PathBuf, Option<String>) {
        (self.dir.clone(), self.lock().broken.clone())
    }
}

/// Creates `dir` readable by its owner only (0700), or checks that an
/// existing one is writable by no one else: another local user must not
/// be able to read the records or replace the files.
fn private_dir(dir: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AuditError::Open(format!("cannot create {}: {e}", dir.display())))?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| AuditError::Open(format!("cannot read {}: {e}", dir.display())))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(AuditError::Open(format!(
            "{} is writable by group or others; make it private (chmod 700)",
            dir.display()
        )));
    }
    Ok(())
}

/// Opens an audit file for appending, created readable by its owner only.
fn append_to(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn parse_day(day: &str) -> Result<time::Date, time::error::Parse> {
    time::Date::parse(
        day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
}

/// Refuses a log that ends before the checkpoint its head names: records
/// were cut from its end.
fn check_head(dir: &Path, chain: &Chain) -> Result<(), AuditError> {
    let Ok(text) = std::fs::read_to_string(dir.join(HEAD_FILE)) else {
        return Ok(());
    };
    let Some(seq) = record_seq(text.trim_end().as_bytes()) else {
        return Err(AuditError::Open(format!(
            "{}: not a checkpoint record; run `stockade audit verify {}`",
            dir.join(HEAD_FILE).display(),
            dir.display()
        )));
    };
    if seq >= chain.next_seq {
        return Err(AuditError::Open(format!(
            "the log in {} ends at record {} but {HEAD_FILE} names checkpoint record {seq}: records were cut from its end; run `stockade audit verify {}` and keep the directory as evidence",
            dir.display(),
            chain.next_seq as i64 - 1,
            dir.display()
        )));
    }
    Ok(())
}
