//! `stockade audit query`: the records of the local files that match a
//! filter, as a table or as JSON Lines.

use std::path::PathBuf;

use serde_json::Value;

use super::chain;
use super::file;

/// Which records to return (`stockade audit query`'s flags); every field
/// set must match.
#[derive(Debug, Default, clap::Args)]
pub struct Filter {
    /// From this time: 2026-11-24, 2026-11-24T09:00:00Z, or an age (12h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (same forms).
    #[arg(long)]
    pub until: Option<String>,
    /// Client id.
    #[arg(long)]
    pub client: Option<String>,
    /// User (subject).
    #[arg(long)]
    pub user: Option<String>,
    /// Tool name.
    #[arg(long)]
    pub tool: Option<String>,
    /// succeeded, failed, limited, denied, or an error class.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Event kind (call_started, call_finished, call_denied, auth_failed, ...).
    #[arg(long)]
    pub event: Option<String>,
}

/// A time given on the command line as a record's time: an RFC 3339
/// time, a UTC day (`2026-11-24`), or an age (`90m`, `12h`, `7d` ago).
pub fn parse_time(text: &str) -> Result<String, String> {
    if let Ok(age) = crate::units::parse_duration(text) {
        return Ok(chain::format_time(time::OffsetDateTime::now_utc() - age));
    }
    if let Ok(at) =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok(chain::format_time(at));
    }
    if let Ok(day) = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    ) {
        return Ok(chain::format_time(day.midnight().assume_utc()));
    }
    Err(format!(
        "\"{text}\" is not a time: give 2026-11-24, 2026-11-24T09:00:00Z, or an age such as 12h or 7d"
    ))
}

impl Filter {
    /// `since` and `until` turned into records' time format.
    fn resolved(mut self) -> Result<Self, String> {
        for (flag, time) in [("since", &mut self.since), ("until", &mut self.until)] {
            if let Some(text) = time.take() {
                *time = Some(parse_time(&text).map_err(|e| format!("--{flag}: {e}"))?);
            }
        }
        Ok(self)
    }

    fn matches(&self, record: &Value) -> bool {
        let field = |name: &str| record.get(name).and_then(Value::as_str);
        let equal = |want: &Option<String>, name: &str| {
            want.as_deref().is_none_or(|want| field(name) == Some(want))
        };
        let ts = field("ts").unwrap_or_default();
        self.since.as_deref().is_none_or(|since| ts >= since)
            && self.until.as_deref().is_none_or(|until| ts < until)
            && equal(&self.client, "client")
            && equal(&self.user, "user")
            && equal(&self.tool, "tool")
            && equal(&self.event, "event")
            && self.outcome.as_deref().is_none_or(|want| {
                field("outcome") == Some(want) || field("error_class") == Some(want)
            })
    }
}

/// The matching records of `paths` (audit files or directories), in
/// chain order. Lines that are not records are left out.
pub fn query(paths: &[PathBuf], filter: Filter) -> Result<Vec<Value>, String> {
    let filter = filter.resolved()?;
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let listed = file::list_files(path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.extend(listed.into_iter().map(|f| f.path));
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for line in text.split(|b| *b == b'\n') {
            let Ok(record) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            if filter.matches(&record) {
                found.push(record);
            }
        }
    }
    found.sort_by_key(|r| r.get("seq").and_then(Value::as_u64));
    Ok(found)
}

/// Records as an aligned table, one line each.
pub fn table(records: &[Value]) -> String {
    const COLUMNS: [&str; 8] = [
        "ts",
        "event",
        "client",
        "user",
        "tool",
        "outcome",
        "duration_ms",
        "correlation",
    ];
    let cell = |record: &Value, name: &str| match record.get(name) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            COLUMNS
                .iter()
                .map(|c| match *c {
                    "outcome" => match (cell(r, "outcome"), r.get("error_class")) {
                        (outcome, Some(Value::String(class))) => format!("{outcome} ({class})"),
                        (outcome, _) => outcome,
                    },
                    name => cell(r, name),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([name.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(COLUMNS.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
