//! The signed tool lock: what every served tool tells the model (name,
//! title, description, schemas, hints), the digest of its component and
//! its grants, as ops approved them. `stockade lock` writes the lock file
//! (pretty JSON, reviewable in version control) and `FILE.sig`, an Ed25519
//! signature over it made with a `stockade keygen` key. `serve` and
//! `check` verify the signature and compare the live tools with the lock:
//! a tool that differs in any of these, or that the lock does not name, is
//! kept out of service, and the message says what changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::signing::{Checker, Signer};
use crate::audit::{Audit, AuditRecord, EventKind};
use crate::config::ConfigError;
use crate::registry::{RegisteredTool, Registry};

/// Prefixed to the lock file's bytes before signing, so that a lock
/// signature can never pass for an audit checkpoint's, or the reverse.
const SIGNING_CONTEXT: &[u8] = b"stockade tool lock v1\n";

/// The lock format this build writes and reads.
const FORMAT: u32 = 1;

/// `[lock]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLock {
    file: Option<PathBuf>,
    public_key_file: Option<PathBuf>,
    #[serde(default)]
    required: bool,
}

/// `[lock]`, checked.
#[derive(Debug, Clone, Default)]
pub struct LockSettings {
    /// The lock file (its signature is `FILE.sig`).
    pub file: Option<PathBuf>,
    /// The public key the lock must be signed with.
    pub public_key_file: Option<PathBuf>,
}

impl RawLock {
    /// Resolves paths against the config's directory; a lock needs the key
    /// that checks it, and `required` (for production) needs a lock. Once
    /// a lock is configured, serving without it, or with a signature that
    /// does not verify, is refused.
    pub fn check(
        &self,
        base: &Path,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<LockSettings, ConfigError> {
        if self.file.is_some() && self.public_key_file.is_none() {
            return Err(invalid(
                "lock.public_key_file",
                "the public key the lock is signed with (`stockade keygen`'s FILE.pub)",
            ));
        }
        if self.required && self.file.is_none() {
            return Err(invalid(
                "lock.file",
                "a lock file (`stockade lock` writes one): lock.required is set",
            ));
        }
        Ok(LockSettings {
            file: self.file.as_ref().map(|f| base.join(f)),
            public_key_file: self.public_key_file.as_ref().map(|f| base.join(f)),
        })
    }
}

/// Why the lock cannot be used at all (as opposed to a tool drifting).
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The lock or its signature is not what `stockade lock` writes.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The signature does not verify with the configured key.
    #[error(
        "{path}: the signature does not verify with {key} (key {key_id}): the lock was changed after it was signed, or signed with another key"
    )]
    BadSignature {
        /// The lock file.
        path: String,
        /// The public key file.
        key: String,
        /// Its short id.
        key_id: String,
    },
    /// The key file is unusable.
    #[error(transparent)]
    Key(#[from] crate::audit::signing::KeyError),
}

/// What the lock records of one tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedTool {
    /// Title shown to people.
    pub title: Option<String>,
    /// What the model reads.
    pub description: String,
    /// The input schema.
    pub input_schema: Value,
    /// The output schema, if any.
    pub output_schema: Option<Value>,
    /// `read_only`, `destructive`, `idempotent`, `open_world`.
    pub hints: BTreeMap<String, bool>,
    /// SHA-256 of the component.
    pub component_sha256: String,
    /// The manifest's `fs`, `egress`, `secrets`, `access`, `output` and
    /// `lint` tables as written.
    pub grants: Value,
}

/// A lock file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lock {
    /// Format version.
    pub format: u32,
    /// Every locked tool, by served name.
    pub tools: BTreeMap<String, LockedTool>,
}

impl LockedTool {
    /// The lock entry of a served tool.
    pub fn of(tool: &RegisteredTool) -> Self {
        let d = &tool.descriptor;
        let hints = [
            ("read_only", d.hints.read_only),
            ("destructive", d.hints.destructive),
            ("idempotent", d.hints.idempotent),
            ("open_world", d.hints.open_world),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        Self {
            title: d.title.clone(),
            description: d.description.clone(),
            input_schema: d.input_schema.clone(),
            output_schema: d.output_schema.clone(),
            hints,
            component_sha256: tool.component.manifest.sha256.clone(),
            grants: tool.component.manifest.grants.clone(),
        }
    }

    /// What differs between the locked entry (`self`) and the live one, in
    /// words; empty when nothing does.
    pub fn changes(&self, live: &Self) -> Vec<String> {
        let mut changes = Vec::new();
        if self.title != live.title {
            changes.push("title changed".to_owned());
        }
        if self.description != live.description {
            changes.push("description changed".to_owned());
        }
        if self.input_schema != live.input_schema {
            changes.push("input schema changed".to_owned());
        }
        if self.output_schema != live.output_schema {
            changes.push("output schema changed".to_owned());
        }
        if self.hints != live.hints {
            let which: Vec<&str> = self
                .hints
                .iter()
                .filter(|(name, value)| live.hints.get(*name) != Some(value))
                .map(|(name, _)| name.as_str())
                .collect();
            changes.push(format!("hints changed ({})", which.join(", ")));
        }
        if self.component_sha256 != live.component_sha256 {
            changes.push(format!(
                "component digest changed (locked {}, now {})",
                short(&self.component_sha256),
                short(&live.component_sha256)
            ));
        }
        if self.grants != live.grants {
            let tables: Vec<&str> = crate::manifest::GRANT_TABLES
                .iter()
                .copied()
                .filter(|table| self.grants.get(table) != live.grants.get(table))
                .collect();
            changes.push(format!("grants changed ({})", tables.join(", ")));
        }
        changes
    }
}

/// The first 12 hex digits of a digest.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// The signature file beside a lock file.
pub fn signature_path(lock: &Path) -> PathBuf {
    PathBuf::from(format!("{}.sig", lock.display()))
}

/// Writes the lock of every tool in `registry` to `path`, signed with
/// `signer`, and returns how many tools it holds.
pub fn write(registry: &Registry, path: &Path, signer: &Signer) -> Result<usize, LockError> {
    let lock = Lock {
        format: FORMAT,
        tools: registry
            .iter()
            .map(|tool| (tool.descriptor.name.clone(), LockedTool::of(tool)))
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&lock).map_err(|e| LockError::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    let signature = signer.sign(&signed_message(text.as_bytes()));
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |err: std::io::Error| LockError::Io {
            path,
            reason: err.to_string(),
        }
    };
    std::fs::write(path, &text).map_err(io(path))?;
    let sig_path = signature_path(path);
    std::fs::write(
        &sig_path,
        format!("ed25519 {} {signature}\n", signer.key_id),
    )
    .map_err(io(&sig_path))?;
    Ok(lock.tools.len())
}

fn signed_message(lock: &[u8]) -> Vec<u8> {
    [SIGNING_CONTEXT, lock].concat()
}

/// Reads the lock at `path` and checks its signature with the public key
/// at `key`.
pub fn read(path: &Path, key: &Path) -> Result<Lock, LockError> {
    let checker = Checker::load(key)?;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |err: std::io::Error| LockError::Io {
            path,
            reason: format!("{err} (`stockade lock` writes it)"),
        }
    };
    let bytes = std::fs::read(path).map_err(io(path))?;
    let sig_path = signature_path(path);
    let sig_text = std::fs::read_to_string(&sig_path).map_err(io(&sig_path))?;
    let signature = match sig_text.split_whitespace().collect::<Vec<_>>()[..] {
        ["ed25519", _key_id, signature] => signature.to_owned(),
        _ => {
            return Err(LockError::Format {
                path: sig_path.display().to_string(),
                reason: "expected `ed25519 KEY_ID SIGNATURE`".into(),
            });
        }
    };
    if !checker.verifies(&signed_message(&bytes), &signature) {
        return Err(LockError::BadSignature {
            path: path.display().to_string(),
            key: key.display().to_string(),
            key_id: checker.key_id,
        });
    }
    let lock: Lock = serde_json::from_slice(&bytes).map_err(|e| LockError::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if lock.format != FORMAT {
        return Err(LockError::Format {
            path: path.display().to_string(),
            reason: format!(
                "lock format {} (this build reads {FORMAT}): run `stockade lock` again",
                lock.format
            ),
        });
    }
    Ok(lock)
}

/// One tool whose live form differs from the lock.
#[derive(Debug, Clone)]
pub struct Drift {
    /// The tool's served name.
    pub tool: String,
    /// What differs, in words.
    pub changes: Vec<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tool `{}` differs from the signed lock: {}",
            self.tool,
            self.changes.join("; ")
        )
    }
}

/// Compares the live tools with `lock`; every tool that drifted (or that
/// the lock does not name) is taken out of `registry`. Returns every
/// drift, tools in the lock that are not served included.
pub fn enforce(lock: &Lock, registry: &mut Registry) -> Vec<Drift> {
    let mut drifts = Vec::new();
    for tool in registry.iter() {
        let name = &tool.descriptor.name;
        let changes = match lock.tools.get(name) {
            None => vec!["a new tool the lock does not name".to_owned()],
            Some(locked) => locked.changes(&LockedTool::of(tool)),
        };
        if !changes.is_empty() {
            drifts.push(Drift {
                tool: name.clone(),
                changes,
            });
        }
    }
    for drift in &drifts {
        registry.remove(&drift.tool);
    }
    for name in lock.tools.keys() {
        if registry.get(name).is_none() && !drifts.iter().any(|d| &d.tool == name) {
            drifts.push(Drift {
                tool: name.clone(),
                changes: vec!["in the lock but not served (it vanished or was refused)".to_owned()],
            });
        }
    }
    drifts
}

/// Checks the live tools against the signed lock, when `settings` name
/// one: drifted tools leave `registry`, each drift is audited (a critical
/// record, which raises an alert) and returned as a problem. A lock that
/// is missing or whose signature does not verify is an error: nothing is
/// served on a lock that cannot be trusted.
pub fn enforce_configured(
    settings: &LockSettings,
    registry: &mut Registry,
    audit: Option<&Audit>,
) -> Result<Vec<String>, LockError> {
    let (Some(file), Some(key)) = (&settings.file, &settings.public_key_file) else {
        tracing::warn!(
            "no [lock]: what tools tell the model is not checked against an approved, signed lock"
        );
        return Ok(Vec::new());
    };
    let lock = read(file, key)?;
    let mut problems = Vec::new();
    for drift in enforce(&lock, registry) {
        let message =
            format!("{drift}; not served (review the change, then run `stockade lock` again)");
        if let Some(audit) = audit {
            let mut record = AuditRecord::new(EventKind::LockDrift);
            record.tool = Some(&drift.tool);
            record.severity = Some("critical");
            record.outcome = Some("denied");
            record.detail = Some(&message);
            audit.record(&record).map_err(|e| LockError::Io {
                path: "(audit)".into(),
                reason: format!("cannot record a drift from the tool lock: {e}"),
            })?;
        }
        problems.push(message);
    }
    Ok(problems)
}
