//! `stockade audit verify`: walks the chain across rotated files, checks
//! every checkpoint's signature and the head, and names the first break.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chain::{self, GENESIS};
use super::file::{self, HEAD_FILE};
use super::signing::Checker;

/// What to verify.
pub struct VerifyRequest {
    /// Audit files, or directories holding them (and their `audit.head`).
    pub paths: Vec<PathBuf>,
    /// The public key checkpoints must be signed with.
    pub checker: Option<Checker>,
    /// Accept a chain that starts after its first record (a subset of
    /// files); otherwise missing early records must be explained by a
    /// retention record.
    pub partial: bool,
}

/// The outcome: the first break, if any, and what else is worth saying.
pub struct Verdict {
    /// The first break, naming its file and line.
    pub broken: Option<String>,
    /// The summary and notes.
    pub notes: Vec<String>,
}

/// One line of one file.
struct Line {
    /// `file:line`.
    place: String,
    file: String,
    offset: u64,
    hash: String,
    record: Option<Value>,
}

impl Line {
    fn seq(&self) -> Option<u64> {
        self.record.as_ref()?.get("seq")?.as_u64()
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.record.as_ref()?.get(name)?.as_str()
    }
}

/// Reads every file `request` names, oldest first, and the head.
fn gather(request: &VerifyRequest) -> Result<(Vec<PathBuf>, Option<PathBuf>), String> {
    let mut files = Vec::new();
    let mut head = None;
    for path in &request.paths {
        if path.is_dir() {
            let listed = file::list_files(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if listed.is_empty() {
                return Err(format!(
                    "{}: no audit files (audit-*.jsonl)",
                    path.display()
                ));
            }
            files.extend(listed.into_iter().map(|f| f.path));
            let candidate = path.join(HEAD_FILE);
            if candidate.exists() {
                head = Some(candidate);
            }
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    // Rotated files in chain order: by the first number in their name
    // (a file renamed otherwise, by its first record).
    files.sort_by_key(|path| {
        file::first_seq_of(path)
            .or_else(|| {
                std::fs::read(path)
                    .ok()?
                    .split(|b| *b == b'\n')
                    .find_map(file::record_seq)
            })
            .unwrap_or(u64::MAX)
    });
    files.dedup();
    Ok((files, head))
}

fn read_lines(path: &Path) -> Result<(Vec<Line>, bool), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.display().to_string();
    let torn = bytes.last().is_some_and(|b| *b != b'\n');
    let mut lines = Vec::new();
    let mut offset = 0u64;
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let at_end = offset as usize + raw.len() == bytes.len();
        if raw.is_empty() && at_end {
            break;
        }
        let record = serde_json::from_slice::<Value>(raw)
            .ok()
            .filter(|v| v.get("seq").and_then(Value::as_u64).is_some() && v.get("prev").is_some());
        lines.push(Line {
            place: format!("{name}:{}", index + 1),
            file: name.clone(),
            offset,
            hash: chain::line_hash(raw),
            record,
        });
        offset += raw.len() as u64 + 1;
    }
    Ok((lines, torn))
}

/// Verifies the chain; `Err` is a usage or read error, not a break.
pub fn verify(request: &VerifyRequest) -> Result<Verdict, String> {
    let (files, head) = gather(request)?;
    let mut lines = Vec::new();
    let mut torn_tail = false;
    for (index, path) in files.iter().enumerate() {
        let (mut read, torn) = read_lines(path)?;
        torn_tail = torn && index + 1 == files.len();
        lines.append(&mut read);
    }
    let broken = |message: String| {
        Ok(Verdict {
            broken: Some(message),
            notes: Vec::new(),
        })
    };
    let head_line = match &head {
        None => None,
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let line = text.strip_suffix(b"\n").unwrap_or(&text);
            let Some(seq) = file::record_seq(line) else {
                return broken(format!("{}: not a checkpoint record", path.display()));
            };
            Some((seq, chain::line_hash(line), path.clone()))
        }
    };

    let mut notes = Vec::new();
    let mut expected: Option<u64> = None;
    let mut prev: Option<(String, String)> = None; // (hash, place)
    let mut first: Option<(u64, String)> = None;
    let mut pending: Vec<usize> = Vec::new();
    let mut retired: Vec<(u64, u64, String)> = Vec::new();
    let mut checkpoints = 0u64;
    let mut last_checkpoint: Option<u64> = None;
    let mut records = 0u64;
    let mut head_seen = false;
    for (index, line) in lines.iter().enumerate() {
        let Some(seq) = line.seq() else {
            pending.push(index);
            continue;
        };
        let event = line.field("event").unwrap_or_default();
        if !pending.is_empty() {
            if event != "recovered" || !recovers(line, &pending, &lines) {
                let at = &lines[pending[0]];
                return broken(format!(
                    "{}: not an audit record, and no recovery record follows it: it was edited, or inserted",
                    at.place
                ));
            }
            pending.clear();
        }
        let line_prev = line.field("prev").unwrap_or_default();
        match expected {
            None => {
                if seq == 0 && line_prev != GENESIS {
                    return broken(format!(
                        "{}: record 0 does not start the chain (its prev is not the genesis value)",
                        line.place
                    ));
                }
                first = Some((seq, line_prev.to_owned()));
            }
            Some(want) if seq == want => {
                let (prev_hash, prev_place) = prev.as_ref().expect("a previous record");
                if line_prev != prev_hash {
                    return broken(format!(
                        "{}: record {seq} does not chain to record {} at {prev_place}: that record was edited, or record {seq} was replaced or inserted",
                        line.place,
                        seq - 1
                    ));
                }
            }
            Some(want) if seq > want => {
                let reordered = lines[index + 1..]
                    .iter()
                    .find_map(Line::seq)
                    .is_some_and(|next| next < seq);
                return broken(if reordered {
                    format!(
                        "{}: record {seq} comes before record {want}: records were reordered",
                        line.place
                    )
                } else {
                    format!(
                        "{}: record{} {want}{} missing before record {seq}: deleted",
                        line.place,
                        if seq - want > 1 { "s" } else { "" },
                        if seq - want > 1 {
                            format!("–{} are", seq - 1)
                        } else {
                            " is".into()
                        }
                    )
                });
            }
            Some(want) => {
                return broken(format!(
                    "{}: record {seq} appears again after record {}: a record was inserted (or records reordered)",
                    line.place,
                    want - 1
                ));
            }
        }
        if event == "checkpoint" {
            if let Some(checker) = &request.checker {
                let (Some(key), Some(signature)) = (line.field("key"), line.field("sig")) else {
                    return broken(format!(
                        "{}: checkpoint record {seq} is not signed",
                        line.place
                    ));
                };
                if key != checker.key_id {
                    return broken(format!(
                        "{}: checkpoint record {seq} is signed with key {key}, not {}",
                        line.place, checker.key_id
                    ));
                }
                if !checker.verifies(&chain::checkpoint_message(seq, line_prev), signature) {
                    return broken(format!(
                        "{}: checkpoint record {seq}: the signature does not verify: records before it were altered and the chain rebuilt, or the checkpoint was forged",
                        line.place
                    ));
                }
            }
            checkpoints += 1;
            last_checkpoint = Some(seq);
        }
        if event == "retention"
            && let Some(deleted) = line
                .record
                .as_ref()
                .and_then(|r| r.get("deleted"))
                .and_then(Value::as_array)
        {
            for entry in deleted {
                let number = |key: &str| entry.get(key).and_then(Value::as_u64);
                if let (Some(from), Some(to), Some(hash)) = (
                    number("first_seq"),
                    number("last_seq"),
                    entry.get("last_hash").and_then(Value::as_str),
                ) {
                    retired.push((from, to, hash.to_owned()));
                }
            }
        }
        if let Some((head_seq, head_hash, head_path)) = &head_line
            && *head_seq == seq
        {
            if *head_hash != line.hash {
                return broken(format!(
                    "{}: checkpoint record {seq} differs from the one {} holds: it was edited",
                    line.place,
                    head_path.display()
                ));
            }
            head_seen = true;
        }
        records += 1;
        expected = Some(seq + 1);
        prev = Some((line.hash.clone(), line.place.clone()));
    }

    let Some((first_seq, first_prev)) = first else {
        return broken("no audit records in the files given".into());
    };
    let last_seq = expected.unwrap_or(1) - 1;
    if !pending.is_empty() {
        let only_torn_tail = torn_tail && pending == [lines.len() - 1];
        if !only_torn_tail {
            return broken(format!(
                "{}: not an audit record, and no recovery record follows it: it was edited, or inserted",
                lines[pending[0]].place
            ));
        }
        notes.push(format!(
            "{}: an incomplete last line (the server stopped mid-write and has not been restarted since; a restart records and skips it)",
            lines[pending[0]].place
        ));
    }
    if first_seq > 0 {
        let explained = retired
            .iter()
            .any(|(_, to, hash)| to + 1 == first_seq && *hash == first_prev);
        if explained {
            notes.push(format!(
                "records 0–{} were deleted by retention, as the chain records",
                first_seq - 1
            ));
        } else if request.partial {
            notes.push(format!(
                "the files given start at record {first_seq}; earlier records were not checked (--partial)"
            ));
        } else {
            return broken(format!(
                "{}: the earliest record given is {first_seq}: records 0–{} are missing and no retention record explains it (files deleted?); pass the earlier files, or --partial to check a part of the log",
                lines
                    .iter()
                    .find(|l| l.seq().is_some())
                    .map_or("", |l| &l.place),
                first_seq - 1
            ));
        }
    }
    if let Some((head_seq, _, head_path)) = &head_line
        && !head_seen
    {
        return broken(format!(
            "the log ends at record {last_seq}, but {} names checkpoint record {head_seq}: records were cut from its end",
            head_path.display()
        ));
    }
    notes.insert(
        0,
        format!(
            "ok: {records} records ({first_seq}–{last_seq}) in {} file(s), {checkpoints} checkpoint(s), signatures {}",
            files.len(),
            match &request.checker {
                Some(checker) => format!("verified with key {}", checker.key_id),
                None => "not checked (pass --public-key)".into(),
            }
        ),
    );
    let unsigned = last_checkpoint.map_or(records, |c| last_seq - c);
    if unsigned > 0 {
        notes.push(format!(
            "{unsigned} record(s) after the last checkpoint{} are not yet covered by a signature (a checkpoint is written every audit.checkpoint_interval and at shutdown)",
            last_checkpoint.map_or(String::new(), |c| format!(" (record {c})"))
        ));
    }
    if head.is_none() {
        notes.push(format!(
            "no {HEAD_FILE} checked: pass the audit directory to check that no records were cut from its end"
        ));
    }
    Ok(Verdict {
        broken: None,
        notes,
    })
}

/// Whether the `recovered` record `line` names exactly the pending lines.
fn recovers(line: &Line, pending: &[usize], lines: &[Line]) -> bool {
    let Some(skipped) = line
        .record
        .as_ref()
        .and_then(|r| r.get("skipped"))
        .and_then(Value::as_array)
    else {
        return false;
    };
    skipped.len() == pending.len()
        && skipped.iter().zip(pending).all(|(entry, &index)| {
            let at = &lines[index];
            at.file.ends_with(line.field("file").unwrap_or("\u{0}"))
                && entry.get("offset").and_then(Value::as_u64) == Some(at.offset)
                && entry.get("sha256").and_then(Value::as_str) == Some(at.hash.as_str())
        })
}
