//! The command line: `serve` and `check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use rmcp::ServiceExt;
use stockade_host_api::{CallerIdentity, Sandbox, SandboxSettings};

use crate::audit::Audit;
use crate::call::CallPath;
use crate::config::StockadeConfig;
use crate::logging::LogFormat;
use crate::mcp::McpServer;
use crate::registry::Registry;
use crate::secrets::{Backend, DevBackend, VaultBackend};
use crate::stdio::{EdgeLimits, StdioEdge};
use tokio_util::sync::CancellationToken;

/// Stockade: a sandboxed MCP tool runtime for WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines (on stderr) are written.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured tools to one MCP client.
    Serve {
        /// Path to stockade.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// Transport to serve on.
        #[arg(long, value_enum, default_value_t = Transport::Stdio)]
        transport: Transport,
        /// DEVELOPMENT ONLY: read tool secrets from this TOML file instead
        /// of Vault (`"mount/data/path#key" = "value"` lines).
        #[arg(long, value_name = "FILE")]
        dev_secrets: Option<PathBuf>,
        /// Refuse to start when any tool is refused (default: serve the rest).
        #[arg(long)]
        strict: bool,
        /// Serve MCP over Streamable HTTP on this address (overrides
        /// `http.listen`; implies `--transport http`).
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// DEVELOPMENT ONLY, loopback only: accept a random API key made at
        /// start (printed once) for the `[stdio]` caller's identity.
        #[arg(long)]
        dev_api_key: bool,
    },
    /// Manage API keys for HTTP clients.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Make an Ed25519 key pair for signing audit checkpoints.
    Keygen {
        /// Where to write the private key (the public key goes to FILE.pub).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check and search the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write the signed tool lock: every served tool's name, description,
    /// schemas, hints, component digest and grants.
    Lock {
        /// Path to stockade.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// The private key to sign with (`stockade keygen`).
        #[arg(long, value_name = "KEY")]
        sign: PathBuf,
        /// Where to write the lock (default: `lock.file`, else
        /// `stockade.lock` beside the config); the signature goes to FILE.sig.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// DEVELOPMENT ONLY: as for `serve`.
        #[arg(long, value_name = "FILE")]
        dev_secrets: Option<PathBuf>,
    },
    /// Operator control: the kill switch (disable a tool, revoke a client,
    /// lock everything down), through the control socket or an admin
    /// listener.
    Admin {
        #[command(flatten)]
        target: crate::control_cli::Target,
        #[command(subcommand)]
        command: crate::control_cli::AdminCommand,
    },
    /// Print the CycloneDX SBOM of what a configuration serves: the runtime
    /// and every component, with digests.
    Sbom {
        /// Path to stockade.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Translate a Wassette `policy.yaml` into a Stockade manifest for a
    /// component (storage, network and memory grants; environment variables
    /// are named, not passed).
    ImportPolicy {
        /// The Wassette policy file.
        policy: PathBuf,
        /// The component the manifest serves (its digest is pinned).
        #[arg(long)]
        component: PathBuf,
        /// The tool's name (default: the component's file name).
        #[arg(long)]
        name: Option<String>,
        /// Where to write the manifest (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Check the runtime itself.
    Selftest {
        #[command(subcommand)]
        command: SelftestCommand,
    },
    /// Validate the config, every manifest and every component, then exit.
    Check {
        /// Path to stockade.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// DEVELOPMENT ONLY: as for `serve`.
        #[arg(long, value_name = "FILE")]
        dev_secrets: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SelftestCommand {
    /// Apply the serving process's confinement to this process, try what
    /// it forbids, and report each attempt (exit 1 when any succeeds).
    Confinement {
        /// Path to stockade.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// DEVELOPMENT ONLY: as for `serve`.
        #[arg(long, value_name = "FILE")]
        dev_secrets: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Print a new key once, and the `[[auth.api_keys]]` entry (holding
    /// only its SHA-256) to paste into stockade.toml.
    New {
        /// The client identity the key stands for.
        #[arg(long)]
        client: String,
        /// The user, when the key acts for one person.
        #[arg(long)]
        user: Option<String>,
        /// Groups, for tools' `[access]` (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Scopes, for tools' `[access]` (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain, checkpoint signatures and head across rotated
    /// files; name the first break.
    Verify {
        /// Audit files, or the audit directory (which also checks its head).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The public key checkpoints must be signed with (`keygen`'s FILE.pub).
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Accept files that start after the first record.
        #[arg(long)]
        partial: bool,
    },
    /// Who did what, when, with which outcome.
    Query {
        /// Audit files, or the audit directory.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        filter: crate::audit::query::Filter,
        /// JSON Lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// MCP over standard input and output (one local client).
    Stdio,
    /// MCP over Streamable HTTP (`[http]`), many authenticated clients.
    Http,
}

/// Parses arguments, runs the command, reports errors without a backtrace.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init(cli.log_format);
    // Confinement binds the calling thread and those it starts later, so it
    // comes before the async runtime starts any.
    let mut confined = None;
    match &cli.command {
        Command::Serve {
            config,
            dev_secrets,
            http,
            ..
        } => match confine_serving(config, dev_secrets.as_deref(), *http) {
            Ok(done) => confined = Some(done),
            Err(err) => {
                eprintln!("stockade: {err:#}");
                return ExitCode::FAILURE;
            }
        },
        Command::Selftest {
            command:
                SelftestCommand::Confinement {
                    config,
                    dev_secrets,
                },
        } => {
            return crate::confine::selftest::run(config, dev_secrets.as_deref()).unwrap_or_else(
                |err| {
                    eprintln!("stockade: {err:#}");
                    ExitCode::FAILURE
                },
            );
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("stockade: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                config,
                transport,
                dev_secrets,
                strict,
                http,
                dev_api_key,
            } => {
                let options = ServeOptions {
                    transport: if http.is_some() {
                        Transport::Http
                    } else {
                        transport
                    },
                    dev_secrets,
                    strict,
                    http,
                    dev_api_key,
                };
                let confined = confined.take().context("the configuration was not read")?;
                serve(&config, options, confined).await
            }
            Command::Selftest { .. } => unreachable!("the self-test runs before the runtime"),
            Command::Sbom { config } => crate::sbom::print(&config),
            Command::ImportPolicy {
                policy,
                component,
                name,
                out,
            } => crate::import_policy::run(&policy, &component, name.as_deref(), out.as_deref()),
            Command::Apikey {
                command:
                    ApikeyCommand::New {
                        client,
                        user,
                        groups,
                        scopes,
                    },
            } => new_api_key(&client, user.as_deref(), &groups, &scopes),
            Command::Check {
                config,
                dev_secrets,
            } => check(&config, dev_secrets.as_deref()).await,
            Command::Keygen { out } => crate::audit_cli::keygen(&out),
            Command::Admin { target, command } => crate::control_cli::run(target, command).await,
            Command::Lock {
                config,
                sign,
                out,
                dev_secrets,
            } => lock(&config, &sign, out, dev_secrets.as_deref()).await,
            Command::Audit {
                command:
                    AuditCommand::Verify {
                        paths,
                        public_key,
                        partial,
                    },
            } => crate::audit_cli::verify(paths, public_key.as_deref(), partial),
            Command::Audit {
                command:
                    AuditCommand::Query {
                        paths,
                        filter,
                        json,
                    },
            } => crate::audit_cli::query(&paths, filter, json),
        }
    });
    // A read of standard input may still be parked on a blocking thread;
    // the process must not wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("stockade: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A configuration read before serving, and the confinement applied for it.
struct Confined {
    /// The configuration.
    config: StockadeConfig,
    /// The manifests that did not load.
    manifest_errors: Vec<crate::config::ConfigError>,
    /// What the process kept, for checking reloads.
    kept: crate::confine::plan::Kept,
}

/// Reads the configuration and confines the process to what it needs.
fn confine_serving(
    config_path: &Path,
    dev_secrets: Option<&Path>,
    http: Option<std::net::SocketAddr>,
) -> anyhow::Result<Confined> {
    let (config, manifest_errors) = StockadeConfig::load(config_path)?;
    let extras = crate::confine::plan::Extras { dev_secrets, http };
    let plan = crate::confine::Plan::for_serving(config_path, &config, &manifest_errors, extras);
    crate::confine::apply(&plan, config.server.require_confinement)?;
    Ok(Confined {
        config,
        manifest_errors,
        kept: crate::confine::plan::Kept {
            plan,
            dev_secrets: dev_secrets.map(Path::to_owned),
            http,
        },
    })
}

/// Everything `load` brings up.
struct Loaded {
    config: StockadeConfig,
    sandbox: Arc<Sandbox>,
    registry: Registry,
    problems: Vec<String>,
    secrets: Option<Arc<Backend>>,
    /// The audit trail, when `load` was asked to open it.
    audit: Option<Arc<Audit>>,
    /// The metrics the audit trail feeds.
    metrics: Arc<crate::metrics::Metrics>,
    /// Limiters, kept across reloads.
    limiters: Arc<crate::policy::Limiters>,
    /// The largest `limits.memory` the sandbox's pool reserves.
    max_memory_bytes: u64,
}

/// What a command loads the config for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// To serve: the audit trail is opened first (so loading is recorded)
    /// and the tool lock is enforced.
    Serve,
    /// To report: the tool lock is enforced, nothing is recorded.
    Check,
    /// To write the lock: tools are taken as they are.
    Lock,
}

/// Loads config, sandbox and tools for `purpose`; returns the registry and
/// every problem found.
async fn load(
    (config, manifest_errors): (StockadeConfig, Vec<crate::config::ConfigError>),
    dev_secrets: Option<&Path>,
    purpose: Purpose,
) -> anyhow::Result<Loaded> {
    let secrets = match (dev_secrets, &config.vault) {
        (Some(file), _) => Some(Arc::new(Backend::Dev(
            DevBackend::load(file).map_err(anyhow::Error::msg)?,
        ))),
        (None, Some(vault)) => Some(Arc::new(Backend::Vault(VaultBackend::start(vault.clone())))),
        (None, None) => None,
    };
    let settings = SandboxSettings {
        cache_dir: Some(config.server.cache_dir.clone()),
        max_concurrent_calls: config.server.max_concurrent_calls,
        redact_min_run: config.redaction.min_run,
        queue_timeout: config.server.queue_timeout,
        tool_share: config.server.tool_share,
        max_memory_bytes: config
            .tools
            .iter()
            .map(|tool| tool.limits.memory_bytes)
            .max()
            .unwrap_or(1 << 20),
        ..SandboxSettings::default()
    };
    let sandbox = Arc::new(Sandbox::new(&settings).context("cannot start the sandbox")?);
    crate::logging::scrub_with(sandbox.redactor());
    let metrics = crate::metrics::Metrics::new();
    let audit = if purpose == Purpose::Serve {
        if config.audit.dir.is_none() {
            tracing::warn!(
                "audit records go to standard error, unsigned; set [audit] dir for a durable, signed trail"
            );
        }
        Some(Arc::new(
            Audit::open(
                &config.audit,
                Some(sandbox.redactor()),
                vec![
                    metrics.clone(),
                    Arc::new(crate::alerts::Alerts::new(
                        config.alerts.clone(),
                        config.audit.dir.clone(),
                    )),
                ],
            )
            .context("cannot open the audit trail")?,
        ))
    } else {
        None
    };
    let limiters = Arc::new(crate::policy::Limiters::default());
    let sources = crate::reload::ToolSources {
        sandbox: &sandbox,
        secrets: secrets.as_ref(),
        audit: audit.as_ref(),
        limiters: &limiters,
        enforce_lock: purpose != Purpose::Lock,
    };
    let (registry, problems) = crate::reload::load_tools(&config, &manifest_errors, &sources)
        .await
        .context("the tool lock cannot be used; not loading tools")?;
    Ok(Loaded {
        max_memory_bytes: settings.max_memory_bytes,
        limiters,
        config,
        sandbox,
        registry,
        problems,
        secrets,
        audit,
        metrics,
    })
}

/// `stockade lock`: the signed lock of every tool the config serves. Any
/// problem (a refused tool, a lint finding) is fixed first.
async fn lock(
    config_path: &Path,
    key: &Path,
    out: Option<PathBuf>,
    dev_secrets: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let signer = crate::audit::signing::Signer::load(key).map_err(anyhow::Error::msg)?;
    let Loaded {
        config,
        registry,
        problems,
        ..
    } = load(
        StockadeConfig::load(config_path)?,
        dev_secrets,
        Purpose::Lock,
    )
    .await?;
    if !problems.is_empty() {
        for problem in &problems {
            println!("FAIL {problem}");
        }
        anyhow::bail!(
            "{} problem(s) (above): a lock records only a configuration that loads cleanly",
            problems.len()
        );
    }
    let path = out
        .or(config.lock.file.clone())
        .unwrap_or_else(|| config_path.with_file_name("stockade.lock"));
    let tools = crate::lock::write(&registry, &path, &signer)?;
    println!(
        "locked {tools} tools in {} (signature in {}, key {})",
        path.display(),
        crate::lock::signature_path(&path).display(),
        signer.key_id
    );
    if config.lock.file.is_none() {
        println!(
            "\nAdd to stockade.toml:\n[lock]\nfile = \"{}\"\npublic_key_file = \"{}.pub\"\nrequired = true",
            path.display(),
            key.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `serve`'s options besides the config file.
struct ServeOptions {
    transport: Transport,
    dev_secrets: Option<PathBuf>,
    strict: bool,
    http: Option<std::net::SocketAddr>,
    dev_api_key: bool,
}

async fn serve(
    config_path: &Path,
    options: ServeOptions,
    confined: Confined,
) -> anyhow::Result<ExitCode> {
    let ServeOptions {
        transport,
        dev_secrets,
        strict,
        http,
        dev_api_key,
    } = options;
    if dev_api_key && transport != Transport::Http {
        anyhow::bail!("--dev-api-key is for HTTP: add --http ADDR");
    }
    let started = Instant::now();
    let Loaded {
        config,
        sandbox,
        registry,
        problems,
        secrets,
        audit,
        metrics,
        limiters,
        max_memory_bytes,
    } = load(
        (confined.config, confined.manifest_errors),
        dev_secrets.as_deref(),
        Purpose::Serve,
    )
    .await?;
    let audit = audit.context("the audit trail was not opened")?;
    for problem in &problems {
        tracing::error!("tool refused: {problem}");
    }
    if strict && !problems.is_empty() {
        anyhow::bail!(
            "--strict: {} tool(s) refused (see above); not serving",
            problems.len()
        );
    }
    tracing::info!(
        tools = registry.len(),
        refused = problems.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "ready"
    );
    let tools = registry.len();
    crate::audit_cli::record_start(&audit, config_path, &registry, &problems)?;
    let admin_stop = CancellationToken::new();
    let _stop_admin = admin_stop.clone().drop_guard();
    let control = Arc::new(
        crate::control::Control::open(&config.control, config.approval.clone(), audit.clone())
            .context("cannot read the kill switches; not serving")?,
    );
    let switches = control.switches();
    if *switches != crate::control::Switches::default() {
        tracing::warn!(
            disabled_tools = ?switches.disabled_tools,
            revoked_clients = ?switches.revoked_clients,
            lockdown = switches.lockdown,
            "kill switches in force from before"
        );
    }
    let socket = crate::control::socket::listen(control.clone(), admin_stop.clone())
        .context("cannot open the control socket; not serving")?;
    tracing::info!(target: "stockade::control", "control socket at {}", socket.display());
    if let Some(addr) = config.admin.listen {
        let state = Arc::new(crate::admin::AdminState {
            metrics,
            audit: audit.clone(),
            sandbox: sandbox.clone(),
            secrets: secrets.clone(),
            tools: registry.len(),
            control: control.clone(),
            keys: config.admin.keys.clone(),
            failures: Default::default(),
        });
        crate::admin::serve(addr, state, admin_stop.clone()).await?;
    }
    let versions = crate::versions::VersionStore::open(&config.control.dir)
        .context("cannot keep configuration versions; not serving")?;
    match versions.record(config_path, &config, &registry) {
        Ok(number) => {
            tracing::info!(target: "stockade::reload", "serving configuration version {number}")
        }
        Err(err) => {
            tracing::warn!(target: "stockade::reload", "this configuration is not kept as a version (no rollback to it): {err}")
        }
    }
    let path = Arc::new(CallPath::new(
        sandbox.clone(),
        Arc::new(registry),
        &config.server,
        audit.clone(),
        control.clone(),
    ));
    let reloader = Arc::new(crate::reload::Reloader {
        config_path: config_path.to_owned(),
        sandbox,
        secrets: secrets.clone(),
        audit: audit.clone(),
        path: path.clone(),
        limiters,
        max_memory_bytes,
        versions,
        confinement: confined.kept,
        busy: tokio::sync::Mutex::new(()),
    });
    control.set_reloader(reloader.clone());
    crate::reload::reload_on_hangup(reloader);
    match transport {
        Transport::Http => {
            let addr = http
                .or(config.http.listen)
                .context("no address to serve HTTP on: pass --http ADDR or set http.listen")?;
            let served = serve_http(
                &config,
                addr,
                path,
                tools,
                secrets,
                dev_api_key,
                audit.clone(),
            )
            .await;
            crate::audit_cli::record_stop(&audit);
            served?;
        }
        Transport::Stdio => {
            let caller = stdio_caller(&config.stdio, "stdio");
            let peer = crate::stdio::SessionPeer::default();
            let server =
                McpServer::new(path, caller, &config.server.name).with_session_peer(peer.clone());
            let shutdown = CancellationToken::new();
            let service = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            let limits = EdgeLimits {
                max_message: config.stdio.max_message,
                max_depth: config.stdio.max_depth,
                max_in_flight: config.stdio.max_in_flight,
                shutdown_grace: config.server.shutdown_grace,
            };
            let edge = StdioEdge::new(limits, server.clone(), peer, shutdown, service.clone())
                .context("cannot start the stdio reader and writer threads")?;
            let running = match server.serve_with_ct(edge, service).await {
                Ok(running) => running,
                // The client left (or a signal came) before the session
                // started: nothing failed.
                Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => {
                    tracing::info!("input ended before the session started");
                    crate::audit_cli::record_stop(&audit);
                    return Ok(ExitCode::SUCCESS);
                }
                Err(err) => {
                    return Err(err).context("MCP session over stdio failed to start");
                }
            };
            let reason = running.waiting().await;
            crate::audit_cli::record_stop(&audit);
            let reason = reason.context("MCP session over stdio")?;
            tracing::info!(?reason, "session over; exiting");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The identity `[stdio]` describes, named `unnamed` when it names no
/// client. A local client's own calls start the call chain (depth 0).
fn stdio_caller(stdio: &crate::config::StdioSettings, unnamed: &str) -> CallerIdentity {
    CallerIdentity {
        client: stdio.client.clone().unwrap_or_else(|| unnamed.into()),
        user: stdio.user.clone(),
        groups: stdio.groups.clone(),
        scopes: Vec::new(),
        call_depth: 0,
    }
}

/// Serves over HTTP until SIGTERM or SIGINT.
async fn serve_http(
    config: &StockadeConfig,
    addr: std::net::SocketAddr,
    path: Arc<CallPath>,
    tools: usize,
    secrets: Option<Arc<Backend>>,
    dev_api_key: bool,
    audit: Arc<Audit>,
) -> anyhow::Result<()> {
    let mut auth_settings = config.auth.clone();
    let resource = crate::http::resource_uri(&config.http, addr);
    if dev_api_key {
        if !addr.ip().is_loopback() {
            anyhow::bail!("--dev-api-key is for loopback addresses only ({addr} is not)");
        }
        let key = crate::auth::apikey::generate().context("no randomness for a key")?;
        auth_settings.api_keys.add(crate::auth::apikey::ApiKey {
            digest: crate::auth::apikey::digest(&key),
            principal: crate::auth::Principal {
                identity: stdio_caller(&config.stdio, "dev"),
                method: crate::auth::Method::ApiKey,
            },
        });
        eprintln!(
            "\nDEVELOPMENT API KEY (valid until this process stops): {key}\n\
             - MCP Inspector (Node 22), its CLI mcpdo:\n\
               npx -p @modelcontextprotocol/inspector mcpdo connect {resource} --header \"Authorization: Bearer {key}\" --connection stockade\n\
               npx -p @modelcontextprotocol/inspector mcpdo tools/list --connection stockade\n\
               or in one step: npx @modelcontextprotocol/inspector --cli {resource} --transport http --header \"Authorization: Bearer {key}\" --method tools/list\n\
             - Claude/Cursor-style client config:\n\
               {{ \"mcpServers\": {{ \"stockade\": {{ \"type\": \"http\", \"url\": \"{resource}\", \"headers\": {{ \"Authorization\": \"Bearer {key}\" }} }} }} }}\n"
        );
    }
    let metadata = crate::http::metadata_uri(&resource);
    let auth = crate::auth::Authenticator::new(auth_settings, resource, metadata)
        .map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let endpoint = crate::http::Endpoint {
        auth,
        path,
        server_name: config.server.name.clone(),
        readiness: crate::http::Readiness { tools, secrets },
        audit,
    };
    crate::http::serve(
        config.http.clone(),
        addr,
        endpoint,
        shutdown,
        config.server.shutdown_grace,
    )
    .await
}

/// `stockade apikey new`: the key once on stdout, then the config entry.
fn new_api_key(
    client: &str,
    user: Option<&str>,
    groups: &[String],
    scopes: &[String],
) -> anyhow::Result<ExitCode> {
    let key = crate::auth::apikey::generate().context("no randomness for a key")?;
    let quoted = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("API key (shown once; give it to the client, store it nowhere else):\n{key}\n");
    println!("Add to stockade.toml:\n[[auth.api_keys]]");
    println!("client = {client:?}");
    if let Some(user) = user {
        println!("user = {user:?}");
    }
    println!("groups = [{}]", quoted(groups));
    println!("scopes = [{}]", quoted(scopes));
    println!(
        "sha256 = \"{}\"",
        hex::encode(crate::auth::apikey::digest(&key))
    );
    Ok(ExitCode::SUCCESS)
}

/// Allowlist entries of `tool` that can never admit a request: a host
/// that is a non-public address literal (or `localhost`) without
/// `private = true`, which the address check always refuses.
fn never_matching(tool: &crate::registry::RegisteredTool) -> Vec<String> {
    use stockade_host_api::egress::{AddressClass, HostPattern, classify};
    let manifest = &tool.component.manifest;
    manifest
        .egress
        .rules
        .iter()
        .filter(|rule| !rule.allow_private)
        .filter_map(|rule| {
            let HostPattern::Exact(host) = &rule.host else {
                return None;
            };
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            let non_public = host == "localhost"
                || literal
                    .parse()
                    .is_ok_and(|ip| classify(ip) != AddressClass::Public);
            non_public.then(|| {
                format!(
                    "{}: egress entry for {host} can never match: it is not a public address; add `private = true` if it is meant",
                    manifest.path.display()
                )
            })
        })
        .collect()
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM and SIGINT; stop by closing standard input");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("{name}: no new requests; calls in flight may finish within shutdown_grace");
    shutdown.cancel();
}

async fn check(config_path: &Path, dev_secrets: Option<&Path>) -> anyhow::Result<ExitCode> {
    let Loaded {
        registry, problems, ..
    } = load(
        StockadeConfig::load(config_path)?,
        dev_secrets,
        Purpose::Check,
    )
    .await?;
    for tool in registry.iter() {
        println!(
            "ok   {:<24} from {}",
            tool.descriptor.name,
            tool.component.manifest.path.display()
        );
    }
    for problem in &problems {
        println!("FAIL {problem}");
    }
    // One component may serve several tools: each warning once.
    let warnings: std::collections::BTreeSet<String> = registry
        .iter()
        .flat_map(|tool| never_matching(tool))
        .collect();
    for warning in warnings {
        println!("WARN {warning}");
    }
    if problems.is_empty() {
        println!("{} tools, no problems", registry.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} tools, {} problems", registry.len(), problems.len());
        Ok(ExitCode::FAILURE)
    }
}
