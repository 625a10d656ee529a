//! CycloneDX SBOMs, written by `cargo xtask build`: one for the runtime
//! (`target/release/stockade.cdx.json`) and one per tool component, written
//! beside it (`NAME.cdx.json`) and embedded in it as the custom section
//! [`SECTION`], so a component carries its own bill of materials.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::polyglot::{self, Language, PolyglotTool};

/// The custom section of a component that holds its SBOM.
pub const SECTION: &str = "stockade:sbom";

/// The CycloneDX version written.
const SPEC_VERSION: &str = "1.5";

/// Writes the runtime's SBOM and every tool's, embedding the tools'.
pub fn write_all(root: &Path, wasm_target: &str, tools: &[String]) -> Result<()> {
    let host = Metadata::read(root, &host_triple()?)?;
    let runtime = host.bom("stockade")?;
    write_json(&root.join("target/release/stockade.cdx.json"), &runtime)?;
    let guest = Metadata::read(root, wasm_target)?;
    for tool in tools {
        let stem = guest.cdylib_name(tool)?;
        let wasm = root.join(format!("target/{wasm_target}/release/{stem}.wasm"));
        let bom = guest.bom(tool)?;
        write_json(&wasm.with_extension("cdx.json"), &bom)?;
        embed(&wasm, serde_json::to_vec(&bom)?.as_slice())?;
    }
    Ok(())
}

/// Writes and embeds the SBOM of every Python and JavaScript tool: the
/// tool, the Stockade SDK it is written on and the compiler that built it,
/// which carries the language's engine (CPython for componentize-py,
/// SpiderMonkey for componentize-js).
pub fn write_polyglot(root: &Path, tools: &[PolyglotTool]) -> Result<()> {
    let version = workspace_version(root)?;
    for tool in tools {
        let name = tool
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("tool directory name is not UTF-8")?;
        let (sdk_name, compiler_name, compiler_version, purl_type) = match tool.language {
            Language::Python => (
                "stockade-sdk-python",
                "componentize-py",
                polyglot::COMPONENTIZE_PY_VERSION,
                "pypi",
            ),
            Language::JavaScript => (
                "stockade-sdk-js",
                "@bytecodealliance/componentize-js",
                polyglot::COMPONENTIZE_JS_VERSION,
                "npm",
            ),
        };
        let sdk = json!({ "type": "library", "bom-ref": format!("{sdk_name}@{version}"),
                          "name": sdk_name, "version": version,
                          "licenses": [{ "expression": "Apache-2.0" }] });
        let compiler = json!({ "type": "application",
                               "bom-ref": format!("{compiler_name}@{compiler_version}"),
                               "name": compiler_name, "version": compiler_version,
                               "purl": format!("pkg:{purl_type}/{}@{compiler_version}",
                                               compiler_name.replace('@', "%40")),
                               "licenses": [{ "expression": "Apache-2.0 WITH LLVM-exception" }] });
        let tool_ref = format!("{name}@{version}");
        let bom = json!({
            "bomFormat": "CycloneDX",
            "specVersion": SPEC_VERSION,
            "version": 1,
            "metadata": {
                "tools": { "components": [{ "type": "application", "name": "cargo xtask build" }] },
                "component": { "type": "application", "bom-ref": tool_ref, "name": name, "version": version },
            },
            "components": [sdk, compiler],
            "dependencies": [
                { "ref": tool_ref, "dependsOn": [sdk["bom-ref"], compiler["bom-ref"]] },
            ],
        });
        write_json(&tool.wasm.with_extension("cdx.json"), &bom)?;
        embed(&tool.wasm, serde_json::to_vec(&bom)?.as_slice())?;
    }
    Ok(())
}

/// The `version` of `[workspace.package]`.
fn workspace_version(root: &Path) -> Result<String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .map(str::to_owned)
        .context("no workspace version in Cargo.toml")
}

/// The crate graph of the workspace as built for one target.
struct Metadata {
    packages: BTreeMap<String, Value>,
    /// Package id -> ids of its normal (built-in) dependencies.
    graph: BTreeMap<String, Vec<String>>,
}

impl Metadata {
    fn read(root: &Path, target: &str) -> Result<Self> {
        let metadata = crate::cargo_metadata(root, &["--filter-platform", target])?;
        let packages = metadata["packages"]
            .as_array()
            .context("cargo metadata: no packages")?
            .iter()
            .map(|p| (p["id"].as_str().unwrap_or_default().to_owned(), p.clone()))
            .collect();
        let mut graph = BTreeMap::new();
        for node in metadata["resolve"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let normal = node["deps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|kind| kind["kind"].is_null())
                })
                .filter_map(|dep| dep["pkg"].as_str().map(str::to_owned))
                .collect();
            graph.insert(node["id"].as_str().unwrap_or_default().to_owned(), normal);
        }
        Ok(Self { packages, graph })
    }

    fn id_of(&self, name: &str) -> Result<&String> {
        self.packages
            .iter()
            .find(|(_, p)| p["name"] == name && p["source"].is_null())
            .map(|(id, _)| id)
            .with_context(|| format!("no workspace package `{name}`"))
    }

    /// The file stem of `package`'s cdylib (its `.wasm`).
    fn cdylib_name(&self, package: &str) -> Result<String> {
        let id = self.id_of(package)?;
        self.packages[id]["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c == "cdylib"))
            })
            .and_then(|t| t["name"].as_str())
            .map(|name| name.replace('-', "_"))
            .with_context(|| format!("`{package}` has no cdylib target"))
    }

    /// The SBOM of `package`: every crate built into it, with its licence,
    /// its package URL and the graph between them.
    fn bom(&self, package: &str) -> Result<Value> {
        let root = self.id_of(package)?.clone();
        let mut seen = BTreeSet::new();
        let mut stack = vec![root.clone()];
        while let Some(id) = stack.pop() {
            if seen.insert(id.clone()) {
                stack.extend(self.graph.get(&id).into_iter().flatten().cloned());
            }
        }
        let components: Vec<Value> = seen
            .iter()
            .filter(|id| **id != root)
            .map(|id| component(&self.packages[id], "library"))
            .collect();
        let dependencies: Vec<Value> = seen
            .iter()
            .map(|id| {
                json!({
                    "ref": bom_ref(&self.packages[id]),
                    "dependsOn": self.graph.get(id).into_iter().flatten()
                        .map(|dep| bom_ref(&self.packages[dep])).collect::<BTreeSet<_>>(),
                })
            })
            .collect();
        Ok(json!({
            "bomFormat": "CycloneDX",
            "specVersion": SPEC_VERSION,
            "version": 1,
            "metadata": {
                "tools": { "components": [{ "type": "application", "name": "cargo xtask build" }] },
                "component": component(&self.packages[&root], "application"),
            },
            "components": components,
            "dependencies": dependencies,
        }))
    }
}

/// One crate as a CycloneDX component.
fn component(package: &Value, kind: &str) -> Value {
    let name = package["name"].as_str().unwrap_or_default();
    let version = package["version"].as_str().unwrap_or_default();
    let mut component = json!({
        "type": kind,
        "bom-ref": bom_ref(package),
        "name": name,
        "version": version,
    });
    if package["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("registry+"))
    {
        component["purl"] = json!(format!("pkg:cargo/{name}@{version}"));
    }
    if let Some(license) = package["license"].as_str() {
        component["licenses"] = json!([{ "expression": license }]);
    }
    component
}

fn bom_ref(package: &Value) -> String {
    format!(
        "{}@{}",
        package["name"].as_str().unwrap_or_default(),
        package["version"].as_str().unwrap_or_default()
    )
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Puts `sbom` in `wasm` as its last custom section [`SECTION`], replacing
/// one written before.
fn embed(wasm: &Path, sbom: &[u8]) -> Result<()> {
    use wasm_encoder::ComponentSection;
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let mut kept =
        without_section(&bytes).with_context(|| format!("parsing {}", wasm.display()))?;
    wasm_encoder::CustomSection {
        name: SECTION.into(),
        data: sbom.into(),
    }
    .append_to_component(&mut kept);
    std::fs::write(wasm, kept).with_context(|| format!("writing {}", wasm.display()))
}

/// `bytes` without its top-level [`SECTION`] sections.
fn without_section(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut kept = Vec::with_capacity(bytes.len());
    let mut depth = 0usize;
    let mut copied = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload? {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::CustomSection(reader)
                if depth == 0 && reader.name() == SECTION =>
            {
                let range = reader.range();
                // The section's id and size come before its name.
                let start = section_start(bytes, range.clone(), copied);
                kept.extend_from_slice(&bytes[copied..start]);
                copied = range.end;
            }
            _ => {}
        }
    }
    kept.extend_from_slice(&bytes[copied..]);
    Ok(kept)
}

/// Where the custom section whose contents are `contents` begins: its id
/// byte (0) and the LEB128 of the contents' length sit just before them.
fn section_start(bytes: &[u8], contents: std::ops::Range<usize>, floor: usize) -> usize {
    let length = (contents.end - contents.start) as u32;
    (1..=5)
        .filter_map(|len| contents.start.checked_sub(len + 1))
        .filter(|start| *start >= floor && bytes[*start] == 0)
        .find(|start| {
            let mut reader = wasmparser::BinaryReader::new(&bytes[start + 1..contents.start], 0);
            reader.read_var_u32().is_ok_and(|n| n == length) && reader.bytes_remaining() == 0
        })
        .unwrap_or(contents.start)
}

/// This machine's target triple, as rustc names it.
fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV names no host")
}
