//! Per-tool capability manifests: what one component may touch.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use stockade_host_api::egress::EgressRule;
use stockade_host_api::limits::MAX_MEMORY_BYTES;
use stockade_host_api::{CallLimits, EgressPolicy, FsGrant, FsMode, OversizePolicy};

use crate::config::{ConfigError, read_toml};
use crate::units::{Rate, parse_duration, parse_rate, parse_size};

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct ToolManifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Label for logs (`[tool] name`, or the file stem).
    pub name: String,
    /// Component file (absolute).
    pub component: PathBuf,
    /// Pinned SHA-256 of the component, lower-case hex.
    pub sha256: String,
    /// Tools of the component to serve; `None` serves all.
    pub expose: Option<Vec<String>>,
    /// Prefix added to every served tool name, to keep components apart.
    pub prefix: String,
    /// Per-call bounds.
    pub limits: CallLimits,
    /// Calls per caller per window.
    pub rate: Option<Rate>,
    /// Calls of this component's tools that may run at once.
    pub concurrency: Option<u32>,
    /// Directory grants.
    pub fs: Vec<FsGrant>,
    /// Network grant.
    pub egress: EgressPolicy,
    /// Who may see and call the tools.
    pub access: Access,
}

/// `[access]`: who may see and call a tool. Empty lists mean no restriction
/// on that dimension.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// Caller must be in one of these groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Caller's client must be one of these.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Caller's user must be one of these.
    #[serde(default)]
    pub users: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    tool: RawTool,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    fs: BTreeMap<String, RawFsGrant>,
    #[serde(default)]
    egress: RawEgress,
    #[serde(default)]
    access: Access,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    #[serde(default)]
    name: Option<String>,
    component: PathBuf,
    sha256: String,
    #[serde(default)]
    expose: Option<Vec<String>>,
    #[serde(default)]
    prefix: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<u64>,
    memory: Option<String>,
    timeout: Option<String>,
    max_output: Option<String>,
    on_oversize: Option<String>,
    stdio: Option<String>,
    rate: Option<String>,
    concurrency: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFsGrant {
    host: PathBuf,
    mode: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    #[serde(default)]
    allow: Vec<RawAllow>,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    max_request: Option<String>,
    max_response: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAllow {
    Url(String),
    Entry(RawAllowEntry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllowEntry {
    url: String,
    #[serde(default)]
    private: bool,
}

/// Reads and validates one manifest.
pub fn load(path: &Path) -> Result<ToolManifest, ConfigError> {
    let raw: RawManifest = read_toml(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let invalid = |key: &str, expected: String| ConfigError::Invalid {
        path: path.to_owned(),
        key: key.to_owned(),
        expected,
    };

    let name = match raw.tool.name {
        Some(name) => name,
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tool".into()),
    };
    let sha256 = raw.tool.sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            "tool.sha256",
            "64 hex digits (the SHA-256 of the component file)".into(),
        ));
    }
    if let Some(expose) = &raw.tool.expose
        && expose.is_empty()
    {
        return Err(invalid(
            "tool.expose",
            "at least one tool name (omit the key to serve all)".into(),
        ));
    }

    let prefix_ok = raw.tool.prefix.len() <= 64
        && raw
            .tool
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !prefix_ok {
        return Err(invalid(
            "tool.prefix",
            "at most 64 characters of A-Z a-z 0-9 _ . -".into(),
        ));
    }

    let limits = limits(&raw.limits, &invalid)?;
    let rate = raw
        .limits
        .rate
        .as_deref()
        .map(parse_rate)
        .transpose()
        .map_err(|e| invalid("limits.rate", e))?;
    if let Some(n) = raw.limits.concurrency
        && !(1..=1024).contains(&n)
    {
        return Err(invalid(
            "limits.concurrency",
            "a number from 1 to 1024".into(),
        ));
    }

    let mut fs = Vec::new();
    for (guest, grant) in &raw.fs {
        let key = format!("fs.\"{guest}\"");
        if !is_clean_absolute(guest) {
            return Err(invalid(
                &key,
                "an absolute guest path without `.`, `..` or a trailing `/`, e.g. \"/data\"".into(),
            ));
        }
        let mode = match grant.mode.as_str() {
            "ro" => FsMode::ReadOnly,
            "rw" => FsMode::ReadWrite,
            _ => return Err(invalid(&format!("{key}.mode"), "\"ro\" or \"rw\"".into())),
        };
        let host_dir = base.join(&grant.host).canonicalize().map_err(|err| {
            invalid(
                &format!("{key}.host"),
                format!("an existing directory ({err})"),
            )
        })?;
        if !host_dir.is_dir() {
            return Err(invalid(
                &format!("{key}.host"),
                "a directory, not a file".into(),
            ));
        }
        fs.push(FsGrant {
            guest_path: guest.clone(),
            host_dir,
            mode,
        });
    }

    let egress = egress(&raw.egress, &invalid)?;

    Ok(ToolManifest {
        path: path.to_owned(),
        name,
        component: base.join(&raw.tool.component),
        sha256,
        expose: raw.tool.expose,
        prefix: raw.tool.prefix,
        limits,
        rate,
        concurrency: raw.limits.concurrency,
        fs,
        egress,
        access: raw.access,
    })
}

fn is_clean_absolute(path: &str) -> bool {
    path.len() > 1
        && path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains("//")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

fn within<T: PartialOrd + Copy>(value: T, low: T, high: T) -> Option<T> {
    (value >= low && value <= high).then_some(value)
}

fn limits(
    raw: &RawLimits,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<CallLimits, ConfigError> {
    let mut limits = CallLimits::default();
    if let Some(fuel) = raw.fuel {
        limits.fuel = within(fuel, 1_000, 1_000_000_000_000)
            .ok_or_else(|| invalid("limits.fuel", "a number from 1000 to 1000000000000".into()))?;
    }
    if let Some(text) = &raw.memory {
        let bytes = parse_size(text).map_err(|e| invalid("limits.memory", e))?;
        limits.memory_bytes = within(bytes, 1 << 20, MAX_MEMORY_BYTES)
            .ok_or_else(|| invalid("limits.memory", "a size from 1MiB to 1GiB".into()))?;
    }
    if let Some(text) = &raw.timeout {
        let timeout = parse_duration(text).map_err(|e| invalid("limits.timeout", e))?;
        limits.timeout = within(timeout, Duration::from_millis(10), Duration::from_secs(600))
            .ok_or_else(|| invalid("limits.timeout", "a duration from 10ms to 10m".into()))?;
    }
    if let Some(text) = &raw.max_output {
        let bytes = parse_size(text).map_err(|e| invalid("limits.max_output", e))?;
        limits.max_output_bytes = within(bytes, 1, 64 << 20)
            .ok_or_else(|| invalid("limits.max_output", "a size from 1B to 64MiB".into()))?;
    }
    if let Some(text) = &raw.stdio {
        let bytes = parse_size(text).map_err(|e| invalid("limits.stdio", e))?;
        limits.max_stdio_bytes = within(bytes, 0, 16 << 20)
            .ok_or_else(|| invalid("limits.stdio", "a size up to 16MiB".into()))?
            as usize;
    }
    if let Some(text) = &raw.on_oversize {
        limits.oversize = match text.as_str() {
            "refuse" => OversizePolicy::Refuse,
            "truncate" => OversizePolicy::Truncate,
            _ => {
                return Err(invalid(
                    "limits.on_oversize",
                    "\"refuse\" or \"truncate\"".into(),
                ));
            }
        };
    }
    Ok(limits)
}

fn egress(
    raw: &RawEgress,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<EgressPolicy, ConfigError> {
    let mut policy = EgressPolicy::default();
    for (index, entry) in raw.allow.iter().enumerate() {
        let (url, private) = match entry {
            RawAllow::Url(url) => (url.as_str(), false),
            RawAllow::Entry(entry) => (entry.url.as_str(), entry.private),
        };
        let rule = EgressRule::parse(url, private)
            .map_err(|e| invalid(&format!("egress.allow[{index}]"), e.to_string()))?;
        policy.rules.push(rule);
    }
    let duration = |key: &str, text: &Option<String>, into: &mut Duration| {
        if let Some(text) = text {
            let d = parse_duration(text).map_err(|e| invalid(key, e))?;
            *into = within(d, Duration::from_millis(1), Duration::from_secs(300))
                .ok_or_else(|| invalid(key, "a duration from 1ms to 5m".into()))?;
        }
        Ok::<_, ConfigError>(())
    };
    duration(
        "egress.connect_timeout",
        &raw.connect_timeout,
        &mut policy.connect_timeout,
    )?;
    duration(
        "egress.read_timeout",
        &raw.read_timeout,
        &mut policy.read_timeout,
    )?;
    let size = |key: &str, text: &Option<String>, into: &mut u64| {
        if let Some(text) = text {
            let n = parse_size(text).map_err(|e| invalid(key, e))?;
            *into =
                within(n, 0, 1 << 30).ok_or_else(|| invalid(key, "a size up to 1GiB".into()))?;
        }
        Ok::<_, ConfigError>(())
    };
    size(
        "egress.max_request",
        &raw.max_request,
        &mut policy.max_request_bytes,
    )?;
    size(
        "egress.max_response",
        &raw.max_response,
        &mut policy.max_response_bytes,
    )?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("tool.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("stockade-manifest-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_a_full_manifest() {
        let dir = scratch("full");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let path = write(
            &dir,
            &format!(
                r#"
[tool]
component = "x.wasm"
sha256 = "{DIGEST}"
expose = ["a"]
[limits]
fuel = 5000
memory = "8MiB"
timeout = "2s"
max_output = "1KiB"
on_oversize = "truncate"
rate = "10/min"
concurrency = 2
[fs]
"/data" = {{ host = "data", mode = "rw" }}
[egress]
allow = ["https://api.example.com", {{ url = "http://127.0.0.1:8080", private = true }}]
[access]
groups = ["ops"]
"#
            ),
        );
        let m = load(&path).unwrap();
        assert_eq!(m.limits.memory_bytes, 8 << 20);
        assert_eq!(m.limits.oversize, OversizePolicy::Truncate);
        assert_eq!(m.fs[0].mode, FsMode::ReadWrite);
        assert_eq!(m.egress.rules.len(), 2);
        assert!(m.egress.rules[1].allow_private);
        assert_eq!(m.access.groups, vec!["ops".to_string()]);
        assert_eq!(m.name, "tool");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = scratch("errors");
        let cases = [
            ("[limits]\nmemory = \"lots\"", "limits.memory"),
            ("[limits]\nmemory = \"8GiB\"", "limits.memory"),
            ("[limits]\ntimeout = \"0ms\"", "limits.timeout"),
            ("[limits]\nbogus = 1", "bogus"),
            (
                "[fs]\n\"/a/../b\" = { host = \".\", mode = \"ro\" }",
                "fs.\"/a/../b\"",
            ),
            (
                "[fs]\n\"/a\" = { host = \".\", mode = \"write\" }",
                "fs.\"/a\".mode",
            ),
            (
                "[fs]\n\"/a\" = { host = \"missing\", mode = \"ro\" }",
                "fs.\"/a\".host",
            ),
            ("[egress]\nallow = [\"ftp://x.io\"]", "egress.allow[0]"),
        ];
        for (body, key) in cases {
            let text = format!("[tool]\ncomponent = \"x.wasm\"\nsha256 = \"{DIGEST}\"\n{body}\n");
            let path = write(&dir, &text);
            let err = load(&path).unwrap_err().to_string();
            assert!(err.contains("tool.toml"), "{err}");
            assert!(err.contains(key), "{key} not in: {err}");
        }
        let path = write(&dir, "[tool]\ncomponent = \"x.wasm\"\nsha256 = \"abc\"\n");
        assert!(load(&path).unwrap_err().to_string().contains("tool.sha256"));
    }
}
