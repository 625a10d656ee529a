//! The audit's side of the command line: `keygen`, `audit verify`,
//! `audit query`, and the records of the server starting and stopping.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::audit::query::{self, Filter};
use crate::audit::signing::{self, Checker};
use crate::audit::verify::{self, VerifyRequest};
use crate::audit::{Audit, AuditRecord, EventKind};
use crate::registry::Registry;

/// `stockade keygen --out FILE`: FILE (private, mode 0600) and FILE.pub.
pub fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt;
    let public_path = PathBuf::from(format!("{}.pub", out.display()));
    let (private, public, key_id) = signing::generate().map_err(anyhow::Error::msg)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "cannot create {} (an existing key is never overwritten)",
                out.display()
            )
        })?;
    file.write_all(private.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    std::fs::write(&public_path, public)
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    println!("audit signing key {key_id}");
    println!(
        "private: {} (give only the server read access)",
        out.display()
    );
    println!(
        "public:  {} (for `stockade audit verify --public-key`)",
        public_path.display()
    );
    println!(
        "\nAdd to stockade.toml:\n[audit]\ndir = \"audit\"\nsigning_key_file = \"{}\"",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `stockade audit verify`: exit 0 when the chain is intact, 1 at the
/// first break (printed), 2 when the files cannot be read.
pub fn verify(
    paths: Vec<PathBuf>,
    public_key: Option<&Path>,
    partial: bool,
) -> anyhow::Result<ExitCode> {
    let checker = public_key
        .map(Checker::load)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let request = VerifyRequest {
        paths,
        checker,
        partial,
    };
    match verify::verify(&request) {
        Err(problem) => {
            eprintln!("stockade: {problem}");
            Ok(ExitCode::from(2))
        }
        Ok(verdict) => {
            if let Some(broken) = verdict.broken {
                println!("BROKEN: {broken}");
                return Ok(ExitCode::FAILURE);
            }
            for note in verdict.notes {
                println!("{note}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `stockade audit query`: the matching records as a table or JSON Lines.
pub fn query(paths: &[PathBuf], filter: Filter, json: bool) -> anyhow::Result<ExitCode> {
    let records = query::query(paths, filter).map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    if json {
        for record in &records {
            writeln!(out, "{record}")?;
        }
    } else {
        write!(out, "{}", query::table(&records))?;
        writeln!(out, "{} record(s)", records.len())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Records the config the server loaded: its digest and every tool's
/// component digest. Serving does not start if this cannot be recorded.
pub fn record_start(
    audit: &Audit,
    config_path: &Path,
    registry: &Registry,
    problems: &[String],
) -> anyhow::Result<()> {
    let config_sha256 = std::fs::read(config_path)
        .map(|bytes| hex::encode(Sha256::digest(bytes)))
        .unwrap_or_default();
    let tools: Vec<_> = registry
        .iter()
        .map(|tool| {
            serde_json::json!({
                "name": tool.descriptor.name,
                "component": tool.component.manifest.sha256,
                "description_sha256": hex::encode(Sha256::digest(tool.descriptor.description.as_bytes())),
            })
        })
        .collect();
    let mut record = AuditRecord::new(EventKind::ConfigLoaded);
    record.data = Some(serde_json::json!({
        "config": config_path.display().to_string(),
        "config_sha256": config_sha256,
        "tools": tools,
        "refused": problems,
        "version": env!("CARGO_PKG_VERSION"),
    }));
    audit
        .record(&record)
        .context("cannot write the first audit record; not serving")?;
    Ok(())
}

/// Records the server stopping and closes the log with a checkpoint.
pub fn record_stop(audit: &Audit) {
    audit.record_or_log(&AuditRecord::new(EventKind::Stopped));
    audit.close();
}
