//! `stockade.toml`: the runtime's own configuration, which names the tool
//! manifests to serve.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest::{self, ToolManifest};

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
}

/// `[stdio]`: who the local stdio client is, for access checks.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StdioSettings {
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

fn default_name() -> String {
    "stockade".into()
}

fn default_cache_dir() -> PathBuf {
    PathBuf::from(".stockade/cache")
}

fn default_concurrency() -> u32 {
    64
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            name: default_name(),
            cache_dir: default_cache_dir(),
            max_concurrent_calls: default_concurrency(),
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
}

/// Reads a TOML file into `T`, naming the file in every error.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    toml::from_str(&text).map_err(|err| ConfigError::Parse {
        path: path.to_owned(),
        message: err.to_string().trim_end().to_owned(),
    })
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
        if raw.tools.is_empty() {
            return Err(invalid("tools", "at least one manifest path"));
        }
        let mut server = raw.server;
        server.cache_dir = base.join(&server.cache_dir);
        let mut tools = Vec::new();
        let mut errors = Vec::new();
        for manifest_path in &raw.tools {
            match manifest::load(&base.join(manifest_path)) {
                Ok(manifest) => tools.push(manifest),
                Err(err) => errors.push(err),
            }
        }
        let config = Self {
            server,
            stdio: raw.stdio,
            tools,
        };
        Ok((config, errors))
    }
}
