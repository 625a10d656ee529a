//! `stockade.toml`: the runtime's own configuration, which names the tool
//! manifests to serve.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest::{self, ToolManifest};
use crate::secrets::{VaultAuth, VaultSettings};
use crate::units::{parse_duration, parse_size};

/// A problem with a config or manifest file. Every message names the file
/// and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and position).
        message: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("{}: `{key}`: expected {expected}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: String,
        /// What would have been accepted.
        expected: String,
    },
}

/// The parsed `stockade.toml`.
#[derive(Debug, Clone)]
pub struct StockadeConfig {
    /// Server identity and shared settings.
    pub server: ServerSettings,
    /// The stdio caller's identity.
    pub stdio: StdioSettings,
    /// Tool manifests, in the order given.
    pub tools: Vec<ToolManifest>,
    /// Where tool secrets are read, when configured.
    pub vault: Option<VaultSettings>,
    /// How credentials are scrubbed.
    pub redaction: RedactionSettings,
    /// The HTTP listener.
    pub http: crate::http::HttpSettings,
    /// How HTTP callers authenticate.
    pub auth: crate::auth::AuthSettings,
    /// `[audit]`.
    pub audit: crate::audit::AuditSettings,
    /// `[admin]`.
    pub admin: crate::admin::AdminSettings,
    /// `[alerts]`.
    pub alerts: crate::alerts::AlertSettings,
    /// `[lock]`.
    pub lock: crate::lock::LockSettings,
    /// `[control]`.
    pub control: crate::control::ControlSettings,
    /// `[approval]`.
    pub approval: crate::approval::ApprovalSettings,
}

/// `[redaction]`: how injected credentials are scrubbed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionSettings {
    /// K: every run of this many consecutive characters of a credential is
    /// scrubbed (never more than half a value; values shorter than 2K are
    /// refused).
    #[serde(default = "default_min_run")]
    pub min_run: usize,
}

fn default_min_run() -> usize {
    stockade_host_api::secrets::redact::DEFAULT_MIN_RUN
}

impl Default for RedactionSettings {
    fn default() -> Self {
        Self {
            min_run: default_min_run(),
        }
    }
}

/// `[vault]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    address: String,
    ca_bundle: Option<PathBuf>,
    auth: String,
    token_file: Option<PathBuf>,
    role_id_file: Option<PathBuf>,
    secret_id_file: Option<PathBuf>,
    #[serde(default = "default_approle_mount")]
    approle_mount: String,
    cache_ttl: Option<String>,
    timeout: Option<String>,
}

fn default_approle_mount() -> String {
    "approle".into()
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Name reported to clients.
    #[serde(default = "default_name")]
    pub name: String,
    /// Directory for compiled components (relative to this file).
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Calls that may run at once, across all tools.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_calls: u32,
    /// Slots one tool's calls may hold at once (default: half of
    /// `max_concurrent_calls`, at least one).
    #[serde(default)]
    pub tool_share: Option<u32>,
    /// Deepest chain of Stockade calls served: a request whose call depth
    /// (from a tool's egress, through another service, back to Stockade)
    /// reaches this is refused.
    #[serde(default = "default_max_call_depth")]
    pub max_call_depth: u32,
    /// `idempotency_window` as written, e.g. `"24h"`.
    #[serde(default, rename = "idempotency_window")]
    idempotency_window_text: Option<String>,
    /// How long a destructive call's result is kept for repeats of its
    /// idempotency key.
    #[serde(skip, default = "default_idempotency_window")]
    pub idempotency_window: std::time::Duration,
    /// `caller_budget` as written, e.g. `"5000/day"`.
    #[serde(default, rename = "caller_budget")]
    caller_budget_text: Option<String>,
    /// Calls one caller may make across all tools per window.
    #[serde(skip)]
    pub caller_budget: Option<crate::units::Rate>,
    /// Calls one caller may have running at once across all tools.
    #[serde(default)]
    pub caller_concurrency: Option<u32>,
    /// `queue_timeout` as written, e.g. `"5s"`.
    #[serde(default, rename = "queue_timeout")]
    queue_timeout_text: Option<String>,
    /// Longest a call waits for a free sandbox slot before it is refused
    /// as busy (its own timeout starts once it has one).
    #[serde(skip)]
    pub queue_timeout: std::time::Duration,
    /// `shutdown_grace` as written, e.g. `"10s"`.
    #[serde(default, rename = "shutdown_grace")]
    shutdown_grace_text: Option<String>,
    /// How long calls in flight may run on after SIGTERM, SIGINT or the
    /// end of input before they are cancelled.
    #[serde(skip)]
    pub shutdown_grace: std::time::Duration,
    /// Refuse to serve unless the kernel enforces every confinement rule
    /// (default: serve with a warning).
    #[serde(default)]
    pub require_confinement: bool,
}

/// `[stdio]`: who the local stdio client is, for access checks, and the
/// bounds of its input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdioSettings {
    /// `max_message` as written, e.g. `"16MiB"`.
    #[serde(default, rename = "max_message")]
    max_message_text: Option<String>,
    /// Longest input line (one message), in bytes; longer ones are
    /// answered with an error and skipped.
    #[serde(skip)]
    pub max_message: usize,
    /// Deepest nesting of arrays and objects a message may have.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Requests that may be in flight at once; past it, input is not read.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Client identity given to the stdio peer (default `stdio`).
    #[serde(default)]
    pub client: Option<String>,
    /// User name given to the stdio peer.
    #[serde(default)]
    pub user: Option<String>,
    /// Groups the stdio peer belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_max_message() -> usize {
    16 << 20
}

fn default_max_depth() -> usize {
    64
}

fn default_max_in_flight() -> usize {
    64
}

impl Default for StdioSettings {
    fn default() -> Self {
        Self {
            max_message_text: None,
            max_message: default_max_message(),
            max_depth: default_max_depth(),
            max_in_flight: default_max_in_flight(),
            client: None,
            user: None,
            groups: Vec::new(),
        }
    }
}

fn default_name() -> String {
    "stockade".into()
}

fn default_cache_dir() -> PathBuf {
    PathBuf::from(".stockade/cache")
}

fn default_concurrency() -> u32 {
    64
}

fn default_max_call_depth() -> u32 {
    4
}

fn default_shutdown_grace() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

fn default_idempotency_window() -> std::time::Duration {
    std::time::Duration::from_secs(24 * 3600)
}

fn default_queue_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            name: default_name(),
            cache_dir: default_cache_dir(),
            max_concurrent_calls: default_concurrency(),
            tool_share: None,
            max_call_depth: default_max_call_depth(),
            caller_budget_text: None,
            caller_budget: None,
            idempotency_window_text: None,
            idempotency_window: default_idempotency_window(),
            caller_concurrency: None,
            queue_timeout_text: None,
            queue_timeout: default_queue_timeout(),
            shutdown_grace_text: None,
            shutdown_grace: default_shutdown_grace(),
            require_confinement: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    tools: Vec<PathBuf>,
    #[serde(default)]
    server: ServerSettings,
    #[serde(default)]
    stdio: StdioSettings,
    vault: Option<RawVault>,
    #[serde(default)]
    redaction: RedactionSettings,
    #[serde(default)]
    http: crate::http::RawHttp,
    #[serde(default)]
    auth: crate::auth::RawAuth,
    #[serde(default)]
    audit: crate::audit::RawAudit,
    #[serde(default)]
    admin: crate::admin::RawAdmin,
    #[serde(default)]
    alerts: crate::alerts::RawAlerts,
    #[serde(default)]
    lock: crate::lock::RawLock,
    #[serde(default)]
    control: crate::control::RawControl,
    #[serde(default)]
    approval: crate::approval::RawApproval,
}

/// Reads a TOML file into `T`, naming the file in every error.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    let parse_error = |err: toml::de::Error| ConfigError::Parse {
        path: path.to_owned(),
        message: parse_message(&text, &err),
    };
    let tree: toml::Value = toml::from_str(&text).map_err(parse_error)?;
    if let Some(key) = crate::secrets::literal::find(&tree) {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            key,
            expected: "a reference to a secret in Vault, not a literal credential \
                       (put the value in Vault and name it in [secrets.NAME] vault = \"mount/data/path#key\")"
                .into(),
        });
    }
    toml::from_str(&text).map_err(parse_error)
}

/// A TOML error as `line L, column C: message`, without the source line the
/// parser would quote and with every quoted value in the message masked:
/// the offending value may be a credential.
fn parse_message(text: &str, err: &toml::de::Error) -> String {
    let place = err.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
        format!("line {line}, column {column}: ")
    });
    format!(
        "{}{}",
        place.unwrap_or_default(),
        mask_quoted(err.message().trim_end())
    )
}

/// `message` with the text between every pair of double quotes replaced
/// by `…`.
fn mask_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (index, piece) in message.split('"').enumerate() {
        if index > 0 {
            out.push('"');
        }
        out.push_str(if index % 2 == 1 { "…" } else { piece });
    }
    out
}

impl StockadeConfig {
    /// Reads `stockade.toml` and every manifest it names. Returns the config
    /// with the manifests that parsed, plus the errors of those that did not.
    pub fn load(path: &Path) -> Result<(Self, Vec<ConfigError>), ConfigError> {
        let raw: RawConfig = read_toml(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let invalid = |key: &str, expected: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            expected: expected.to_owned(),
        };
        if raw.server.max_concurrent_calls == 0 || raw.server.max_concurrent_calls > 4096 {
            return Err(invalid(
                "server.max_concurrent_calls",
                "a number from 1 to 4096",
            ));
        }
        let runs = stockade_host_api::secrets::redact::MIN_RUN_FLOOR
            ..=stockade_host_api::secrets::redact::MIN_RUN_CEILING;
        if !runs.contains(&raw.redaction.min_run) {
            return Err(invalid(
                "redaction.min_run",
                &format!("a number from {} to {}", runs.start(), runs.end()),
            ));
        }
        if raw
            .server
            .tool_share
            .is_some_and(|share| share == 0 || share > raw.server.max_concurrent_calls)
        {
            return Err(invalid(
                "server.tool_share",
                "a number from 1 to server.max_concurrent_calls",
            ));
        }
        if raw.tools.is_empty() {
            return Err(invalid("tools", "at least one manifest path"));
        }
        let mut server = raw.server;
        server.cache_dir = base.join(&server.cache_dir);
        server.queue_timeout = match &server.queue_timeout_text {
            None => default_queue_timeout(),
            Some(text) => parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| invalid("server.queue_timeout", "a duration such as \"5s\""))?,
        };
        server.shutdown_grace = match &server.shutdown_grace_text {
            None => default_shutdown_grace(),
            Some(text) => parse_duration(text)
                .ok()
                .filter(|d| *d <= std::time::Duration::from_secs(300))
                .ok_or_else(|| {
                    invalid(
                        "server.shutdown_grace",
                        "a duration from 0s to 5m, such as \"10s\"",
                    )
                })?,
        };
        server.idempotency_window = match &server.idempotency_window_text {
            None => default_idempotency_window(),
            Some(text) => parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero() && *d <= std::time::Duration::from_secs(7 * 24 * 3600))
                .ok_or_else(|| {
                    invalid(
                        "server.idempotency_window",
                        "a duration from 1s to 7d, such as \"24h\"",
                    )
                })?,
        };
        server.caller_budget = match &server.caller_budget_text {
            None => None,
            Some(text) => Some(
                crate::units::parse_rate(text).map_err(|e| invalid("server.caller_budget", &e))?,
            ),
        };
        if server
            .caller_concurrency
            .is_some_and(|n| n == 0 || n > server.max_concurrent_calls)
        {
            return Err(invalid(
                "server.caller_concurrency",
                "a number from 1 to server.max_concurrent_calls",
            ));
        }
        if !(1..=32).contains(&server.max_call_depth) {
            return Err(invalid("server.max_call_depth", "a number from 1 to 32"));
        }
        let mut stdio = raw.stdio;
        stdio.max_message = match &stdio.max_message_text {
            None => default_max_message(),
            Some(text) => parse_size(text)
                .ok()
                .filter(|n| (1 << 10..=1 << 30).contains(n))
                .ok_or_else(|| invalid("stdio.max_message", "a size from 1KiB to 1GiB"))?
                as usize,
        };
        if !(8..=128).contains(&stdio.max_depth) {
            return Err(invalid("stdio.max_depth", "a number from 8 to 128"));
        }
        if !(1..=10_000).contains(&stdio.max_in_flight) {
            return Err(invalid("stdio.max_in_flight", "a number from 1 to 10000"));
        }
        let mut tools = Vec::new();
        let mut errors = Vec::new();
        for manifest_path in &raw.tools {
            match manifest::load(&base.join(manifest_path)) {
                Ok(manifest) => tools.push(manifest),
                Err(err) => errors.push(err),
            }
        }
        let vault = raw
            .vault
            .as_ref()
            .map(|v| vault_settings(v, base, &invalid))
            .transpose()?;
        let http = raw.http.check(base, &invalid)?;
        let auth = raw.auth.check(base, &invalid)?;
        let audit = raw.audit.check(base, &invalid)?;
        let admin = raw.admin.check(&invalid)?;
        let alerts = raw.alerts.check(&invalid)?;
        let lock = raw.lock.check(base, &invalid)?;
        let control = raw.control.check(base);
        let approval = raw.approval.check(&invalid)?;
        let config = Self {
            approval,
            control,
            lock,
            audit,
            admin,
            alerts,
            http,
            auth,
            vault,
            server,
            stdio,
            redaction: raw.redaction,
            tools,
        };
        Ok((config, errors))
    }
}

/// `text` as a URL that is https, or plain http to a loopback address;
/// otherwise the error for `key` (with `example` of a good one).
pub fn secure_url(
    key: &str,
    text: &str,
    example: &str,
    invalid: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| invalid(key, &format!("a URL such as \"{example}\"")))?;
    let loopback = matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if loopback => Ok(uri),
        _ => Err(invalid(
            key,
            "an https:// URL (plain http only for a loopback address)",
        )),
    }
}

/// `path` once it has been opened for reading; otherwise the error for
/// `key` naming the file and why.
pub fn readable(
    key: &str,
    path: PathBuf,
    invalid: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<PathBuf, ConfigError> {
    match std::fs::File::open(&path) {
        Ok(_) => Ok(path),
        Err(err) => Err(invalid(
            key,
            &format!("a readable file ({}: {err})", path.display()),
        )),
    }
}

fn vault_settings(
    raw: &RawVault,
    base: &Path,
    invalid: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<VaultSettings, ConfigError> {
    secure_url(
        "vault.address",
        &raw.address,
        "https://vault.internal:8200",
        invalid,
    )?;
    // Every file is opened now, so a missing or unreadable one is named
    // at start (and by `stockade check`), not at the first call.
    let file = |key: &str, value: &Option<PathBuf>| {
        let path = value
            .as_ref()
            .map(|p| base.join(p))
            .ok_or_else(|| invalid(key, "a file path"))?;
        readable(key, path, invalid)
    };
    let auth = match raw.auth.as_str() {
        "token" => VaultAuth::TokenFile(file("vault.token_file", &raw.token_file)?),
        "approle" => VaultAuth::AppRole {
            mount: raw.approle_mount.clone(),
            role_id_file: file("vault.role_id_file", &raw.role_id_file)?,
            secret_id_file: file("vault.secret_id_file", &raw.secret_id_file)?,
        },
        _ => return Err(invalid("vault.auth", "\"token\" or \"approle\"")),
    };
    let duration = |key: &str, text: &Option<String>, default: u64| match text {
        None => Ok(std::time::Duration::from_secs(default)),
        Some(text) => parse_duration(text).map_err(|e| invalid(key, &e)),
    };
    Ok(VaultSettings {
        address: raw.address.clone(),
        ca_bundle: raw
            .ca_bundle
            .as_ref()
            .map(|p| readable("vault.ca_bundle", base.join(p), invalid))
            .transpose()?,
        auth,
        cache_ttl: duration("vault.cache_ttl", &raw.cache_ttl, 30)?,
        timeout: duration("vault.timeout", &raw.timeout, 5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_place_and_never_print_a_value() {
        let text = "[vault]\ntoken_file = 1\n[x]\napi_key = \"Zx81kQp0/Lm2Vn7Tr4Yw9\"\nnope\n";
        let err = toml::from_str::<toml::Value>(text).unwrap_err();
        let message = parse_message(text, &err);
        assert!(message.starts_with("line 5, column"), "{message}");
        assert!(!message.contains("Zx81"), "{message}");
        let text = "port = \"Zx81kQp0/Lm2Vn7Tr4Yw9\"\n";
        let err = toml::from_str::<std::collections::HashMap<String, u16>>(text).unwrap_err();
        let message = parse_message(text, &err);
        assert!(message.starts_with("line 1, column 8"), "{message}");
        assert!(!message.contains("Zx81"), "{message}");
    }
}
