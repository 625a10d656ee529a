//! `stockade-bench`: what Stockade's per-call isolation costs, beside
//! native baselines measured in the same run.
//!
//! Run with `cargo xtask bench` (builds everything first), or
//! `cargo xtask bench --quick` for a shorter, noisier run; `--only sandbox`
//! (or `redaction`, `startup`, `stdio`, `audit`, `http`, `memory`) runs one
//! section.

mod demo_sandbox;
mod deploy;
mod http;
mod memory;
mod raw;
mod redaction;
mod sandbox;
mod stats;
mod stdio;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::deploy::{Artifacts, Scratch};
use crate::sandbox::SandboxBench;
use crate::stats::{Figure, Row, Samples, show_bytes, show_duration, show_rate};
use crate::stdio::{ServerCommand, Session};

/// Targets the figures are held to.
const TARGET_SANDBOX_OVERHEAD: Duration = Duration::from_micros(50);
const TARGET_STDIO_RATIO: f64 = 1.5;
/// stdio `tools/call` p50 from a raw client, over the raw JSON-line floor's.
const TARGET_FLOOR_RATIO: f64 = 3.0;
/// Server CPU per stdio `tools/call`, all threads.
const TARGET_CALL_CPU: Duration = Duration::from_micros(40);
/// stdio `tools/call` p50 and server CPU per call from a raw client, over
/// those of the floor with the tool in a fresh sandbox instance per call:
/// what Stockade's protocol, policy, validation and audit may cost on top
/// of the isolation every call must have.
const TARGET_SANDBOXED_FLOOR_RATIO: f64 = 2.0;
/// stdio `tools/call`s per second with 8 in flight on one session.
const TARGET_PIPELINED_RATE: f64 = 30_000.0;
const TARGET_WARM_START: Duration = Duration::from_millis(100);
const TARGET_HTTP_RATE: f64 = 5_000.0;
const TARGET_AUTH_COST: Duration = Duration::from_micros(20);

/// Concurrent clients in the HTTP measurements.
const HTTP_CLIENTS: [usize; 3] = [1, 8, 64];

/// The text every measured call transforms, and what `upper` makes of it.
const TRANSFORM_INPUT: &str = "Hello, Stockade bench";
const TRANSFORM_OUTPUT: &str = "HELLO, STOCKADE BENCH";

/// Largest share of stdio `tools/call` throughput the audit directory may
/// cost (fsync batched).
const TARGET_AUDIT_COST: f64 = 0.10;

/// Requests kept outstanding in the concurrent stdio measurement.
const IN_FLIGHT: usize = 8;
/// Start-up to ready with `MANY_MANIFESTS` manifests of one component.
const TARGET_MANY_START: Duration = Duration::from_millis(150);
/// Peak RSS after starting with `MANY_MANIFESTS` manifests.
const TARGET_MANY_RSS: u64 = 100 << 20;
/// Start-up to ready with `DISTINCT_COMPONENTS` components, cache warm.
const TARGET_DISTINCT_START: Duration = Duration::from_millis(300);
/// Distinct components in the many-components start-up measurement.
const DISTINCT_COMPONENTS: usize = 100;
/// Manifests in the many-tools start-up measurement.
const MANY_MANIFESTS: usize = 500;
/// Tools text-kit offers.
const TEXT_KIT_TOOLS: usize = 3;
/// Tools the three examples offer: text-kit, files (4) and fetch (1).
const EXAMPLE_TOOLS: usize = TEXT_KIT_TOOLS + 4 + 1;

/// How many of each thing one run measures.
struct Plan {
    sandbox_warmup: usize,
    sandbox_calls: usize,
    cold_cache_calls: usize,
    native_calls: usize,
    sandbox_calls_per_task: usize,
    native_calls_per_thread: usize,
    stdio_warmup: usize,
    stdio_calls: usize,
    concurrent_calls: usize,
    /// Calls after which the server's RSS is read again.
    soak_calls: usize,
    memory_in_flight: usize,
    memory_bursts: usize,
    warm_starts: usize,
    cold_starts: usize,
}

impl Plan {
    fn full() -> Self {
        Self {
            sandbox_warmup: 1_000,
            sandbox_calls: 10_000,
            cold_cache_calls: 1_000,
            native_calls: 100_000,
            sandbox_calls_per_task: 5_000,
            native_calls_per_thread: 1_000_000,
            stdio_warmup: 200,
            stdio_calls: 2_000,
            concurrent_calls: 4_000,
            soak_calls: 100_000,
            memory_in_flight: 1_000,
            memory_bursts: 5,
            warm_starts: 20,
            cold_starts: 3,
        }
    }

    fn quick() -> Self {
        Self {
            sandbox_warmup: 100,
            sandbox_calls: 1_000,
            cold_cache_calls: 200,
            native_calls: 10_000,
            sandbox_calls_per_task: 500,
            native_calls_per_thread: 100_000,
            stdio_warmup: 50,
            stdio_calls: 300,
            concurrent_calls: 600,
            soak_calls: 10_000,
            memory_in_flight: 200,
            memory_bursts: 2,
            warm_starts: 5,
            cold_starts: 1,
        }
    }
}

/// The parts of a run, each selectable with `--only`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Sandbox,
    Redaction,
    Startup,
    Stdio,
    Audit,
    Http,
    Memory,
    Polyglot,
}

impl Section {
    const ALL: [Self; 8] = [
        Self::Sandbox,
        Self::Redaction,
        Self::Startup,
        Self::Stdio,
        Self::Audit,
        Self::Http,
        Self::Memory,
        Self::Polyglot,
    ];

    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "sandbox" => Self::Sandbox,
            "redaction" => Self::Redaction,
            "startup" => Self::Startup,
            "stdio" => Self::Stdio,
            "audit" => Self::Audit,
            "http" => Self::Http,
            "memory" => Self::Memory,
            "polyglot" => Self::Polyglot,
            other => bail!(
                "unknown section `{other}`: sandbox, redaction, startup, stdio, audit, http, \
                 memory or polyglot"
            ),
        })
    }
}

/// A target and whether this run met it.
struct Verdict {
    what: String,
    met: bool,
}

/// What one section measured.
#[derive(Default)]
struct Findings {
    rows: Vec<Row>,
    verdicts: Vec<Verdict>,
}

fn main() -> ExitCode {
    match parse_and_run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stockade-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_and_run() -> Result<()> {
    let mut quick = false;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let name = args.next().unwrap_or_default();
                only.push(Section::parse(&name)?);
            }
            "-h" | "--help" => {
                println!(
                    "usage: stockade-bench [--quick] [--only sandbox|redaction|startup|stdio|audit|http|memory|polyglot]...\n\n\
                     Measures Stockade's per-call isolation against native baselines\n\
                     and prints a Markdown table. Build first: `cargo xtask bench`.\n\n\
                     --quick   fewer samples: a shorter, noisier run\n\
                     --only    run only the named section (repeatable)"
                );
                return Ok(());
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    if only.is_empty() {
        only = Section::ALL.to_vec();
    }
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&plan, quick, &only))
}

async fn run(plan: &Plan, quick: bool, sections: &[Section]) -> Result<()> {
    let started = Instant::now();
    let artifacts = Artifacts::locate()?;
    let scratch = Scratch::new()?;
    let mut findings = Findings::default();
    for section in Section::ALL {
        if sections.contains(&section) {
            match section {
                Section::Sandbox => {
                    measure_sandbox(plan, &artifacts, &scratch, &mut findings).await?
                }
                Section::Redaction => measure_redaction(plan, &mut findings),
                Section::Startup => {
                    measure_startup(plan, &artifacts, &scratch, &mut findings).await?
                }
                Section::Stdio => measure_stdio(plan, &artifacts, &scratch, &mut findings).await?,
                Section::Audit => measure_audit(plan, &artifacts, &scratch, &mut findings).await?,
                Section::Http => measure_http(plan, &artifacts, &scratch, &mut findings).await?,
                Section::Memory => {
                    measure_memory(plan, &artifacts, &scratch, &mut findings).await?
                }
                Section::Polyglot => {
                    measure_polyglot(plan, &artifacts, &scratch, &mut findings).await?
                }
            }
        }
    }

    println!();
    println!(
        "Stockade benchmark{} on {} ({} cores), {:.0} s",
        if quick { " (--quick)" } else { "" },
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
    println!();
    stats::print_table(&findings.rows);
    println!();
    println!(
        "Ratio: Stockade's time over the baseline's (p50), or the baseline's rate over \
         Stockade's; above 1 means Stockade costs more."
    );
    println!();
    println!("Targets:");
    for v in &findings.verdicts {
        println!("- {}: {}", if v.met { "met" } else { "NOT met" }, v.what);
    }
    Ok(())
}

/// What scrubbing a response costs a tool that holds a secret.
fn measure_redaction(plan: &Plan, findings: &mut Findings) {
    progress("redaction: scrubbing response bodies");
    let calls = plan.sandbox_calls / 10;
    for (size, with_value) in [(4 << 10, false), (64 << 10, false), (64 << 10, true)] {
        let body = redaction::body(size, with_value);
        findings.rows.push(Row {
            measure: format!(
                "scrub a {} KiB response body{} ({calls} times)",
                size >> 10,
                if with_value {
                    " holding the value once"
                } else {
                    ""
                }
            ),
            stockade: Figure::Latency(redaction::scrub_latency(&body, calls)),
            baseline_name: "one exact search for the raw value".into(),
            baseline: Figure::Latency(redaction::exact_search_latency(&body, calls)),
        });
    }
}

/// (a) and (c): the sandbox in this process against the native function.
async fn measure_sandbox(
    plan: &Plan,
    artifacts: &Artifacts,
    scratch: &Scratch,
    findings: &mut Findings,
) -> Result<()> {
    progress("sandbox: sequential calls");
    let text_kit = artifacts.wasm("text_kit")?;
    let digest = deploy::sha256_of(&text_kit)?;
    let bench = Arc::new(SandboxBench::new(
        &scratch.path("cache-sandbox"),
        &text_kit,
        &digest,
    )?);
    let sandbox_latency = bench
        .latency(plan.sandbox_warmup, plan.sandbox_calls, false)
        .await?;
    let native_latency = sandbox::native_latency(plan.native_calls / 10, plan.native_calls, false);
    let overhead = sandbox_latency.p50().saturating_sub(native_latency.p50());
    findings.verdicts.push(Verdict {
        what: format!(
            "sandbox overhead p50 (sandbox call minus native call) {} < {}",
            show_duration(overhead),
            show_duration(TARGET_SANDBOX_OVERHEAD)
        ),
        met: overhead < TARGET_SANDBOX_OVERHEAD,
    });
    findings.rows.push(Row {
        measure: format!(
            "sandbox call: fresh instance + `transform` + drop ({} calls)",
            sandbox_latency.len()
        ),
        stockade: Figure::Latency(sandbox_latency),
        baseline_name: "`text_kit::transform` natively".into(),
        baseline: Figure::Latency(native_latency),
    });

    progress("sandbox: sequential calls, caches cold");
    let cold = bench.latency(0, plan.cold_cache_calls, true).await?;
    let native_cold = sandbox::native_latency(plan.native_calls / 10, plan.cold_cache_calls, true);
    findings.rows.push(Row {
        measure: format!(
            "sandbox call, CPU caches cold: 16 MiB swept before each ({} calls)",
            cold.len()
        ),
        stockade: Figure::Latency(cold),
        baseline_name: "`text_kit::transform` natively, caches cold".into(),
        baseline: Figure::Latency(native_cold),
    });

    for tasks in [1, 2] {
        progress(&format!("sandbox: throughput with {tasks} task(s)"));
        let rate = bench.throughput(tasks, plan.sandbox_calls_per_task).await?;
        let native = sandbox::native_throughput(tasks, plan.native_calls_per_thread);
        findings.rows.push(Row {
            measure: format!("sandbox calls/s, {tasks} tokio task(s) calling at once"),
            stockade: Figure::Rate(rate),
            baseline_name: format!("native, {tasks} thread(s)"),
            baseline: Figure::Rate(native),
        });
    }
    Ok(())
}

fn stockade_serving(artifacts: &Artifacts, config: &Path) -> ServerCommand {
    ServerCommand {
        program: artifacts.stockade.clone(),
        args: vec![
            "serve".into(),
            "--config".into(),
            config.to_string_lossy().into_owned(),
        ],
    }
}

fn floor_server(artifacts: &Artifacts) -> ServerCommand {
    ServerCommand {
        program: artifacts.floor_server.clone(),
        args: Vec::new(),
    }
}

/// The floor with `transform` run in a fresh sandbox instance per call,
/// its compiled component cached in `cache_dir`.
fn sandboxed_floor_server(artifacts: &Artifacts, cache_dir: &Path) -> Result<ServerCommand> {
    Ok(ServerCommand {
        program: artifacts.floor_server.clone(),
        args: vec![
            "--sandbox".into(),
            artifacts.wasm("text_kit")?.to_string_lossy().into_owned(),
            cache_dir.to_string_lossy().into_owned(),
        ],
    })
}

fn native_server(artifacts: &Artifacts) -> ServerCommand {
    ServerCommand {
        program: artifacts.native_server.clone(),
        args: Vec::new(),
    }
}

/// The demo's three tools in the scratch directory, cache in `cache-warm`.
fn examples_config(artifacts: &Artifacts, scratch: &Scratch) -> Result<(Vec<String>, PathBuf)> {
    let examples = deploy::write_examples(artifacts, scratch.dir())?;
    let config = deploy::write_config(
        scratch.dir(),
        "examples.toml",
        &examples,
        &scratch.path("cache-warm"),
    )?;
    Ok((examples, config))
}

/// (d): spawn to `initialize` response.
async fn measure_startup(
    plan: &Plan,
    artifacts: &Artifacts,
    scratch: &Scratch,
    findings: &mut Findings,
) -> Result<()> {
    let (examples, examples_config) = examples_config(artifacts, scratch)?;
    let many = deploy::write_many_text_kits(artifacts, scratch.dir(), MANY_MANIFESTS)?;
    let many_config = deploy::write_config(
        scratch.dir(),
        "many.toml",
        &many,
        &scratch.path("cache-warm"),
    )?;
    let distinct = deploy::write_distinct_text_kits(artifacts, scratch.dir(), DISTINCT_COMPONENTS)?;
    let distinct_config = deploy::write_config(
        scratch.dir(),
        "distinct.toml",
        &distinct,
        &scratch.path("cache-warm"),
    )?;
    let native = native_server(artifacts);

    progress("start-up: cold cache");
    let mut cold = Vec::with_capacity(plan.cold_starts);
    for i in 0..plan.cold_starts {
        let cache = scratch.path(&format!("cache-cold-{i}"));
        let config =
            deploy::write_config(scratch.dir(), &format!("cold-{i}.toml"), &examples, &cache)?;
        let (ready, _) =
            stdio::start_once(&stockade_serving(artifacts, &config), EXAMPLE_TOOLS).await?;
        cold.push(ready);
    }
    let cold = Samples::new(cold);

    progress("start-up: warm cache");
    let warm_command = stockade_serving(artifacts, &examples_config);
    let many_command = stockade_serving(artifacts, &many_config);
    let distinct_command = stockade_serving(artifacts, &distinct_config);
    // Fill the shared cache (the distinct components compile here); not timed.
    stdio::start_once(&warm_command, EXAMPLE_TOOLS).await?;
    progress(&format!(
        "start-up: compiling {DISTINCT_COMPONENTS} distinct components once"
    ));
    stdio::start_once(&distinct_command, DISTINCT_COMPONENTS * TEXT_KIT_TOOLS).await?;
    let mut starts = stdio::startup(
        &[
            (&warm_command, EXAMPLE_TOOLS),
            (&many_command, MANY_MANIFESTS * TEXT_KIT_TOOLS),
            (&distinct_command, DISTINCT_COMPONENTS * TEXT_KIT_TOOLS),
            (&native, 1),
        ],
        plan.warm_starts,
    )
    .await?
    .into_iter();
    let (Some(warm), Some(many_starts), Some(distinct_starts), Some(native_starts)) =
        (starts.next(), starts.next(), starts.next(), starts.next())
    else {
        bail!("one series of start-ups per server");
    };

    findings.verdicts.push(Verdict {
        what: format!(
            "start-up with the three examples, cache warm, p50 {} < {}",
            show_duration(warm.ready.p50()),
            show_duration(TARGET_WARM_START)
        ),
        met: warm.ready.p50() < TARGET_WARM_START,
    });
    findings.verdicts.push(Verdict {
        what: format!(
            "start-up with {MANY_MANIFESTS} manifests of one component, p50 {} < {}, peak RSS {} < {}",
            show_duration(many_starts.ready.p50()),
            show_duration(TARGET_MANY_START),
            show_bytes(many_starts.peak_rss),
            show_bytes(TARGET_MANY_RSS)
        ),
        met: many_starts.ready.p50() < TARGET_MANY_START
            && many_starts.peak_rss < TARGET_MANY_RSS,
    });
    findings.verdicts.push(Verdict {
        what: format!(
            "start-up with {DISTINCT_COMPONENTS} distinct components, cache warm, p50 {} < {}",
            show_duration(distinct_starts.ready.p50()),
            show_duration(TARGET_DISTINCT_START)
        ),
        met: distinct_starts.ready.p50() < TARGET_DISTINCT_START,
    });
    let native = |measure: String, stockade: Figure, baseline: Figure| Row {
        measure,
        stockade,
        baseline_name: "native rmcp server".into(),
        baseline,
    };
    let native_ready = || Figure::Latency(native_starts.ready.clone());
    let warm_measure = format!(
        "start-up to `initialize` response, 3 example tools, cache warm ({} starts)",
        warm.ready.len()
    );
    let cold_measure = format!(
        "start-up, 3 example tools, cache cold: compiles ({} starts)",
        cold.len()
    );
    findings.rows.push(native(
        warm_measure,
        Figure::Latency(warm.ready),
        native_ready(),
    ));
    findings
        .rows
        .push(native(cold_measure, Figure::Latency(cold), native_ready()));
    let at_scale = [
        (
            format!(
                "{MANY_MANIFESTS} text-kit manifests ({} tools)",
                MANY_MANIFESTS * TEXT_KIT_TOOLS
            ),
            many_starts,
        ),
        (
            format!(
                "{DISTINCT_COMPONENTS} distinct components ({} tools)",
                DISTINCT_COMPONENTS * TEXT_KIT_TOOLS
            ),
            distinct_starts,
        ),
    ];
    for (what, starts) in at_scale {
        let count = starts.ready.len();
        findings.rows.push(native(
            format!("start-up, {what}, cache warm ({count} starts)"),
            Figure::Latency(starts.ready),
            native_ready(),
        ));
        findings.rows.push(native(
            format!("peak RSS after start-up, {what}"),
            Figure::Bytes(starts.peak_rss),
            Figure::Bytes(native_starts.peak_rss),
        ));
    }
    Ok(())
}

/// (b) and (c): `tools/call` over stdio, one session per server.
async fn measure_stdio(
    plan: &Plan,
    artifacts: &Artifacts,
    scratch: &Scratch,
    findings: &mut Findings,
) -> Result<()> {
    let (_, examples_config) = examples_config(artifacts, scratch)?;
    progress("stdio: sequential calls");
    let (stockade, _) = Session::start(&stockade_serving(artifacts, &examples_config)).await?;
    let (native, _) = Session::start(&native_server(artifacts)).await?;
    let sessions = [&stockade, &native];
    let mut sequential =
        stdio::sequential(&sessions, "transform", plan.stdio_warmup, plan.stdio_calls)
            .await?
            .into_iter();
    progress(&format!("stdio: {IN_FLIGHT} calls in flight"));
    let rates = stdio::concurrent(&sessions, "transform", IN_FLIGHT, plan.concurrent_calls).await?;
    stockade.close().await?;
    native.close().await?;
    let (Some(stockade_seq), Some(native_seq), &[stockade_rate, native_rate]) =
        (sequential.next(), sequential.next(), rates.as_slice())
    else {
        bail!("one series of calls per server");
    };

    let ratio = stockade_seq.latency.p50().as_secs_f64() / native_seq.latency.p50().as_secs_f64();
    findings.verdicts.push(Verdict {
        what: format!("stdio `tools/call` p50 {ratio:.3}x native <= {TARGET_STDIO_RATIO}x"),
        met: ratio <= TARGET_STDIO_RATIO,
    });
    findings.rows.push(Row {
        measure: format!(
            "stdio `tools/call`, sequential ({} calls)",
            stockade_seq.latency.len()
        ),
        stockade: Figure::Latency(stockade_seq.latency),
        baseline_name: "native rmcp server".into(),
        baseline: Figure::Latency(native_seq.latency),
    });
    findings.rows.push(Row {
        measure: "server CPU time per sequential `tools/call`, all threads (mean)".into(),
        stockade: Figure::Mean(stockade_seq.cpu_per_call),
        baseline_name: "native rmcp server".into(),
        baseline: Figure::Mean(native_seq.cpu_per_call),
    });
    findings.rows.push(Row {
        measure: format!("stdio `tools/call`/s, {IN_FLIGHT} in flight on one session"),
        stockade: Figure::Rate(stockade_rate),
        baseline_name: "native rmcp server".into(),
        baseline: Figure::Rate(native_rate),
    });
    let sandboxed_floor = sandboxed_floor_server(artifacts, &scratch.path("cache-floor"))?;
    measure_stdio_raw(plan, artifacts, &examples_config, sandboxed_floor, findings).await
}

/// The same calls from a raw JSON-RPC client (blocking line I/O, no
/// protocol library), against the native rmcp server, the raw JSON-line
/// floor, and that floor with the tool in a fresh sandbox instance per
/// call (`sandboxed_floor`).
async fn measure_stdio_raw(
    plan: &Plan,
    artifacts: &Artifacts,
    config: &Path,
    sandboxed_floor: ServerCommand,
    findings: &mut Findings,
) -> Result<()> {
    progress("stdio: raw client");
    let commands = [
        stockade_serving(artifacts, config),
        native_server(artifacts),
        floor_server(artifacts),
        sandboxed_floor,
    ];
    let (warmup, calls, total, soak) = (
        plan.stdio_warmup,
        plan.stdio_calls,
        plan.concurrent_calls,
        plan.soak_calls,
    );
    let (sequential, rates, (rss_before, rss_after)) = tokio::task::spawn_blocking(move || {
        let mut sessions = commands
            .iter()
            .map(raw::RawSession::start)
            .collect::<Result<Vec<_>>>()?;
        let sequential = raw::sequential(&mut sessions, warmup, calls)?;
        let rates = raw::pipelined(&mut sessions, IN_FLIGHT, total)?;
        let before = sessions[0].rss()?;
        raw::pipelined(&mut sessions[..1], IN_FLIGHT, soak)?;
        let after = sessions[0].rss()?;
        for session in sessions {
            session.close()?;
        }
        anyhow::Ok((sequential, rates, (before, after)))
    })
    .await??;
    let (
        [stockade, native, floor, sandboxed],
        &[stockade_rate, native_rate, floor_rate, sandboxed_rate],
    ) = (
        <[raw::RawSequential; 4]>::try_from(sequential)
            .map_err(|_| anyhow::anyhow!("one series of raw calls per server"))?,
        rates.as_slice(),
    )
    else {
        bail!("one rate per server");
    };

    let floor_ratio = stockade.latency.p50().as_secs_f64() / floor.latency.p50().as_secs_f64();
    findings.verdicts.push(Verdict {
        what: format!(
            "stdio `tools/call` p50, raw client, {floor_ratio:.2}x the JSON-line floor <= {TARGET_FLOOR_RATIO}x"
        ),
        met: floor_ratio <= TARGET_FLOOR_RATIO,
    });
    findings.verdicts.push(Verdict {
        what: format!(
            "server CPU per call, raw client, {} <= {}",
            show_duration(stockade.cpu_per_call),
            show_duration(TARGET_CALL_CPU)
        ),
        met: stockade.cpu_per_call <= TARGET_CALL_CPU,
    });
    findings.verdicts.push(Verdict {
        what: format!(
            "stdio `tools/call`/s, raw client, {IN_FLIGHT} in flight: {} >= {}",
            show_rate(stockade_rate),
            show_rate(TARGET_PIPELINED_RATE)
        ),
        met: stockade_rate >= TARGET_PIPELINED_RATE,
    });
    let sandboxed_ratio =
        stockade.latency.p50().as_secs_f64() / sandboxed.latency.p50().as_secs_f64();
    findings.verdicts.push(Verdict {
        what: format!(
            "stdio `tools/call` p50, raw client, {sandboxed_ratio:.2}x the floor with a fresh sandbox instance per call <= {TARGET_SANDBOXED_FLOOR_RATIO}x"
        ),
        met: sandboxed_ratio <= TARGET_SANDBOXED_FLOOR_RATIO,
    });
    let sandboxed_cpu_ratio =
        stockade.cpu_per_call.as_secs_f64() / sandboxed.cpu_per_call.as_secs_f64();
    findings.verdicts.push(Verdict {
        what: format!(
            "server CPU per call, raw client, {sandboxed_cpu_ratio:.2}x the floor with a fresh sandbox instance per call <= {TARGET_SANDBOXED_FLOOR_RATIO}x"
        ),
        met: sandboxed_cpu_ratio <= TARGET_SANDBOXED_FLOOR_RATIO,
    });
    let floor_name = "raw JSON-line floor";
    let sandboxed_name = "floor, tool in a fresh sandbox instance";
    let native_name = "native rmcp server";
    let baselines = [
        (floor_name, &floor),
        (sandboxed_name, &sandboxed),
        (native_name, &native),
    ];
    let latency = |name: &str| {
        format!(
            "stdio `tools/call`, sequential, raw client ({} calls), against the {name}",
            stockade.latency.len()
        )
    };
    for (name, baseline) in baselines {
        findings.rows.push(Row {
            measure: latency(name),
            stockade: Figure::Latency(stockade.latency.clone()),
            baseline_name: name.into(),
            baseline: Figure::Latency(baseline.latency.clone()),
        });
    }
    for (name, baseline) in baselines {
        findings.rows.push(Row {
            measure: "server CPU per `tools/call`, raw client, all threads (mean)".into(),
            stockade: Figure::Mean(stockade.cpu_per_call),
            baseline_name: name.into(),
            baseline: Figure::Mean(baseline.cpu_per_call),
        });
    }
    findings.rows.push(Row {
        measure: format!("server RSS after {soak} more calls, {IN_FLIGHT} in flight"),
        stockade: Figure::Bytes(rss_after),
        baseline_name: "the same server before them".into(),
        baseline: Figure::Bytes(rss_before),
    });
    for (name, rate) in [
        (floor_name, floor_rate),
        (sandboxed_name, sandboxed_rate),
        (native_name, native_rate),
    ] {
        findings.rows.push(Row {
            measure: format!("stdio `tools/call`/s, raw client, {IN_FLIGHT} in flight"),
            stockade: Figure::Rate(stockade_rate),
            baseline_name: name.into(),
            baseline: Figure::Rate(rate),
        });
    }
    Ok(())
}

/// Memory at scale: bursts of calls in flight, each waiting in a host call.
async fn measure_memory(
    plan: &Plan,
    artifacts: &Artifacts,
    scratch: &Scratch,
    findings: &mut Findings,
) -> Result<()> {
    let in_flight = plan.memory_in_flight;
    let bursts = plan.memory_bursts;
    progress(&format!(
        "memory: {bursts} bursts of {in_flight} calls in flight"
    ));
    let target = memory::slow_server().await?;
    let config = memory::write_config(
        artifacts,
        scratch.dir(),
        &scratch.path("cache-warm"),
        target,
        in_flight,
    )?;
    let command = stockade_serving(artifacts, &config);
    let seen =
        tokio::task::spawn_blocking(move || memory::bursts(&command, target, in_flight, bursts))
            .await??;
    findings.rows.push(Row {
        measure: format!(
            "peak RSS, {in_flight} calls in flight, each waiting in a host call (first burst)"
        ),
        stockade: Figure::Bytes(seen.first),
        baseline_name: "the same server before it".into(),
        baseline: Figure::Bytes(seen.before),
    });
    findings.rows.push(Row {
        measure: format!("peak RSS after {bursts} such bursts"),
        stockade: Figure::Bytes(seen.last),
        baseline_name: "after the first burst".into(),
        baseline: Figure::Bytes(seen.first),
    });
    Ok(())
}

/// What the audit trail costs a stdio `tools/call`: the same server with
/// its records in a signed audit directory (fsync batched, the default;
/// and fsync on every record) against its records on standard error,
/// discarded (the cheapest sink there is).
async fn measure_audit(
    plan: &Plan,
    artifacts: &Artifacts,
    scratch: &Scratch,
    findings: &mut Findings,
) -> Result<()> {
    let (_, config) = examples_config(artifacts, scratch)?;
    let key = scratch.path("audit.key");
    let made = std::process::Command::new(&artifacts.stockade)
        .args(["keygen", "--out"])
        .arg(&key)
        .output()?;
    if !made.status.success() {
        bail!(
            "stockade keygen failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let base = std::fs::read_to_string(&config)?;
    let with_audit = |name: &str, fsync: &str| -> Result<PathBuf> {
        let path = scratch.path(&format!("{name}.toml"));
        let text = format!(
            "{base}\n[audit]\ndir = {dir:?}\nsigning_key_file = {key:?}\nfsync = {fsync:?}\n",
            dir = scratch.path(name).to_string_lossy(),
            key = key.to_string_lossy(),
        );
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let batch = with_audit("audit-batch", "batch")?;
    let every = with_audit("audit-every", "every")?;
    let baseline = "the same, records on stderr (discarded)";
    // Each policy is measured against its own baseline run beside it, so
    // the disk traffic of one does not fall on the other's rounds.
    for (sink, audited) in [("fsync batch", &batch), ("fsync every record", &every)] {
        progress(&format!("audit: {sink}"));
        let (on_stderr, _) = Session::start(&stockade_serving(artifacts, &config)).await?;
        let (to_dir, _) = Session::start(&stockade_serving(artifacts, audited)).await?;
        let sessions = [&to_dir, &on_stderr];
        let sequential =
            stdio::sequential(&sessions, "transform", plan.stdio_warmup, plan.stdio_calls).await?;
        let rates =
            stdio::concurrent(&sessions, "transform", IN_FLIGHT, plan.concurrent_calls).await?;
        on_stderr.close().await?;
        to_dir.close().await?;
        let [dir_seq, stderr_seq] = <[stdio::Sequential; 2]>::try_from(sequential)
            .map_err(|_| anyhow::anyhow!("one series of calls per server"))?;
        let &[dir_rate, stderr_rate] = rates.as_slice() else {
            bail!("one rate per server");
        };
        if audited == &batch {
            let cost = 1.0 - dir_rate / stderr_rate;
            findings.verdicts.push(Verdict {
                what: format!(
                    "audit to a signed directory (fsync batch) costs {:.1}% of stdio `tools/call` throughput < {:.0}%",
                    cost * 100.0,
                    TARGET_AUDIT_COST * 100.0
                ),
                met: cost < TARGET_AUDIT_COST,
            });
        }
        findings.rows.push(Row {
            measure: format!(
                "stdio `tools/call`, sequential, audit to a signed directory, {sink} ({} calls)",
                dir_seq.latency.len()
            ),
            stockade: Figure::Latency(dir_seq.latency),
            baseline_name: baseline.into(),
            baseline: Figure::Latency(stderr_seq.latency),
        });
        findings.rows.push(Row {
            measure: format!(
                "stdio `tools/call`/s, {IN_FLIGHT} in flight, audit to a signed directory, {sink}"
            ),
            stockade: Figure::Rate(dir_rate),
            baseline_name: baseline.into(),
            baseline: Figure::Rate(stderr_rate),
        });
    }
    Ok(())
}

/// `tools/call` over HTTP with each kind of credential, and at 1, 8 and
/// 64 clients with JWTs, against the native rmcp HTTP server.
async fn measure_http(
    plan: &Plan,
    artifacts: &Artifacts,
    scratch: &Scratch,
    findings: &mut Findings,
) -> Result<()> {
    let (_, config) = examples_config(artifacts, scratch)?;
    let issuer = http::Issuer::start().await?;
    let (key, key_config) = http::api_key()?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&key_config);
    text.push_str(&issuer.config());
    let config = scratch.path("http.toml");
    std::fs::write(&config, text)?;
    let stockade = http::start(
        &artifacts.stockade,
        &[
            "serve".into(),
            "--config".into(),
            config.to_string_lossy().into_owned(),
        ],
        "--http",
    )
    .await?;
    let native = http::start(&artifacts.native_server, &[], "--http").await?;
    let token = issuer.token(&stockade.url)?;

    progress("http: sequential calls");
    let (warmup, calls) = (plan.stdio_warmup, plan.stdio_calls);
    // A token never seen before on every call: its signature is checked
    // each time (minting them is not timed).
    let fresh: Vec<Option<String>> = (0..warmup + calls)
        .map(|_| issuer.token(&stockade.url).map(Some))
        .collect::<Result<_>>()?;
    let series = [vec![Some(key)], vec![Some(token.clone())], fresh];
    let mut measured = http::interleaved(&stockade.url, &series, warmup, calls)
        .await?
        .into_iter();
    let (Some(with_key), Some(with_jwt), Some(with_fresh)) =
        (measured.next(), measured.next(), measured.next())
    else {
        bail!("one sample set per credential");
    };
    let bare = http::interleaved(&native.url, &[vec![None]], warmup, calls)
        .await?
        .remove(0);
    let auth_cost = with_jwt.p50().saturating_sub(with_key.p50());
    let check_cost = with_fresh.p50().saturating_sub(with_key.p50());
    findings.verdicts.push(Verdict {
        what: format!(
            "JWT authentication per request, a client's token reused (HTTP p50 with it minus with an API key) {} < {}; a token never seen before costs {}",
            show_duration(auth_cost),
            show_duration(TARGET_AUTH_COST),
            show_duration(check_cost)
        ),
        met: auth_cost < TARGET_AUTH_COST,
    });
    for (credential, samples) in [
        ("API key", with_key),
        ("RS256 JWT reused", with_jwt),
        ("a new RS256 JWT each call", with_fresh),
    ] {
        findings.rows.push(Row {
            measure: format!(
                "HTTP `tools/call`, sequential, {credential} ({} calls)",
                samples.len()
            ),
            stockade: Figure::Latency(samples),
            baseline_name: "native rmcp HTTP server, no auth".into(),
            baseline: Figure::Latency(bare.clone()),
        });
    }
    for clients in HTTP_CLIENTS {
        progress(&format!("http: {clients} clients at once"));
        let calls = plan.concurrent_calls.max(clients * 20);
        let (rate, latency) = http::concurrent(&stockade.url, Some(&token), clients, calls).await?;
        let (native_rate, native_latency) =
            http::concurrent(&native.url, None, clients, calls).await?;
        if clients == 8 {
            findings.verdicts.push(Verdict {
                what: format!(
                    "HTTP with JWT auth, 8 clients: {} >= {}",
                    stats::show_rate(rate),
                    stats::show_rate(TARGET_HTTP_RATE)
                ),
                met: rate >= TARGET_HTTP_RATE,
            });
        }
        findings.rows.push(Row {
            measure: format!("HTTP `tools/call`/s, {clients} client(s), RS256 JWT"),
            stockade: Figure::Rate(rate),
            baseline_name: "native rmcp HTTP server, no auth".into(),
            baseline: Figure::Rate(native_rate),
        });
        findings.rows.push(Row {
            measure: format!(
                "HTTP `tools/call` latency, {clients} client(s), RS256 JWT ({} calls)",
                latency.len()
            ),
            stockade: Figure::Latency(latency),
            baseline_name: "native rmcp HTTP server, no auth".into(),
            baseline: Figure::Latency(native_latency),
        });
    }
    stockade.stop().await?;
    native.stop().await?;
    Ok(())
}

/// Per-call latency and start-up of tools written in Python and
/// JavaScript, and of components built for Wassette-style hosts, each
/// served alone and measured beside the Rust text-kit in alternating
/// rounds.
async fn measure_polyglot(
    plan: &Plan,
    artifacts: &Artifacts,
    scratch: &Scratch,
    findings: &mut Findings,
) -> Result<()> {
    use serde_json::json;
    use stdio::Probe;
    let whoami = "hello bench (user -, groups analysts)";
    // Name, component, tools it lists, the call measured.
    let cases = [
        (
            "text-kit `transform` (Rust SDK)",
            "text_kit",
            TEXT_KIT_TOOLS,
            Probe::transform("transform"),
        ),
        (
            "py-summarise `whoami` (Python SDK)",
            "py_summarise",
            4,
            Probe::new("whoami", json!({}), whoami),
        ),
        (
            "js-links `whoami` (JavaScript SDK)",
            "js_links",
            3,
            Probe::new("whoami", json!({}), whoami),
        ),
        (
            "plain-exports `add` (Rust, Wassette-style)",
            "plain_exports",
            5,
            Probe::new("add", json!({ "a": 2, "b": 3 }), "5"),
        ),
        (
            "js-plain-exports `count` (JavaScript, Wassette-style)",
            "js_plain_exports",
            2,
            Probe::new(
                "count",
                json!({ "text": "a b" }),
                r#"{"characters":3,"lines":1,"words":2}"#,
            ),
        ),
        (
            "wasmcp-tools-js `reverse` (JavaScript, wasmcp)",
            "wasmcp_tools_js",
            5,
            Probe::new("reverse", json!({ "text": "ab" }), "ba"),
        ),
    ];
    let cache = scratch.path("cache-polyglot");
    let mut servers = Vec::new();
    for (_, stem, tools, _) in &cases {
        let manifest = deploy::write_single(artifacts, scratch.dir(), stem, stem)?;
        let config = deploy::write_config(
            scratch.dir(),
            &format!("polyglot-{stem}.toml"),
            &[manifest],
            &cache,
        )?;
        let command = stockade_serving(artifacts, &config);
        progress(&format!("polyglot: compiling {stem} once"));
        stdio::start_once(&command, *tools).await?;
        servers.push((command, *tools));
    }

    progress("polyglot: sequential calls");
    let mut sessions = Vec::new();
    for (command, _) in &servers {
        sessions.push(Session::start(command).await?.0);
    }
    let pairs: Vec<_> = sessions
        .iter()
        .zip(&cases)
        .map(|(session, (_, _, _, probe))| (session, probe))
        .collect();
    let calls = stdio::sequential_probes(&pairs, plan.stdio_warmup, plan.stdio_calls).await?;
    for session in sessions {
        session.close().await?;
    }

    progress("polyglot: start-up, cache warm");
    let starting: Vec<_> = servers.iter().map(|(c, n)| (c, *n)).collect();
    let starts = stdio::startup(&starting, plan.warm_starts).await?;

    let (Some(rust_calls), Some(rust_starts)) = (calls.first(), starts.first()) else {
        bail!("one series per server");
    };
    for (((name, _, _, _), called), started) in cases.iter().zip(&calls).zip(&starts).skip(1) {
        findings.rows.push(Row {
            measure: format!("stdio `tools/call`, {name}"),
            stockade: Figure::Latency(called.latency.clone()),
            baseline_name: "text-kit (Rust)".into(),
            baseline: Figure::Latency(rust_calls.latency.clone()),
        });
        findings.rows.push(Row {
            measure: format!("start-up to `initialize`, cache warm, {name}"),
            stockade: Figure::Latency(started.ready.clone()),
            baseline_name: "text-kit (Rust)".into(),
            baseline: Figure::Latency(rust_starts.ready.clone()),
        });
    }
    Ok(())
}

fn progress(step: &str) {
    eprintln!("bench: {step}");
}

/// The CPU's marketing name, for the report header.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}
