//! The served tools: every manifest's component loaded, described,
//! filtered by `expose`, checked, and kept in a deterministic order.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use stockade_host_api::{CallLimits, LoadedComponent, Sandbox, ToolDescriptor, ToolGrant};

use crate::audit::Audit;
use crate::manifest::ToolManifest;
use crate::policy::{Limiters, ToolLimiter};
use crate::secrets::{Backend, ToolSecrets};
use stockade_host_api::secrets::SecretGrant;

/// One component as served: its manifest, compiled code and grant.
pub struct ComponentEntry {
    /// The manifest it was loaded from.
    pub manifest: ToolManifest,
    /// The compiled component.
    pub loaded: LoadedComponent,
    /// What every call of it may touch.
    pub grant: ToolGrant,
    /// Its rate and concurrency limits (shared across reloads).
    pub limiter: Arc<ToolLimiter>,
}

/// One tool as served.
pub struct RegisteredTool {
    /// What clients see (the name carries the manifest's prefix).
    pub descriptor: ToolDescriptor,
    /// The name the component itself knows the tool by.
    pub component_name: String,
    /// The compiled input schema.
    pub validator: jsonschema::Validator,
    /// The compiled output schema, when the tool declares one.
    pub output_validator: Option<jsonschema::Validator>,
    /// The component that runs it.
    pub component: Arc<ComponentEntry>,
}

/// Why a manifest's tools are not served.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", manifest.display())]
pub struct LoadError {
    /// The manifest.
    pub manifest: std::path::PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// All served tools, by name.
#[derive(Default)]
pub struct Registry {
    tools: BTreeMap<String, Arc<RegisteredTool>>,
}

impl Registry {
    /// Loads every manifest; a manifest that fails is left out and reported.
    pub async fn load(
        sandbox: &Sandbox,
        manifests: &[ToolManifest],
        secrets: Option<&Arc<Backend>>,
        audit: Option<&Arc<Audit>>,
        limiters: &Limiters,
    ) -> (Self, Vec<LoadError>) {
        let mut registry = Self::default();
        let mut errors = Vec::new();
        let mut loaded = Loaded::default();
        for manifest in manifests {
            let fail = |reason: String| LoadError {
                manifest: manifest.path.clone(),
                reason,
            };
            let sources = Sources {
                sandbox,
                secrets,
                audit,
                limiters,
            };
            match load_component(&sources, manifest, &mut loaded).await {
                Ok(tools) => {
                    if let Some(clash) = tools
                        .iter()
                        .find(|t| registry.tools.contains_key(&t.descriptor.name))
                    {
                        let other = &registry.tools[&clash.descriptor.name]
                            .component
                            .manifest
                            .path;
                        errors.push(fail(format!(
                            "tool `{}` is already served by {}",
                            clash.descriptor.name,
                            other.display()
                        )));
                        continue;
                    }
                    for tool in tools {
                        registry
                            .tools
                            .insert(tool.descriptor.name.clone(), Arc::new(tool));
                    }
                }
                Err(reason) => errors.push(fail(reason)),
            }
        }
        registry.refuse_poisoned(&mut errors);
        (registry, errors)
    }

    /// Takes out of service every tool with a description-lint finding its
    /// manifest does not acknowledge, and says why in `errors`.
    fn refuse_poisoned(&mut self, errors: &mut Vec<LoadError>) {
        let names: Vec<String> = self.tools.keys().cloned().collect();
        let served = crate::lint::ServedNames::new(names.clone());
        for name in &names {
            let tool = &self.tools[name];
            let manifest = &tool.component.manifest;
            let unacknowledged: Vec<String> = crate::lint::lint(&tool.descriptor, &served)
                .iter()
                .map(crate::lint::Finding::key)
                .filter(|key| !manifest.acknowledged.contains(key))
                .collect();
            if unacknowledged.is_empty() {
                continue;
            }
            errors.push(LoadError {
                manifest: manifest.path.clone(),
                reason: format!(
                    "tool `{name}` refused by the description lint (to accept a finding, add it to [lint] acknowledge): {}",
                    unacknowledged
                        .iter()
                        .map(|key| format!("'{key}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
            self.tools.remove(name);
        }
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<RegisteredTool>> {
        self.tools.get(name)
    }

    /// Takes the tool called `name` out of service.
    pub fn remove(&mut self, name: &str) {
        self.tools.remove(name);
    }

    /// Every tool, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<RegisteredTool>> {
        self.tools.values()
    }

    /// Number of tools served.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.tools.len()
    }
}

/// What loading one manifest draws on.
struct Sources<'a> {
    sandbox: &'a Sandbox,
    secrets: Option<&'a Arc<Backend>>,
    audit: Option<&'a Arc<Audit>>,
    limiters: &'a Limiters,
}

/// Components already loaded by this registry load, so that manifests
/// naming the same file with the same pinned digest share one compiled
/// component (and, under the same limits, one listing of its tools).
#[derive(Default)]
struct Loaded {
    components: HashMap<(PathBuf, String), LoadedComponent>,
    listings: Vec<(PathBuf, String, CallLimits, Vec<ToolDescriptor>)>,
}

impl Loaded {
    fn component(
        &mut self,
        sandbox: &Sandbox,
        manifest: &ToolManifest,
    ) -> Result<LoadedComponent, String> {
        let key = (manifest.component.clone(), manifest.sha256.clone());
        if let Some(first) = self.components.get(&key) {
            return Ok(first.for_another_manifest(sandbox));
        }
        let loaded = sandbox
            .load(&manifest.component, Some(&manifest.sha256))
            .map_err(|e| e.to_string())?;
        self.components.insert(key, loaded.clone());
        Ok(loaded)
    }

    async fn listing(
        &mut self,
        sandbox: &Sandbox,
        manifest: &ToolManifest,
        loaded: &LoadedComponent,
        grant: &ToolGrant,
    ) -> Result<Vec<ToolDescriptor>, String> {
        let known = self.listings.iter().find(|(path, digest, limits, _)| {
            *path == manifest.component && *digest == manifest.sha256 && *limits == manifest.limits
        });
        if let Some((_, _, _, descriptors)) = known {
            return Ok(descriptors.clone());
        }
        let descriptors = sandbox
            .describe(loaded, grant)
            .await
            .map_err(|e| e.to_string())?;
        self.listings.push((
            manifest.component.clone(),
            manifest.sha256.clone(),
            manifest.limits.clone(),
            descriptors.clone(),
        ));
        Ok(descriptors)
    }
}

async fn load_component(
    sources: &Sources<'_>,
    manifest: &ToolManifest,
    already: &mut Loaded,
) -> Result<Vec<RegisteredTool>, String> {
    let Sources {
        sandbox,
        secrets: backend,
        audit,
        limiters,
    } = *sources;
    let secrets = match (manifest.secrets.is_empty(), backend) {
        (true, _) => None,
        (false, None) => {
            return Err("declares [secrets] but no secret store is configured: add [vault] to stockade.toml (or --dev-secrets FILE for development)".into());
        }
        (false, Some(backend)) => {
            let references = manifest
                .secrets
                .iter()
                .map(|s| (s.binding.name.clone(), s.reference.clone()))
                .collect();
            Some(Arc::new(SecretGrant {
                bindings: manifest.secrets.iter().map(|s| s.binding.clone()).collect(),
                source: Arc::new(ToolSecrets::new(
                    backend.clone(),
                    references,
                    audit.cloned(),
                )),
            }))
        }
    };
    let loaded = already.component(sandbox, manifest)?;
    let grant = ToolGrant {
        label: manifest.name.clone(),
        limits: manifest.limits.clone(),
        fs: manifest.fs.clone(),
        egress: Arc::new(manifest.egress.clone()),
        secrets,
    };
    let mut descriptors = already.listing(sandbox, manifest, &loaded, &grant).await?;
    if let Some(expose) = &manifest.expose {
        for name in expose {
            if !descriptors.iter().any(|d| &d.name == name) {
                return Err(format!(
                    "`tool.expose` names `{name}`, which the component does not offer"
                ));
            }
        }
        descriptors.retain(|d| expose.contains(&d.name));
    }
    let entry = Arc::new(ComponentEntry {
        limiter: limiters.for_manifest(manifest),
        manifest: manifest.clone(),
        loaded,
        grant,
    });
    let mut tools = Vec::new();
    for mut descriptor in descriptors {
        let component_name = descriptor.name.clone();
        descriptor.name = format!("{}{}", manifest.prefix, descriptor.name);
        check_descriptor(&descriptor)?;
        let validator = jsonschema::validator_for(&descriptor.input_schema).map_err(|e| {
            format!(
                "tool `{}`: input schema is not a valid JSON Schema: {e}",
                descriptor.name
            )
        })?;
        let output_validator = descriptor
            .output_schema
            .as_ref()
            .map(jsonschema::validator_for)
            .transpose()
            .map_err(|e| {
                format!(
                    "tool `{}`: output schema is not a valid JSON Schema: {e}",
                    descriptor.name
                )
            })?;
        tools.push(RegisteredTool {
            descriptor,
            component_name,
            validator,
            output_validator,
            component: entry.clone(),
        });
    }
    Ok(tools)
}

/// MCP's rules for a tool's name and input schema.
fn check_descriptor(d: &ToolDescriptor) -> Result<(), String> {
    let name_ok = (1..=128).contains(&d.name.len())
        && d.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !name_ok {
        return Err(format!(
            "tool name `{}` must be 1-128 characters of A-Z a-z 0-9 _ . -",
            d.name.escape_debug()
        ));
    }
    if d.input_schema.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(format!(
            "tool `{}`: input schema must have \"type\": \"object\"",
            d.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_host_api::ToolHints;

    fn descriptor(name: &str, schema: serde_json::Value) -> ToolDescriptor {
        ToolDescriptor {
            name: name.into(),
            title: None,
            description: String::new(),
            input_schema: schema,
            output_schema: None,
            hints: ToolHints::default(),
        }
    }

    #[test]
    fn refuses_bad_names_and_non_object_schemas() {
        let object = serde_json::json!({"type": "object"});
        assert!(check_descriptor(&descriptor("ok_name-1.2", object.clone())).is_ok());
        assert!(check_descriptor(&descriptor("", object.clone())).is_err());
        assert!(check_descriptor(&descriptor("has space", object.clone())).is_err());
        assert!(check_descriptor(&descriptor(&"x".repeat(129), object)).is_err());
        let err = check_descriptor(&descriptor("t", serde_json::json!({"type": "string"})));
        assert!(err.unwrap_err().contains("type"));
    }
}
