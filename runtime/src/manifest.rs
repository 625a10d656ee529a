//! Per-tool capability manifests: what one component may touch.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use stockade_host_api::egress::{Destination, EgressRule, EgressScheme, HostPattern};
use stockade_host_api::limits::MAX_MEMORY_BYTES;
use stockade_host_api::secrets::{Placement, SecretBinding};
use stockade_host_api::{CallLimits, EgressPolicy, FsGrant, FsMode, OversizePolicy, fs};

use crate::config::{ConfigError, read_toml};
use crate::secrets::SecretRef;
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
    /// Calls of this component's tools one caller may have running at once.
    pub caller_concurrency: Option<u32>,
    /// Directory grants.
    pub fs: Vec<FsGrant>,
    /// Network grant.
    pub egress: EgressPolicy,
    /// Who may see and call the tools.
    pub access: Access,
    /// Credentials injected on the tool's behalf.
    pub secrets: Vec<ManifestSecret>,
    /// How results are cleaned and flagged.
    pub output: OutputPolicy,
    /// Description-lint findings accepted for this component's tools,
    /// each exactly as the lint states it.
    pub acknowledged: Vec<String>,
    /// The grants as written (see [`GRANT_TABLES`]), which the tool lock
    /// records.
    pub grants: serde_json::Value,
}

/// The manifest tables the tool lock records: what a tool may touch, who
/// may call it, how its results are cleaned and which lint findings are
/// accepted (each can widen what a tool does or what the model reads).
pub const GRANT_TABLES: &[&str] = &["fs", "egress", "secrets", "access", "output", "lint"];

/// `[lint]`: description-lint findings the manifest accepts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLint {
    /// Findings, each exactly as `stockade check` states it.
    #[serde(default)]
    acknowledge: Vec<String>,
}

/// `[output]`: how a tool's results are cleaned before they reach the model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputPolicy {
    /// Remove terminal escapes, control and invisible or bidi characters.
    #[serde(default = "yes")]
    pub clean: bool,
    /// What to do with instruction-like text: record it in the audit
    /// (`audit`), or also tell the client (`mark`).
    #[serde(default)]
    pub suspicious: Suspicious,
}

/// `[output] suspicious`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suspicious {
    /// Record in the audit only.
    #[default]
    Audit,
    /// Record, and add a warning item to the client's result.
    Mark,
}

fn yes() -> bool {
    true
}

impl Default for OutputPolicy {
    fn default() -> Self {
        Self {
            clean: true,
            suspicious: Suspicious::Audit,
        }
    }
}

/// One `[secrets.NAME]`: where the value lives and where it goes.
#[derive(Debug, Clone)]
pub struct ManifestSecret {
    /// The Vault reference.
    pub reference: SecretRef,
    /// Placement and destinations (its `name` is NAME).
    pub binding: SecretBinding,
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
    /// Caller must hold every one of these scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When a call waits for a person's approval.
    #[serde(default)]
    pub approval: crate::approval::ApprovalMode,
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
    #[serde(default)]
    secrets: BTreeMap<String, RawSecret>,
    #[serde(default)]
    output: OutputPolicy,
    #[serde(default)]
    lint: RawLint,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    vault: String,
    destinations: Vec<String>,
    header: Option<String>,
    format: Option<String>,
    query: Option<String>,
    #[serde(default)]
    acknowledge: Vec<String>,
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
    caller_concurrency: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFsGrant {
    host: PathBuf,
    mode: String,
    max_file_size: Option<String>,
    max_files: Option<u32>,
    quota_bytes: Option<String>,
    quota_files: Option<u64>,
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
    max_requests: Option<u32>,
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
    let tree: toml::Value = read_toml(path)?;
    let grants: serde_json::Map<String, serde_json::Value> = GRANT_TABLES
        .iter()
        .filter_map(|table| {
            let value = serde_json::to_value(tree.get(table)?).ok()?;
            Some(((*table).to_owned(), value))
        })
        .collect();
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
    for (key, limit) in [
        ("limits.concurrency", raw.limits.concurrency),
        ("limits.caller_concurrency", raw.limits.caller_concurrency),
    ] {
        if limit.is_some_and(|n| !(1..=1024).contains(&n)) {
            return Err(invalid(key, "a number from 1 to 1024".into()));
        }
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
        let (max_file_size, max_files) = fs_caps(grant, mode, &key, &invalid)?;
        let (quota_bytes, quota_files) = fs_quotas(grant, mode, &key, &invalid)?;
        fs.push(FsGrant {
            guest_path: guest.clone(),
            host_dir,
            mode,
            max_file_size,
            max_files,
            quota_bytes,
            quota_files,
        });
    }

    let egress = egress(&raw.egress, &invalid)?;
    let secrets = raw
        .secrets
        .iter()
        .map(|(name, secret)| manifest_secret(name, secret, &egress, &invalid))
        .collect::<Result<Vec<_>, _>>()?;

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
        caller_concurrency: raw.limits.caller_concurrency,
        fs,
        egress,
        access: raw.access,
        secrets,
        output: raw.output,
        acknowledged: raw.lint.acknowledge,
        grants: serde_json::Value::Object(grants),
    })
}

/// What `[secrets.NAME] acknowledge` may accept.
const ACKNOWLEDGEMENTS: &[&str] = &["plain-http", "wildcard"];

fn manifest_secret(
    name: &str,
    raw: &RawSecret,
    egress: &EgressPolicy,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<ManifestSecret, ConfigError> {
    let key = |field: &str| format!("secrets.{name}.{field}");
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(invalid(
            &format!("secrets.{name}"),
            "a name of at most 64 characters of A-Z a-z 0-9 _ -".into(),
        ));
    }
    let reference = SecretRef::parse(&raw.vault).map_err(|e| invalid(&key("vault"), e))?;
    if raw.destinations.is_empty() {
        return Err(invalid(
            &key("destinations"),
            "at least one destination, e.g. [\"https://api.example.com\"]".into(),
        ));
    }
    for (index, word) in raw.acknowledge.iter().enumerate() {
        if !ACKNOWLEDGEMENTS.contains(&word.as_str()) {
            return Err(invalid(
                &key(&format!("acknowledge[{index}]")),
                "\"plain-http\" or \"wildcard\"".into(),
            ));
        }
    }
    let acknowledged = |word: &str| raw.acknowledge.iter().any(|w| w == word);
    let mut destinations = Vec::new();
    for (index, url) in raw.destinations.iter().enumerate() {
        let field = key(&format!("destinations[{index}]"));
        let rule = EgressRule::parse(url, false).map_err(|e| invalid(&field, e.to_string()))?;
        let loopback = match &rule.host {
            HostPattern::Exact(host) => {
                host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            HostPattern::Suffix(_) => false,
        };
        if rule.scheme == EgressScheme::Http && !loopback && !acknowledged("plain-http") {
            return Err(invalid(
                &field,
                format!(
                    "an https:// destination: `{url}` would send the credential in clear text \
                     (add acknowledge = [\"plain-http\"] to accept that)"
                ),
            ));
        }
        if matches!(rule.host, HostPattern::Suffix(_)) && !acknowledged("wildcard") {
            return Err(invalid(
                &field,
                format!(
                    "a single host: `{url}` would send the credential to every name under it \
                     (add acknowledge = [\"wildcard\"] to accept that)"
                ),
            ));
        }
        let allowed = match &rule.host {
            HostPattern::Exact(host) => {
                let dest = Destination {
                    scheme: rule.scheme,
                    host: host.clone(),
                    port: rule.port,
                    allow_private: false,
                };
                egress.rules.iter().any(|allow| allow.covers(&dest))
            }
            pattern => egress.rules.iter().any(|allow| {
                &allow.host == pattern && allow.scheme == rule.scheme && allow.port == rule.port
            }),
        };
        if !allowed {
            return Err(invalid(
                &field,
                format!("a destination that is also on [egress] allow (`{url}` is not)"),
            ));
        }
        destinations.push(rule);
    }
    let placement = match (&raw.header, &raw.query) {
        (Some(header), None) => {
            let header_name = http::HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| invalid(&key("header"), "a valid HTTP header name".into()))?;
            if matches!(
                header_name.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection"
            ) {
                return Err(invalid(
                    &key("header"),
                    "a header other than Host, Content-Length, Transfer-Encoding or Connection"
                        .into(),
                ));
            }
            let format = raw.format.clone().unwrap_or_else(|| "{}".into());
            if format.matches("{}").count() != 1 {
                return Err(invalid(
                    &key("format"),
                    "a template with exactly one `{}`, e.g. \"Bearer {}\"".into(),
                ));
            }
            Placement::Header {
                name: header_name,
                format,
            }
        }
        (None, Some(param)) if !param.is_empty() => {
            if raw.format.is_some() {
                return Err(invalid(
                    &key("format"),
                    "no format with `query` (the value is sent as is)".into(),
                ));
            }
            Placement::Query {
                param: param.clone(),
            }
        }
        _ => {
            return Err(invalid(
                &format!("secrets.{name}"),
                "exactly one of `header` (with an optional `format`) or `query`".into(),
            ));
        }
    };
    Ok(ManifestSecret {
        reference,
        binding: SecretBinding {
            name: name.to_owned(),
            destinations,
            placement,
        },
    })
}

/// The per-call caps of a grant: `max_file_size` and `max_files`, which
/// only a read-write grant may set.
fn fs_caps(
    grant: &RawFsGrant,
    mode: FsMode,
    key: &str,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(u64, u32), ConfigError> {
    let mut caps = (fs::DEFAULT_MAX_FILE_SIZE, fs::DEFAULT_MAX_FILES);
    if let Some(text) = &grant.max_file_size {
        let key = format!("{key}.max_file_size");
        if mode != FsMode::ReadWrite {
            return Err(invalid(&key, "only on a grant with mode = \"rw\"".into()));
        }
        let bytes = parse_size(text).map_err(|e| invalid(&key, e))?;
        caps.0 =
            within(bytes, 0, 1 << 40).ok_or_else(|| invalid(&key, "a size up to 1TiB".into()))?;
    }
    if let Some(count) = grant.max_files {
        let key = format!("{key}.max_files");
        if mode != FsMode::ReadWrite {
            return Err(invalid(&key, "only on a grant with mode = \"rw\"".into()));
        }
        caps.1 = within(count, 0, 1_000_000)
            .ok_or_else(|| invalid(&key, "a number from 0 to 1000000".into()))?;
    }
    Ok(caps)
}

/// The cumulative quotas of a grant: `quota_bytes` and `quota_files`,
/// which only a read-write grant may set.
fn fs_quotas(
    grant: &RawFsGrant,
    mode: FsMode,
    key: &str,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(Option<u64>, Option<u64>), ConfigError> {
    let writable = |key: &str| {
        if mode == FsMode::ReadWrite {
            Ok(())
        } else {
            Err(invalid(key, "only on a grant with mode = \"rw\"".into()))
        }
    };
    let mut quotas = (None, None);
    if let Some(text) = &grant.quota_bytes {
        let key = format!("{key}.quota_bytes");
        writable(&key)?;
        let bytes = parse_size(text).map_err(|e| invalid(&key, e))?;
        quotas.0 = Some(
            within(bytes, 0, 1 << 50).ok_or_else(|| invalid(&key, "a size up to 1PiB".into()))?,
        );
    }
    if let Some(count) = grant.quota_files {
        let key = format!("{key}.quota_files");
        writable(&key)?;
        quotas.1 = Some(
            within(count, 0, 1 << 32)
                .ok_or_else(|| invalid(&key, "a number from 0 to 4294967296".into()))?,
        );
    }
    Ok(quotas)
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
    if let Some(n) = raw.max_requests {
        policy.max_requests = within(n, 1, 100_000)
            .ok_or_else(|| invalid("egress.max_requests", "a count from 1 to 100000".into()))?;
    }
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
"/data" = {{ host = "data", mode = "rw", max_file_size = "10MiB", max_files = 100 }}
"/ro" = {{ host = "data", mode = "ro" }}
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
        assert_eq!((m.fs[0].max_file_size, m.fs[0].max_files), (10 << 20, 100));
        assert_eq!(m.fs[1].mode, FsMode::ReadOnly);
        assert_eq!(
            (m.fs[1].max_file_size, m.fs[1].max_files),
            (fs::DEFAULT_MAX_FILE_SIZE, fs::DEFAULT_MAX_FILES)
        );
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
            (
                "[fs]\n\"/a\" = { host = \".\", mode = \"ro\", max_files = 3 }",
                "fs.\"/a\".max_files",
            ),
            (
                "[fs]\n\"/a\" = { host = \".\", mode = \"rw\", max_files = 2000000 }",
                "fs.\"/a\".max_files",
            ),
            (
                "[fs]\n\"/a\" = { host = \".\", mode = \"ro\", max_file_size = \"1MiB\" }",
                "fs.\"/a\".max_file_size",
            ),
            (
                "[fs]\n\"/a\" = { host = \".\", mode = \"rw\", max_file_size = \"huge\" }",
                "fs.\"/a\".max_file_size",
            ),
            (
                "[fs]\n\"/a\" = { host = \".\", mode = \"rw\", max_file_size = \"2048GiB\" }",
                "fs.\"/a\".max_file_size",
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
