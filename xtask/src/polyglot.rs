//! Tools written in Python and JavaScript, built by `cargo xtask build`
//! beside the Rust ones: every `tools/*/app.py` with componentize-py and
//! every `tools/*/tool.js` with componentize-js, each into
//! `target/wasm32-wasip2/release/<dir name, `-` as `_`>.wasm` (where the
//! manifests and tests find the Rust tools too; `tools/hostile/<name>`
//! becomes `hostile_<name>.wasm`).
//!
//! The compilers come from the registries, pinned: componentize-py in its
//! own virtual environment under `.stockade/`, componentize-js in
//! `tools/sdk-js/node_modules`. A component is rebuilt only when a file of
//! its tool, its SDK or the WIT is newer than it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::{cargo_metadata, npm_install, pip_install, run};

/// The version of componentize-py, the Python component compiler (PyPI).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The version of componentize-js, the JavaScript component compiler (npm),
/// as `tools/sdk-js/package.json` pins it.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The virtual environment that holds [`COMPONENTIZE_PY`].
const PY_VENV: &str = ".stockade/componentize-py";

/// The WASI release whose interfaces the runtime implements (the crate
/// `wasmtime-wasi-http` ships their WIT).
const WASI_HTTP_CRATE: &str = "wasmtime-wasi-http";

/// Which language a tool directory is written in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Language {
    /// `app.py`, built with componentize-py.
    Python,
    /// `tool.js`, built with componentize-js.
    JavaScript,
}

/// One tool written in Python or JavaScript.
#[derive(Debug)]
pub struct PolyglotTool {
    /// Its directory, e.g. `tools/py-summarise`.
    pub dir: PathBuf,
    /// Its language.
    pub language: Language,
    /// The component it builds into.
    pub wasm: PathBuf,
}

/// Every Python and JavaScript tool under `tools/` and `tools/hostile/`.
pub fn tools(root: &Path, wasm_target: &str) -> Result<Vec<PolyglotTool>> {
    let out = root.join(format!("target/{wasm_target}/release"));
    let mut found = Vec::new();
    for (parent, prefix) in [
        (root.join("tools"), ""),
        (root.join("tools/hostile"), "hostile_"),
    ] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&parent)
            .with_context(|| format!("reading {}", parent.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let language = if dir.join("app.py").is_file() {
                Language::Python
            } else if dir.join("tool.js").is_file() {
                Language::JavaScript
            } else {
                continue;
            };
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .context("tool directory name is not UTF-8")?
                .replace('-', "_");
            found.push(PolyglotTool {
                wasm: out.join(format!("{prefix}{name}.wasm")),
                dir,
                language,
            });
        }
    }
    Ok(found)
}

/// Builds every tool whose component is missing or older than its sources,
/// and returns them all.
pub fn build_all(root: &Path, wasm_target: &str) -> Result<Vec<PolyglotTool>> {
    let tools = tools(root, wasm_target)?;
    if tools.is_empty() {
        return Ok(tools);
    }
    let wit = assemble_wit(root)?;
    for tool in &tools {
        let sdk = match tool.language {
            Language::Python => root.join("tools/sdk-python"),
            Language::JavaScript => root.join("tools/sdk-js"),
        };
        let sources = newest(&[
            &tool.dir,
            &sdk,
            &root.join("wit"),
            &root.join("tools/sdk-wit"),
        ])?;
        let built = std::fs::metadata(&tool.wasm)
            .and_then(|m| m.modified())
            .ok();
        if built.is_some_and(|built| built >= sources) {
            continue;
        }
        if let Some(parent) = tool.wasm.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match tool.language {
            Language::Python => build_python(root, &wit, tool)?,
            Language::JavaScript => build_javascript(root, &wit, tool)?,
        }
    }
    Ok(tools)
}

/// `target/polyglot-wit`: `wit/stockade.wit`, the SDKs' worlds
/// (`tools/sdk-wit/worlds.wit`) and, under `deps/`, the WASI
/// interfaces of the `wasmtime-wasi-http` crate the runtime is built with.
fn assemble_wit(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/polyglot-wit");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let deps = dir.join("deps");
    std::fs::create_dir_all(&deps)?;
    std::fs::copy(root.join("wit/stockade.wit"), dir.join("stockade.wit"))?;
    std::fs::copy(
        root.join("tools/sdk-wit/worlds.wit"),
        dir.join("worlds.wit"),
    )?;
    let crate_wit = wasi_http_crate_dir(root)?.join("wit/deps");
    for entry in std::fs::read_dir(&crate_wit)
        .with_context(|| format!("reading the WASI interfaces in {}", crate_wit.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wit") {
            std::fs::copy(&path, deps.join(path.file_name().expect("a file name")))?;
        }
    }
    Ok(dir)
}

/// A copy of a tool's own `wit/` under `target/polyglot-wit/<tool>/`, with
/// the WASI interfaces of [`assemble_wit`] added to its `deps/` (a tool's
/// WIT may name them, e.g. wasmcp's message context names `wasi:io`).
fn with_wasi_deps(own: &Path, assembled: &Path, tool: &PolyglotTool) -> Result<PathBuf> {
    let name = tool
        .wasm
        .file_stem()
        .context("a component file has a name")?;
    let dir = assembled.join(name);
    copy_tree(own, &dir)?;
    let deps = dir.join("deps");
    std::fs::create_dir_all(&deps)?;
    for entry in std::fs::read_dir(assembled.join("deps"))? {
        let path = entry?.path();
        std::fs::copy(&path, deps.join(path.file_name().expect("a file name")))?;
    }
    Ok(dir)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        // Follows symbolic links: a tool may share another's WIT packages.
        if std::fs::metadata(entry.path())?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Where cargo unpacked the `wasmtime-wasi-http` crate the lock file pins.
fn wasi_http_crate_dir(root: &Path) -> Result<PathBuf> {
    let metadata = cargo_metadata(root, &[])?;
    let manifest = metadata["packages"]
        .as_array()
        .context("cargo metadata: no packages")?
        .iter()
        .find(|p| p["name"] == WASI_HTTP_CRATE)
        .and_then(|p| p["manifest_path"].as_str())
        .with_context(|| format!("cargo metadata: no {WASI_HTTP_CRATE} package"))?;
    Ok(Path::new(manifest)
        .parent()
        .context("a manifest path has a directory")?
        .to_owned())
}

/// The newest modification time of any file under `dirs` (skipping
/// `node_modules` and `__pycache__`).
fn newest(dirs: &[&Path]) -> Result<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            if name == "node_modules" || name == "__pycache__" {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                newest = newest.max(meta.modified()?);
            }
        }
    }
    Ok(newest)
}

/// componentize-py in its own virtual environment, installed when missing.
fn componentize_py(root: &Path) -> Result<PathBuf> {
    let venv = root.join(PY_VENV);
    let binary = venv.join("bin/componentize-py");
    if binary.exists() && has_dist_info(&venv, COMPONENTIZE_PY_VERSION)? {
        return Ok(binary);
    }
    if !venv.join("bin/python").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("python3 with venv is needed to build the Python tools")?;
    }
    pip_install(
        &venv.join("bin/python"),
        &[&format!("componentize-py=={COMPONENTIZE_PY_VERSION}")],
    )?;
    Ok(binary)
}

/// Whether the virtual environment holds componentize-py `version`.
fn has_dist_info(venv: &Path, version: &str) -> Result<bool> {
    let wanted = format!("componentize_py-{version}.dist-info");
    for entry in std::fs::read_dir(venv.join("lib"))? {
        if entry?.path().join("site-packages").join(&wanted).is_dir() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn build_python(root: &Path, wit: &Path, tool: &PolyglotTool) -> Result<()> {
    let compiler = componentize_py(root)?;
    run(Command::new(compiler)
        .arg("-d")
        .arg(wit)
        .args(["-w", "python-tool", "componentize", "app"])
        .arg("-p")
        .arg(&tool.dir)
        .arg("-p")
        .arg(root.join("tools/sdk-python"))
        .arg("-o")
        .arg(&tool.wasm))
    .with_context(|| format!("building the Python tool {}", tool.dir.display()))
}

/// componentize-js from `tools/sdk-js/package.json`, installed when missing.
fn componentize_js(root: &Path) -> Result<PathBuf> {
    let sdk = root.join("tools/sdk-js");
    let pinned = std::fs::read_to_string(sdk.join("package.json"))?;
    if !pinned.contains(&format!(
        "\"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS_VERSION}\""
    )) {
        bail!("tools/sdk-js/package.json does not pin componentize-js {COMPONENTIZE_JS_VERSION}");
    }
    let binary = sdk.join("node_modules/.bin/componentize-js");
    if binary.exists() {
        return Ok(binary);
    }
    npm_install(&sdk).context("npm (Node 20 or newer) is needed to build the JavaScript tools")?;
    Ok(binary)
}

/// A tool with a `wit/` directory of its own (a component for Wassette-style
/// hosts, whose exported functions are its tools) is built against its only
/// world; any other against the SDK's `js-tool` world.
fn build_javascript(root: &Path, wit: &Path, tool: &PolyglotTool) -> Result<()> {
    let compiler = componentize_js(root)?;
    let own_wit = tool.dir.join("wit");
    let mut command = Command::new(compiler);
    command.arg(tool.dir.join("tool.js")).arg("--wit");
    if own_wit.is_dir() {
        command.arg(with_wasi_deps(&own_wit, wit, tool)?);
    } else {
        command.arg(wit).args(["--world-name", "js-tool"]);
    }
    run(command.arg("--out").arg(&tool.wasm))
        .with_context(|| format!("building the JavaScript tool {}", tool.dir.display()))
}
