//! `stockade import-policy`: a Wassette `policy.yaml` as a Stockade
//! manifest. Storage grants become `[fs]` grants at the same path (`read`
//! read-only, `write` read-write), network hosts become `[egress]` allow
//! entries (HTTPS unless the entry names a scheme; a loopback or private
//! address the policy names is granted with `private = true`), and a memory
//! limit becomes `[limits] memory`. Environment variables have no
//! equivalent (a Stockade tool sees no environment; credentials are
//! injected by the host): they are named in a comment and on standard
//! error. Anything else in the policy is refused by name rather than
//! dropped.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A Wassette policy file (version 1.0).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    version: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    permissions: Permissions,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Permissions {
    #[serde(default)]
    storage: Option<Rules<StorageRule>>,
    #[serde(default)]
    network: Option<Rules<NetworkRule>>,
    #[serde(default)]
    environment: Option<Rules<EnvironmentRule>>,
    #[serde(default)]
    resources: Option<Resources>,
}

/// `allow` (and `deny`, which Stockade does not take: its grants are
/// allowlists, everything else is already denied).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rules<T> {
    #[serde(default = "Vec::new")]
    allow: Vec<T>,
    #[serde(default)]
    deny: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageRule {
    uri: String,
    access: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkRule {
    host: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentRule {
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resources {
    #[serde(default)]
    limits: Option<ResourceLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceLimits {
    #[serde(default)]
    memory: Option<String>,
    #[serde(default)]
    cpu: Option<serde_json::Value>,
}

/// Reads `policy` and prints (or writes to `out`) the manifest that grants
/// `component` the same.
pub fn run(
    policy: &Path,
    component: &Path,
    name: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(policy)
        .with_context(|| format!("cannot read {}", policy.display()))?;
    let parsed: Policy = serde_saphyr::from_str(&text)
        .map_err(|err| anyhow::anyhow!("{}: {err}", policy.display()))?;
    let bytes = std::fs::read(component)
        .with_context(|| format!("cannot read the component {}", component.display()))?;
    let component_path = std::fs::canonicalize(component)?;
    let name = match name {
        Some(name) => name.to_owned(),
        None => component
            .file_stem()
            .and_then(|s| s.to_str())
            .context("name the tool with --name")?
            .replace('_', "-"),
    };
    let manifest = manifest(
        &parsed,
        &policy.display().to_string(),
        &name,
        &component_path.to_string_lossy(),
        &hex::encode(Sha256::digest(&bytes)),
    )?;
    for key in environment_keys(&parsed) {
        eprintln!(
            "warning: environment variable `{key}` is not passed: a Stockade tool sees no \
             environment; inject credentials with [secrets] instead"
        );
    }
    match out {
        Some(out) => std::fs::write(out, manifest)
            .with_context(|| format!("cannot write {}", out.display()))?,
        None => print!("{manifest}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn environment_keys(policy: &Policy) -> Vec<&str> {
    policy
        .permissions
        .environment
        .iter()
        .flat_map(|rules| rules.allow.iter().map(|r| r.key.as_str()))
        .collect()
}

/// The manifest text.
fn manifest(
    policy: &Policy,
    source: &str,
    name: &str,
    component: &str,
    digest: &str,
) -> anyhow::Result<String> {
    if policy.version != "1.0" {
        bail!(
            "{source}: version {:?} is not one this importer knows (1.0)",
            policy.version
        );
    }
    let permissions = &policy.permissions;
    for (section, deny) in [
        (
            "storage",
            permissions.storage.as_ref().map(|r| r.deny.is_some()),
        ),
        (
            "network",
            permissions.network.as_ref().map(|r| r.deny.is_some()),
        ),
        (
            "environment",
            permissions.environment.as_ref().map(|r| r.deny.is_some()),
        ),
    ] {
        if deny == Some(true) {
            bail!(
                "{source}: permissions.{section}.deny has no Stockade form: grants are allowlists \
                 and everything they do not list is denied; narrow the allow list instead"
            );
        }
    }
    let mut text = String::new();
    writeln!(
        text,
        "# Imported from {source} by `stockade import-policy`."
    )?;
    if let Some(description) = &policy.description {
        writeln!(text, "# {}", description.replace('\n', " "))?;
    }
    writeln!(text, "[tool]")?;
    writeln!(text, "name = {}", quoted(name))?;
    writeln!(text, "component = {}", quoted(component))?;
    writeln!(text, "sha256 = {}", quoted(digest))?;

    if let Some(limits) = permissions
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
    {
        if limits.cpu.is_some() {
            writeln!(
                text,
                "\n# resources.limits.cpu has no direct form: Stockade meters CPU as fuel and \
                 wall time (add fuel and timeout to [limits])."
            )?;
        }
        if let Some(memory) = &limits.memory {
            writeln!(text, "\n[limits]")?;
            writeln!(text, "memory = {}", quoted(&memory_size(source, memory)?))?;
        }
    }

    if let Some(storage) = &permissions.storage
        && !storage.allow.is_empty()
    {
        writeln!(text, "\n[fs]")?;
        for (index, rule) in storage.allow.iter().enumerate() {
            let path = rule.uri.strip_prefix("fs://").with_context(|| {
                format!(
                    "{source}: permissions.storage.allow[{index}].uri {:?} is not an fs:// URI",
                    rule.uri
                )
            })?;
            if !path.starts_with('/') {
                bail!(
                    "{source}: permissions.storage.allow[{index}].uri {:?} is not an absolute path",
                    rule.uri
                );
            }
            let mode = access_mode(source, index, &rule.access)?;
            writeln!(
                text,
                "{} = {{ host = {}, mode = \"{mode}\" }}",
                quoted(path),
                quoted(path)
            )?;
        }
    }

    if let Some(network) = &permissions.network
        && !network.allow.is_empty()
    {
        writeln!(text, "\n[egress]")?;
        writeln!(text, "allow = [")?;
        for (index, rule) in network.allow.iter().enumerate() {
            writeln!(text, "    {},", egress_entry(source, index, &rule.host)?)?;
        }
        writeln!(text, "]")?;
    }

    let keys = environment_keys(policy);
    if !keys.is_empty() {
        writeln!(
            text,
            "\n# The policy passed environment variables ({}). A Stockade tool sees no\n\
             # environment: inject credentials with [secrets.NAME] (vault, destinations,\n\
             # header, format) so the tool never holds them.",
            keys.join(", ")
        )?;
    }
    Ok(text)
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// `read` alone is read-only; any `write` is read-write.
fn access_mode(source: &str, index: usize, access: &[String]) -> anyhow::Result<&'static str> {
    let mut mode = None;
    for word in access {
        match word.as_str() {
            "read" => mode = mode.or(Some("ro")),
            "write" => mode = Some("rw"),
            other => bail!(
                "{source}: permissions.storage.allow[{index}].access: {other:?} is not read or write"
            ),
        }
    }
    mode.with_context(|| format!("{source}: permissions.storage.allow[{index}].access is empty"))
}

/// One `[egress] allow` entry for a Wassette network host.
fn egress_entry(source: &str, index: usize, host: &str) -> anyhow::Result<String> {
    let url = if host.contains("://") {
        let uri: http::Uri = host.parse().with_context(|| {
            format!("{source}: permissions.network.allow[{index}].host {host:?} is not a URL")
        })?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            bail!("{source}: permissions.network.allow[{index}].host {host:?} names no host");
        };
        format!("{scheme}://{authority}")
    } else {
        format!("https://{}", host.trim_end_matches('/'))
    };
    let bare = url
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .rsplit_once(':')
        .map_or_else(|| url.split("://").nth(1).unwrap_or_default(), |(h, _)| h)
        .trim_matches(['[', ']']);
    let private = bare == "localhost"
        || bare.parse::<IpAddr>().is_ok_and(|ip| match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local(),
        });
    Ok(if private {
        format!("{{ url = {}, private = true }}", quoted(&url))
    } else {
        quoted(&url)
    })
}

/// A Kubernetes-style quantity (`512Mi`, `1Gi`, `100M`) as a Stockade size.
fn memory_size(source: &str, quantity: &str) -> anyhow::Result<String> {
    let quantity = quantity.trim();
    let split = quantity
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(quantity.len());
    let (number, unit) = quantity.split_at(split);
    let unit = match unit {
        "Ki" => "KiB",
        "Mi" => "MiB",
        "Gi" => "GiB",
        "K" | "k" => "KB",
        "M" => "MB",
        "G" => "GB",
        "" => "B",
        _ => bail!(
            "{source}: permissions.resources.limits.memory {quantity:?} is not a size like 512Mi"
        ),
    };
    if number.is_empty() {
        bail!("{source}: permissions.resources.limits.memory {quantity:?} has no number");
    }
    Ok(format!("{number}{unit}"))
}
