//! `stockade admin`: the operator's side of the kill switch. Changes go to
//! the control directory of a config (and every server process using it)
//! or, with `--url`, to a server's admin listener with an admin key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::control::socket::Answer;
use crate::control::{Notice, Operation, Switches};

/// Where `stockade admin` sends a change.
#[derive(Args)]
pub struct Target {
    /// The server's stockade.toml (its `[control] dir` is used).
    #[arg(long, short, value_name = "FILE", conflicts_with_all = ["dir", "url"])]
    config: Option<PathBuf>,
    /// The control directory itself.
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    dir: Option<PathBuf>,
    /// A server's admin listener, e.g. http://127.0.0.1:9464.
    #[arg(long, value_name = "URL", requires = "key_file")]
    url: Option<String>,
    /// File holding an admin key (`[[admin.keys]]`), for `--url`.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Why, for the audit.
    #[arg(long, global = true)]
    reason: Option<String>,
}

/// An operator's command.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Refuse a tool's calls (running ones are stopped) and hide it.
    DisableTool {
        /// The tool's served name.
        name: String,
    },
    /// Serve a disabled tool again.
    EnableTool {
        /// The tool's served name.
        name: String,
    },
    /// Refuse every request of a client (running calls are stopped).
    RevokeClient {
        /// The client identity.
        id: String,
    },
    /// Serve a revoked client again.
    RestoreClient {
        /// The client identity.
        id: String,
    },
    /// Refuse everything but health checks, or stop doing so.
    Lockdown {
        /// `on` or `off`.
        state: OnOff,
    },
    /// Show the switches in force.
    Status,
    /// Re-read the config and manifests in every server (a bad
    /// configuration is refused and the old one keeps serving).
    Reload,
    /// Return to a kept configuration version: its config, manifests,
    /// lock and components are written back, then every server reloads.
    Rollback {
        /// The version (default: the one before the latest).
        version: Option<u32>,
    },
    /// List the kept configuration versions.
    Versions,
    /// Let a call waiting for out-of-band approval run (not by its caller).
    Approve {
        /// The approval id (in the audit and the server's log).
        id: String,
    },
    /// Refuse a call waiting for out-of-band approval.
    Deny {
        /// The approval id.
        id: String,
    },
    /// List the calls waiting for out-of-band approval.
    Waiting,
}

/// `on` or `off`.
#[derive(Clone, Copy, ValueEnum)]
pub enum OnOff {
    /// Switch on.
    On,
    /// Switch off.
    Off,
}

/// Runs `stockade admin`.
pub async fn run(target: Target, command: AdminCommand) -> anyhow::Result<ExitCode> {
    let operation = match command {
        AdminCommand::DisableTool { name } => Operation::DisableTool(name),
        AdminCommand::EnableTool { name } => Operation::EnableTool(name),
        AdminCommand::RevokeClient { id } => Operation::RevokeClient(id),
        AdminCommand::RestoreClient { id } => Operation::RestoreClient(id),
        AdminCommand::Lockdown { state } => Operation::Lockdown(matches!(state, OnOff::On)),
        AdminCommand::Status => return status(&target).await,
        AdminCommand::Versions => return versions(&target),
        AdminCommand::Reload => Operation::Reload,
        AdminCommand::Rollback { version } => Operation::Rollback(version),
        AdminCommand::Approve { id } => Operation::Approve(id),
        AdminCommand::Deny { id } => Operation::Deny(id),
        AdminCommand::Waiting => Operation::Waiting,
    };
    if let Some(url) = &target.url {
        let key = read_key(target.key_file.as_deref())?;
        let body = serde_json::json!({ "operation": operation, "reason": target.reason });
        let reply = post(url, &key, "/control", &body).await?;
        let switches: Switches = serde_json::from_value(reply["switches"].clone())
            .context("the admin listener's answer has no switches")?;
        let answers: Vec<Answer> =
            serde_json::from_value(reply["answers"].clone()).unwrap_or_default();
        return Ok(report(&operation, &switches, &answers));
    }
    let dir = control_dir(&target)?;
    let user = local_user();
    let notice = Notice {
        operation: operation.clone(),
        by: format!("local user {user}"),
        who: user,
        reason: target.reason.clone(),
    };
    let (switches, answers) = crate::control::change(&dir, &notice).await?;
    Ok(report(&operation, &switches, &answers))
}

/// Prints what changed and what each server did; fails when a server
/// could not apply it.
fn report(operation: &Operation, switches: &Switches, answers: &[Answer]) -> ExitCode {
    let target = operation
        .target()
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    match operation {
        Operation::Reload => println!("reload: sent"),
        Operation::Rollback(_) => println!("rollback: files restored, reload sent"),
        Operation::Approve(_) | Operation::Deny(_) | Operation::Waiting => {}
        _ => println!("{}{target}: saved", operation.name()),
    }
    if answers.is_empty() {
        println!(
            "no server is running on this control directory; the change applies when one starts"
        );
    }
    // A waiting call lives in one process: the others' "no such call" is
    // no failure, as long as one process answered it.
    let answered_once = matches!(operation, Operation::Approve(_) | Operation::Deny(_))
        && answers.iter().any(|a| a.error.is_none());
    let mut failed = false;
    for answer in answers {
        match &answer.error {
            Some(_) if answered_once => {}
            None if operation.is_switch() => println!(
                "server pid {}: applied, {} running call(s) stopped",
                answer.pid.map_or("?".into(), |p| p.to_string()),
                answer.stopped
            ),
            None => println!(
                "server pid {}: {}",
                answer.pid.map_or("?".into(), |p| p.to_string()),
                answer.done.as_deref().unwrap_or("done")
            ),
            Some(error) => {
                failed = true;
                println!("server {}: NOT applied: {error}", answer.socket);
            }
        }
    }
    if operation.is_switch() {
        print_switches(switches);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_switches(switches: &Switches) {
    let list = |items: &std::collections::BTreeSet<String>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    println!(
        "in force: lockdown {}; disabled tools: {}; revoked clients: {}",
        if switches.lockdown { "ON" } else { "off" },
        list(&switches.disabled_tools),
        list(&switches.revoked_clients)
    );
}

async fn status(target: &Target) -> anyhow::Result<ExitCode> {
    let switches = if let Some(url) = &target.url {
        let key = read_key(target.key_file.as_deref())?;
        let reply = get(url, &key, "/control").await?;
        serde_json::from_value(reply["switches"].clone())
            .context("the admin listener's answer has no switches")?
    } else {
        crate::control::store::SwitchStore::open(&control_dir(target)?)?.load()?
    };
    print_switches(&switches);
    Ok(ExitCode::SUCCESS)
}

fn versions(target: &Target) -> anyhow::Result<ExitCode> {
    let store = crate::versions::VersionStore::open(&control_dir(target)?)?;
    let versions = store.list()?;
    if versions.is_empty() {
        println!("no configuration kept yet (a server keeps one at start and at each reload)");
    }
    for version in versions {
        println!(
            "{:>4}  {}  {} tools  {}",
            version.number,
            version.accepted,
            version.tools.len(),
            version.config.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The control directory `target` names.
fn control_dir(target: &Target) -> anyhow::Result<PathBuf> {
    match (&target.dir, &target.config) {
        (Some(dir), _) => Ok(dir.clone()),
        (None, Some(config)) => {
            let (config, _) = crate::config::StockadeConfig::load(config)?;
            Ok(config.control.dir)
        }
        (None, None) => {
            anyhow::bail!("say where: --config FILE, --dir DIR, or --url URL --key-file FILE")
        }
    }
}

fn read_key(path: Option<&Path>) -> anyhow::Result<String> {
    let path = path.context("--url needs --key-file FILE (an admin key)")?;
    let key = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin key {}", path.display()))?;
    Ok(key.trim().to_owned())
}

/// The name of the user running this command (uid when it has none).
fn local_user() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let name = uid.and_then(|uid| {
        std::fs::read_to_string("/etc/passwd")
            .ok()?
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.get(2)? == &uid.to_string().as_str()).then(|| fields[0].to_owned())
            })
    });
    match (name, uid) {
        (Some(name), _) => name,
        (None, Some(uid)) => format!("uid {uid}"),
        (None, None) => "unknown".into(),
    }
}

async fn post(
    url: &str,
    key: &str,
    route: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let response = reqwest::Client::new()
        .post(format!("{}{route}", url.trim_end_matches('/')))
        .bearer_auth(key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("cannot reach the admin listener at {url}"))?;
    answer_of(response).await
}

async fn get(url: &str, key: &str, route: &str) -> anyhow::Result<serde_json::Value> {
    let response = reqwest::Client::new()
        .get(format!("{}{route}", url.trim_end_matches('/')))
        .bearer_auth(key)
        .send()
        .await
        .with_context(|| format!("cannot reach the admin listener at {url}"))?;
    answer_of(response).await
}

async fn answer_of(response: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("the admin listener refused ({status}): {}", text.trim());
    }
    serde_json::from_str(&text).context("the admin listener's answer is not JSON")
}
