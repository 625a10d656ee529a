//! `stockade sbom`: the bill of materials of what a configuration serves,
//! as one CycloneDX document: the runtime (this executable's digest, and
//! the crates of the `stockade.cdx.json` built beside it) and every
//! component the manifests name (its digest, its tools, and the crates of
//! the SBOM embedded in it by `cargo xtask build`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::StockadeConfig;

/// The custom section of a component that holds its SBOM.
const SECTION: &str = "stockade:sbom";

/// Prints the served set's SBOM; exit 1 when a component does not match
/// its pinned digest.
pub fn print(config_path: &Path) -> anyhow::Result<ExitCode> {
    let (config, manifest_errors) = StockadeConfig::load(config_path)?;
    for error in &manifest_errors {
        eprintln!("stockade: not in the SBOM: {error}");
    }
    let mut served: BTreeMap<PathBuf, (String, Vec<String>)> = BTreeMap::new();
    for manifest in &config.tools {
        let entry = served
            .entry(manifest.component.clone())
            .or_insert_with(|| (manifest.sha256.clone(), Vec::new()));
        entry.1.push(manifest.name.clone());
    }
    let mut components = vec![runtime()?];
    let mut mismatched = Vec::new();
    for (path, (pinned, tools)) in &served {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != *pinned {
            mismatched.push(format!(
                "{}: SHA-256 {digest}, pinned {pinned}",
                path.display()
            ));
        }
        components.push(served_component(path, &bytes, &digest, tools));
    }
    let document = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "component": {
                "type": "application",
                "name": "stockade served set",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "properties": [{ "name": "stockade:config", "value": config_path.display().to_string() }],
        },
        "components": components,
    });
    println!("{}", serde_json::to_string_pretty(&document)?);
    if mismatched.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in mismatched {
            eprintln!("stockade: component does not match its pin: {problem}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// This executable, with the crates of the SBOM built beside it.
fn runtime() -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let bytes = std::fs::read(&exe).with_context(|| format!("reading {}", exe.display()))?;
    let beside = exe.with_extension("cdx.json");
    let sbom = std::fs::read(&beside)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let mut component = json!({
        "type": "application",
        "bom-ref": "runtime",
        "name": "stockade",
        "version": env!("CARGO_PKG_VERSION"),
        "hashes": [{ "alg": "SHA-256", "content": hex::encode(Sha256::digest(&bytes)) }],
        "properties": [
            { "name": "stockade:executable", "value": exe.display().to_string() },
            { "name": "stockade:sbom", "value": if sbom.is_some() { "beside the executable" } else { "missing" } },
        ],
    });
    if let Some(sbom) = sbom {
        component["components"] = nested(&sbom);
    }
    Ok(component)
}

/// One component file the manifests name.
fn served_component(path: &Path, bytes: &[u8], digest: &str, tools: &[String]) -> Value {
    let sbom = embedded(bytes);
    let named = sbom.as_ref().map(|s| &s["metadata"]["component"]);
    let name = named
        .and_then(|c| c["name"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            path.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        });
    let mut component = json!({
        "type": "application",
        "bom-ref": format!("component:{digest}"),
        "name": name,
        "hashes": [{ "alg": "SHA-256", "content": digest }],
        "properties": [
            { "name": "stockade:component", "value": path.display().to_string() },
            { "name": "stockade:tools", "value": tools.join(", ") },
            { "name": "stockade:sbom", "value": if sbom.is_some() { "embedded" } else { "missing" } },
        ],
    });
    if let Some(version) = named.and_then(|c| c["version"].as_str()) {
        component["version"] = json!(version);
    }
    if let Some(sbom) = sbom {
        component["components"] = nested(&sbom);
    }
    component
}

/// The components of `sbom`, without their references (several nested
/// lists may hold the same crate).
fn nested(sbom: &Value) -> Value {
    let list = sbom["components"].as_array().cloned().unwrap_or_default();
    Value::Array(
        list.into_iter()
            .map(|mut c| {
                if let Some(fields) = c.as_object_mut() {
                    fields.remove("bom-ref");
                }
                c
            })
            .collect(),
    )
}

/// The SBOM in a component's top-level [`SECTION`] custom section.
fn embedded(bytes: &[u8]) -> Option<Value> {
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.ok()? {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::CustomSection(reader)
                if depth == 0 && reader.name() == SECTION =>
            {
                return serde_json::from_slice(reader.data()).ok();
            }
            _ => {}
        }
    }
    None
}
