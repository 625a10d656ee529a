//! End to end over stdio: an rmcp client spawns a server, completes the
//! legacy `initialize` handshake and sends `tools/call` requests. The same
//! client drives Stockade and the native server.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rmcp::model::CallToolRequestParams;
use rmcp::service::{Peer, RunningService};
use rmcp::{RoleClient, ServiceExt};
use tokio::process::{Child, Command};

use crate::stats::Samples;
use crate::{TRANSFORM_INPUT, TRANSFORM_OUTPUT};

/// How long a server may take to exit once its stdin is closed.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// How to start one MCP stdio server.
pub struct ServerCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

impl ServerCommand {
    fn spawn(&self) -> Result<Child> {
        Command::new(&self.program)
            .args(&self.args)
            // Stockade's default: one audit line per call on stderr.
            .env("STOCKADE_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))
    }
}

/// A connected client and the server process behind it.
pub struct Session {
    client: RunningService<RoleClient, ()>,
    child: Child,
}

impl Session {
    /// Spawns the server and completes the handshake; returns the session
    /// and the time from spawn to the `initialize` response.
    pub async fn start(command: &ServerCommand) -> Result<(Self, Duration)> {
        let started = Instant::now();
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let stdin = child.stdin.take().context("no stdin pipe")?;
        let client = ()
            .serve((stdout, stdin))
            .await
            .with_context(|| format!("MCP handshake with {} failed", command.program.display()))?;
        let ready = started.elapsed();
        Ok((Self { client, child }, ready))
    }

    /// Closes the client's side and waits for the server to exit, so the
    /// next measurement does not share the CPU with a dying process.
    pub async fn close(mut self) -> Result<()> {
        self.client.cancel().await?;
        if tokio::time::timeout(EXIT_GRACE, self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
            bail!("the server did not exit within {EXIT_GRACE:?} of its stdin closing");
        }
        Ok(())
    }

    /// CPU time the server process has used so far.
    fn server_cpu(&self) -> Result<Duration> {
        process_cpu(self.child.id().context("the server has exited")?)
    }

    /// The server's peak resident set size so far, in bytes.
    pub fn peak_rss(&self) -> Result<u64> {
        process_peak_rss(self.child.id().context("the server has exited")?)
    }

    /// Number of tools the server lists.
    pub async fn tool_count(&self) -> Result<usize> {
        Ok(self.client.list_all_tools().await?.len())
    }

    /// Times `calls` sequential calls of `probe`, appending to `timings`.
    async fn sequential(
        &self,
        probe: &Probe,
        calls: usize,
        timings: &mut Vec<Duration>,
    ) -> Result<()> {
        let peer = self.client.peer();
        for _ in 0..calls {
            let started = Instant::now();
            call_checked(peer, probe).await?;
            timings.push(started.elapsed());
        }
        Ok(())
    }

    /// Runs `total` calls with `in_flight` requests outstanding at all
    /// times on this one session; returns the time taken.
    async fn concurrent(&self, tool: &str, in_flight: usize, total: usize) -> Result<Duration> {
        let remaining = Arc::new(AtomicUsize::new(total));
        let started = Instant::now();
        let mut workers = Vec::with_capacity(in_flight);
        for _ in 0..in_flight {
            let peer = self.client.peer().clone();
            let remaining = Arc::clone(&remaining);
            let probe = Probe::transform(tool);
            workers.push(tokio::spawn(async move {
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    call_checked(&peer, &probe).await?;
                }
                anyhow::Ok(())
            }));
        }
        for worker in workers {
            worker.await??;
        }
        Ok(started.elapsed())
    }
}

/// What sequential calls cost one server.
pub struct Sequential {
    /// Round-trip time of each call, as the client saw it.
    pub latency: Samples,
    /// Server CPU time per call, all its threads together.
    pub cpu_per_call: Duration,
}

/// Rounds in which every session takes its turn, so that a change in the
/// machine's background load falls on every server alike.
const ROUNDS: usize = 10;

/// Sequential `transform` calls on each session: `warmup` untimed calls
/// each, then `calls` timed calls each, taken in alternating rounds.
pub async fn sequential(
    sessions: &[&Session],
    tool: &str,
    warmup: usize,
    calls: usize,
) -> Result<Vec<Sequential>> {
    let probe = Probe::transform(tool);
    let pairs: Vec<_> = sessions.iter().map(|s| (*s, &probe)).collect();
    sequential_probes(&pairs, warmup, calls).await
}

/// Sequential calls of each session's own probe: `warmup` untimed calls
/// each, then `calls` timed calls each, taken in alternating rounds.
pub async fn sequential_probes(
    sessions: &[(&Session, &Probe)],
    warmup: usize,
    calls: usize,
) -> Result<Vec<Sequential>> {
    let mut timings = vec![Vec::with_capacity(calls); sessions.len()];
    let mut cpu = vec![Duration::ZERO; sessions.len()];
    for (session, probe) in sessions {
        session.sequential(probe, warmup, &mut Vec::new()).await?;
    }
    for round in 0..ROUNDS {
        let share = calls / ROUNDS + usize::from(round < calls % ROUNDS);
        for (i, (session, probe)) in sessions.iter().enumerate() {
            let before = session.server_cpu()?;
            session.sequential(probe, share, &mut timings[i]).await?;
            cpu[i] += session.server_cpu()? - before;
        }
    }
    let calls = u32::try_from(calls)?;
    Ok(timings
        .into_iter()
        .zip(cpu)
        .map(|(t, cpu)| Sequential {
            latency: Samples::new(t),
            cpu_per_call: cpu / calls,
        })
        .collect())
}

/// Calls per second on each session with `in_flight` requests outstanding,
/// `total` calls each, taken in alternating rounds.
pub async fn concurrent(
    sessions: &[&Session],
    tool: &str,
    in_flight: usize,
    total: usize,
) -> Result<Vec<f64>> {
    let mut elapsed = vec![Duration::ZERO; sessions.len()];
    for _ in 0..ROUNDS {
        for (i, session) in sessions.iter().enumerate() {
            elapsed[i] += session.concurrent(tool, in_flight, total / ROUNDS).await?;
        }
    }
    let done = (total / ROUNDS * ROUNDS) as f64;
    Ok(elapsed
        .into_iter()
        .map(|e| done / e.as_secs_f64())
        .collect())
}

/// CPU time process `pid` has used so far, all its live threads together
/// (from the scheduler's per-thread accounting).
pub fn process_cpu(pid: u32) -> Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        let on_cpu: u64 = stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .context("unreadable schedstat")?;
        total += on_cpu;
    }
    Ok(Duration::from_nanos(total))
}

/// A call whose answer is checked: the tool, its arguments and the text
/// it must answer.
#[derive(Clone)]
pub struct Probe {
    tool: String,
    arguments: serde_json::Map<String, serde_json::Value>,
    expected: String,
}

impl Probe {
    /// A call of `tool` with `arguments` (a JSON object) that must answer
    /// `expected`.
    pub fn new(tool: &str, arguments: serde_json::Value, expected: &str) -> Self {
        let serde_json::Value::Object(arguments) = arguments else {
            panic!("a probe's arguments are a JSON object");
        };
        Self {
            tool: tool.to_owned(),
            arguments,
            expected: expected.to_owned(),
        }
    }

    /// text-kit's `transform` (upper case), under the name `tool`.
    pub fn transform(tool: &str) -> Self {
        Self::new(
            tool,
            serde_json::json!({ "text": TRANSFORM_INPUT, "op": "upper" }),
            TRANSFORM_OUTPUT,
        )
    }
}

/// One call whose answer is checked.
async fn call_checked(peer: &Peer<RoleClient>, probe: &Probe) -> Result<()> {
    let result = peer
        .call_tool(
            CallToolRequestParams::new(probe.tool.clone()).with_arguments(probe.arguments.clone()),
        )
        .await?;
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.as_str());
    if result.is_error == Some(true) || text != Some(probe.expected.as_str()) {
        bail!("unexpected answer to {}: {text:?}", probe.tool);
    }
    Ok(())
}

/// What `runs` fresh starts of one server took.
pub struct Starts {
    /// Spawn-to-`initialize`-response time of each.
    pub ready: Samples,
    /// The highest peak resident set size of any of them, in bytes, read
    /// once its tools are listed.
    pub peak_rss: u64,
}

/// Spawn-to-`initialize`-response times over `runs` fresh processes of
/// each server, started in turn; each must list the tools it is paired with.
pub async fn startup(servers: &[(&ServerCommand, usize)], runs: usize) -> Result<Vec<Starts>> {
    let mut timings = vec![Vec::with_capacity(runs); servers.len()];
    let mut peaks = vec![0u64; servers.len()];
    for _ in 0..runs {
        for (i, (command, expected_tools)) in servers.iter().enumerate() {
            let (ready, peak) = start_once(command, *expected_tools).await?;
            timings[i].push(ready);
            peaks[i] = peaks[i].max(peak);
        }
    }
    Ok(timings
        .into_iter()
        .zip(peaks)
        .map(|(t, peak_rss)| Starts {
            ready: Samples::new(t),
            peak_rss,
        })
        .collect())
}

/// One start: spawn-to-`initialize`-response time of a fresh process, and
/// its peak resident set size once it has listed its tools.
pub async fn start_once(command: &ServerCommand, expected_tools: usize) -> Result<(Duration, u64)> {
    let (session, ready) = Session::start(command).await?;
    let listed = session.tool_count().await?;
    let peak = session.peak_rss()?;
    session.close().await?;
    if listed != expected_tools {
        bail!(
            "{} listed {listed} tools, expected {expected_tools}",
            command.program.display()
        );
    }
    Ok((ready, peak))
}

/// The peak resident set size of process `pid` so far, in bytes.
pub fn process_peak_rss(pid: u32) -> Result<u64> {
    process_memory(pid, "VmHWM")
}

/// One memory figure (`VmRSS`, `VmHWM`, ...) of process `pid`'s status,
/// in bytes.
pub fn process_memory(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no {field} in the process status"))?;
    Ok(kib * 1024)
}
