//! `stockade selftest confinement`: applies the serving process's rules to
//! itself, then tries what they forbid (and a little of what they allow)
//! and reports each attempt.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::Path;
use std::process::ExitCode;

use super::plan::{Extras, Plan};
use super::{Level, Outcome};
use crate::config::StockadeConfig;
use stockade_host_api::fs::FsMode;

/// One attempt and what was expected of it.
struct Probe {
    /// What was tried, e.g. `read /etc/shadow`.
    attempt: String,
    /// Whether the rules should let it through.
    should_pass: bool,
    /// What happened.
    result: std::io::Result<()>,
}

/// What must exist before the rules apply: a listener on a port the plan
/// does not connect to, a port it does not bind, an abstract socket.
struct Targets {
    _listener: TcpListener,
    listening_port: u16,
    free_port: u16,
    _abstract: UnixListener,
    abstract_name: String,
}

/// Runs the self-test; exit 0 when every forbidden attempt was refused and
/// every allowed one went through, under full enforcement.
pub fn run(config_path: &Path, dev_secrets: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (config, manifest_errors) = StockadeConfig::load(config_path)?;
    let extras = Extras {
        dev_secrets,
        http: None,
    };
    let plan = Plan::for_serving(config_path, &config, &manifest_errors, extras);
    let targets = prepare(&plan)?;
    let outcome = super::apply(&plan, false)?;
    println!("{}", outcome.describe());
    println!("\nReachable (everything else is not):");
    for line in plan.describe() {
        println!("  {line}");
    }
    let probes = attempt(config_path, &config, &plan, &targets);
    println!("\nAttempts:");
    let mut failures = 0;
    for probe in &probes {
        let (verdict, happened, detail) = match (&probe.result, probe.should_pass) {
            (Ok(()), true) => ("ok", "allowed", String::new()),
            (Err(err), false) if refused(err) => ("ok", "denied", format!("  ({err})")),
            (Ok(()), false) => ("FAIL", "allowed", "  (the rules forbid it)".to_owned()),
            (Err(err), _) => ("FAIL", "failed", format!("  ({err})")),
        };
        if verdict == "FAIL" {
            failures += 1;
        }
        println!("  {verdict:<4}  {happened:<7}  {}{detail}", probe.attempt);
    }
    let full = outcome.level == Level::Full;
    println!("\n{}", summary(&outcome, failures, probes.len(), full));
    Ok(if failures == 0 && full {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summary(outcome: &Outcome, failures: usize, total: usize, full: bool) -> String {
    match (failures, full) {
        (0, true) => format!("confinement holds: {total} attempts, each as the rules say"),
        (0, false) => format!(
            "every attempt went as expected, but {}",
            outcome.shortfall().unwrap_or_default()
        ),
        _ => format!("{failures} of {total} attempts did not go as the rules say"),
    }
}

/// A refusal by the rules: EACCES from the file system and TCP, EPERM
/// from scopes and `execve`.
fn refused(err: &std::io::Error) -> bool {
    err.kind() == ErrorKind::PermissionDenied
}

fn prepare(plan: &Plan) -> anyhow::Result<Targets> {
    let loopback = (Ipv4Addr::LOCALHOST, 0);
    let mut listener = TcpListener::bind(loopback)?;
    while plan.connect.contains_key(&listener.local_addr()?.port()) {
        listener = TcpListener::bind(loopback)?;
    }
    let free_port = loop {
        let port = TcpListener::bind(loopback)?.local_addr()?.port();
        if !plan.bind.contains_key(&port) {
            break port;
        }
    };
    let abstract_name = format!("stockade-selftest-{}", std::process::id());
    let abstract_socket =
        UnixListener::bind_addr(&UnixAddr::from_abstract_name(abstract_name.as_bytes())?)?;
    Ok(Targets {
        listening_port: listener.local_addr()?.port(),
        _listener: listener,
        free_port,
        _abstract: abstract_socket,
        abstract_name,
    })
}

fn attempt(
    config_path: &Path,
    config: &StockadeConfig,
    plan: &Plan,
    targets: &Targets,
) -> Vec<Probe> {
    let mut probes = Vec::new();
    let mut probe = |attempt: String, should_pass: bool, result: std::io::Result<()>| {
        probes.push(Probe {
            attempt,
            should_pass,
            result,
        })
    };
    for file in ["/etc/shadow", "/etc/passwd", "/proc/1/environ"] {
        let path = Path::new(file);
        if path.exists() && !plan.covers_read(path) {
            probe(format!("read {file}"), false, std::fs::read(path).map(drop));
        }
    }
    for dir in ["/", "/root", "/home"] {
        let path = Path::new(dir);
        if path.is_dir() && !plan.covers_read(path) {
            probe(
                format!("list {dir}"),
                false,
                std::fs::read_dir(path).map(drop),
            );
        }
    }
    probe(
        format!("read {}", config_path.display()),
        true,
        std::fs::read(config_path).map(drop),
    );
    let config_dir = super::plan::directory_of(config_path);
    let mut write_targets = vec![config_dir, std::env::temp_dir()];
    for tool in &config.tools {
        for grant in &tool.fs {
            match grant.mode {
                FsMode::ReadOnly => write_targets.push(grant.host_dir.clone()),
                FsMode::ReadWrite => probe(
                    format!("write in {} (tool {})", grant.host_dir.display(), tool.name),
                    true,
                    write_probe(&grant.host_dir),
                ),
            }
        }
    }
    probe(
        format!("write in {}", config.server.cache_dir.display()),
        true,
        write_probe(&config.server.cache_dir),
    );
    for dir in write_targets {
        if !plan.covers_write(&dir) {
            probe(
                format!("write in {}", dir.display()),
                false,
                write_probe(&dir),
            );
        }
    }
    probe(
        "run /bin/sh".into(),
        false,
        std::process::Command::new("/bin/sh")
            .args(["-c", "true"])
            .status()
            .map(drop),
    );
    probe(
        format!(
            "connect to 127.0.0.1:{} (a port no destination uses)",
            targets.listening_port
        ),
        false,
        TcpStream::connect((Ipv4Addr::LOCALHOST, targets.listening_port)).map(drop),
    );
    probe(
        format!("bind 127.0.0.1:{} (not a listen port)", targets.free_port),
        false,
        TcpListener::bind((Ipv4Addr::LOCALHOST, targets.free_port)).map(drop),
    );
    probe(
        format!("connect to abstract socket @{}", targets.abstract_name),
        false,
        UnixAddr::from_abstract_name(targets.abstract_name.as_bytes())
            .and_then(|addr| UnixStream::connect_addr(&addr))
            .map(drop),
    );
    let parent = std::os::unix::process::parent_id();
    probe(
        format!("signal the parent process ({parent})"),
        false,
        signal_probe(parent),
    );
    probes
}

/// Creates and removes a file in `dir`.
fn write_probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(format!(".stockade-selftest-{}", std::process::id()));
    std::fs::write(&path, b"probe")?;
    std::fs::remove_file(&path)
}

/// Signal 0 (a check that delivers nothing) to `pid`.
fn signal_probe(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) with signal 0 has no effect on the target; it only
    // reports whether a signal could be sent.
    match unsafe { libc::kill(pid, 0) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
