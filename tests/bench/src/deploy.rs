//! Where the measured programs live, and the configs and manifests the
//! benchmark writes for them into a scratch directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The built programs and components under test.
pub struct Artifacts {
    /// `stockade` (release).
    pub stockade: PathBuf,
    /// The native rmcp baseline server.
    pub native_server: PathBuf,
    /// The raw JSON-line floor server.
    pub floor_server: PathBuf,
    /// Directory of the release wasm components.
    pub wasm_dir: PathBuf,
}

impl Artifacts {
    /// Finds everything next to this benchmark in the cargo target directory.
    pub fn locate() -> Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let bin_dir = exe.parent().context("the executable has no directory")?;
        let target = bin_dir.parent().context("no target directory")?;
        let found = Self {
            stockade: bin_dir.join("stockade"),
            native_server: bin_dir.join("native-mcp-server"),
            floor_server: bin_dir.join("floor-server"),
            wasm_dir: target.join("wasm32-wasip2/release"),
        };
        for path in [&found.stockade, &found.native_server, &found.floor_server] {
            if !path.is_file() {
                bail!(
                    "{} is missing: run `cargo xtask bench` (it builds everything first)",
                    path.display()
                );
            }
        }
        for stem in ["text_kit", "files", "fetch"] {
            found.wasm(stem)?;
        }
        Ok(found)
    }

    /// Path of a built component, e.g. `wasm("text_kit")`.
    pub fn wasm(&self, stem: &str) -> Result<PathBuf> {
        let path = self.wasm_dir.join(format!("{stem}.wasm"));
        if !path.is_file() {
            bail!("{} is missing: run `cargo xtask build`", path.display());
        }
        Ok(path)
    }
}

/// SHA-256 of a file, lower-case hex, as a manifest pins it.
pub fn sha256_of(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// A private directory for one run's files, removed when dropped.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates a fresh directory under the system temporary directory.
    pub fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("stockade-bench-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path inside the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TOML basic string (JSON string syntax is a subset of it).
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn path_value(path: &Path) -> String {
    quoted(&path.to_string_lossy())
}

/// Limits of the demo's text-kit manifest.
const TEXT_KIT_LIMITS: &str =
    "[limits]\nfuel = 200_000_000\nmemory = \"32MiB\"\ntimeout = \"2s\"\nmax_output = \"256KiB\"\n";

/// Writes the demo's three example tools (same grants and limits as
/// `examples/`, host directories inside the scratch directory) into `dir`
/// and returns the manifest file names.
pub fn write_examples(artifacts: &Artifacts, dir: &Path) -> Result<Vec<String>> {
    let data = dir.join("data");
    let workspace = dir.join("workspace");
    std::fs::create_dir_all(data.join("notes"))?;
    std::fs::create_dir_all(&workspace)?;
    std::fs::write(data.join("README.txt"), "sample data\n")?;

    let text_kit = artifacts.wasm("text_kit")?;
    std::fs::write(
        dir.join("text-kit.toml"),
        format!(
            "[tool]\nname = \"text-kit\"\ncomponent = {}\nsha256 = \"{}\"\n\n{TEXT_KIT_LIMITS}",
            path_value(&text_kit),
            sha256_of(&text_kit)?
        ),
    )?;

    let files = artifacts.wasm("files")?;
    std::fs::write(
        dir.join("files.toml"),
        format!(
            "[tool]\nname = \"files\"\ncomponent = {}\nsha256 = \"{}\"\n\n\
             [limits]\nfuel = 500_000_000\nmemory = \"64MiB\"\ntimeout = \"5s\"\n\
             max_output = \"256KiB\"\nconcurrency = 8\n\n\
             [fs]\n\"/data\" = {{ host = {}, mode = \"ro\" }}\n\
             \"/workspace\" = {{ host = {}, mode = \"rw\" }}\n\n\
             [access]\ngroups = [\"analysts\"]\n",
            path_value(&files),
            sha256_of(&files)?,
            path_value(&data),
            path_value(&workspace)
        ),
    )?;

    let fetch = artifacts.wasm("fetch")?;
    std::fs::write(
        dir.join("fetch.toml"),
        format!(
            "[tool]\nname = \"fetch\"\ncomponent = {}\nsha256 = \"{}\"\n\n\
             [limits]\nfuel = 500_000_000\nmemory = \"64MiB\"\ntimeout = \"10s\"\n\
             max_output = \"512KiB\"\nrate = \"60/min\"\n\n\
             [egress]\nallow = [\"https://example.com\", \"https://*.wikipedia.org\"]\n",
            path_value(&fetch),
            sha256_of(&fetch)?
        ),
    )?;
    Ok(vec![
        "text-kit.toml".into(),
        "files.toml".into(),
        "fetch.toml".into(),
    ])
}

/// Writes a manifest `<name>.toml` for component `stem` with the default
/// limits and no grants into `dir`, and returns its file name.
pub fn write_single(artifacts: &Artifacts, dir: &Path, name: &str, stem: &str) -> Result<String> {
    let wasm = artifacts.wasm(stem)?;
    let file = format!("{name}.toml");
    std::fs::write(
        dir.join(&file),
        format!(
            "[tool]\nname = {}\ncomponent = {}\nsha256 = \"{}\"\n",
            quoted(name),
            path_value(&wasm),
            sha256_of(&wasm)?
        ),
    )?;
    Ok(file)
}

/// Writes `count` manifests of text-kit into `dir`, each serving its tools
/// under its own prefix (`t0.`, `t1.`, ...), and returns their file names.
pub fn write_many_text_kits(
    artifacts: &Artifacts,
    dir: &Path,
    count: usize,
) -> Result<Vec<String>> {
    let text_kit = artifacts.wasm("text_kit")?;
    let digest = sha256_of(&text_kit)?;
    let mut names = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("text-kit-{i}.toml");
        std::fs::write(
            dir.join(&name),
            format!(
                "[tool]\nname = \"text-kit-{i}\"\ncomponent = {}\nsha256 = \"{digest}\"\n\
                 prefix = \"t{i}.\"\n\n{TEXT_KIT_LIMITS}",
                path_value(&text_kit)
            ),
        )?;
        names.push(name);
    }
    Ok(names)
}

/// Writes `count` distinct components into `dir`: text-kit, each copy
/// with a custom section of its own appended (so each has its own digest
/// and is compiled and kept on its own), and a manifest for each, under
/// its own prefix. Returns the manifest file names.
pub fn write_distinct_text_kits(
    artifacts: &Artifacts,
    dir: &Path,
    count: usize,
) -> Result<Vec<String>> {
    let original = std::fs::read(artifacts.wasm("text_kit")?)?;
    let mut names = Vec::with_capacity(count);
    for i in 0..count {
        let mut bytes = original.clone();
        append_custom_section(&mut bytes, "stockade-bench-copy", i.to_string().as_bytes());
        let component = dir.join(format!("text_kit_copy_{i}.wasm"));
        std::fs::write(&component, &bytes)?;
        let name = format!("text-kit-copy-{i}.toml");
        std::fs::write(
            dir.join(&name),
            format!(
                "[tool]\nname = \"text-kit-copy-{i}\"\ncomponent = {}\nsha256 = \"{}\"\n\
                 prefix = \"c{i}.\"\n\n{TEXT_KIT_LIMITS}",
                path_value(&component),
                hex::encode(Sha256::digest(&bytes))
            ),
        )?;
        names.push(name);
    }
    Ok(names)
}

/// Appends a custom section (id 0) named `name` holding `payload`: valid at
/// the end of a module or a component, and ignored by everything.
fn append_custom_section(wasm: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut body = Vec::new();
    leb128(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    wasm.push(0);
    leb128(wasm, body.len());
    wasm.extend_from_slice(&body);
}

/// Unsigned LEB128, as wasm encodes sizes.
fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Writes `<dir>/<file>`: a `stockade.toml` serving `manifests` with its
/// compiled-component cache in `cache_dir`.
pub fn write_config(
    dir: &Path,
    file: &str,
    manifests: &[String],
    cache_dir: &Path,
) -> Result<PathBuf> {
    let mut text = String::from("tools = [");
    for (i, m) in manifests.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(&quoted(m));
    }
    text.push_str("]\n\n[server]\nname = \"stockade-bench\"\n");
    writeln!(text, "cache_dir = {}", path_value(cache_dir))?;
    text.push_str(
        "max_concurrent_calls = 32\n\n[stdio]\nclient = \"bench\"\ngroups = [\"analysts\"]\n",
    );
    let path = dir.join(file);
    std::fs::write(&path, text)?;
    Ok(path)
}
