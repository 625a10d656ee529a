//! One tool call: a fresh store and instance, the grant's capabilities and
//! limits, the call, and a report of what happened.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceTable;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::contract;
use crate::egress::{EgressHooks, EgressRecord};
use crate::limits::{LimitHit, OversizePolicy, StoreLimiter};
use crate::log::{GuestLog, LogRate};
use crate::refusals::Refusals;
use crate::secrets::Scrubber;
use crate::{
    CallerIdentity, ContentItem, LoadedComponent, Sandbox, SandboxError, ToolDescriptor,
    ToolFailure, ToolGrant, ToolOutput, fs,
};

/// Everything one call's store holds. Nothing survives the call.
pub(crate) struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: EgressHooks,
    limiter: StoreLimiter,
    fs: fs::FsGuard,
    pub(crate) refusals: Refusals,
    pub(crate) caller: CallerIdentity,
    pub(crate) log: GuestLog,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// A bound that ended a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKind {
    /// The fuel budget ran out.
    Fuel(u64),
    /// A memory could not grow past the cap (bytes).
    Memory(u64),
    /// A table could not grow past the cap (elements).
    Table(usize),
    /// The wall-clock deadline passed.
    Timeout(Duration),
    /// The guest exhausted its stack.
    Stack,
    /// The result was larger than `max_output` (bytes).
    Output(u64),
    /// The guest handed the host more than this many bytes in one step
    /// (a host call's arguments or the result), refused while lifting.
    Transfer(u64),
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fuel(n) => write!(f, "limit exceeded: fuel ({n} units)"),
            Self::Memory(n) => write!(f, "limit exceeded: memory ({} bytes)", n),
            Self::Table(n) => write!(f, "limit exceeded: table ({n} elements)"),
            Self::Timeout(d) => write!(f, "limit exceeded: timeout ({} ms)", d.as_millis()),
            Self::Stack => write!(f, "limit exceeded: stack"),
            Self::Output(n) => write!(f, "limit exceeded: max_output ({n} bytes)"),
            Self::Transfer(n) => write!(
                f,
                "limit exceeded: the tool handed the host more than {n} bytes at once (result or host call; see max_output)"
            ),
        }
    }
}

/// Why a call produced no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The tool itself returned an error.
    #[error("{0}")]
    Tool(ToolFailure),
    /// A limit ended the call.
    #[error("{0}")]
    Limit(LimitKind),
    /// The guest trapped for another reason (a panic, an abort).
    #[error("tool crashed: {0}")]
    Crashed(String),
    /// No sandbox slot came free in time.
    #[error(
        "busy: no sandbox slot came free within queue_timeout ({} ms; max_concurrent_calls = {slots}, tool_share = {share}); try again",
        waited.as_millis()
    )]
    Busy {
        /// Slots across all tools.
        slots: u32,
        /// Slots one tool's calls may hold.
        share: u32,
        /// How long the call waited.
        waited: Duration,
    },
    /// The client cancelled the call.
    #[error("cancelled by the client")]
    Cancelled,
    /// The host could not set the call up (details are in the host log).
    #[error("internal error running the tool")]
    Internal,
}

/// What one call did.
#[derive(Debug)]
pub struct CallReport {
    /// The output, or why there is none.
    pub result: Result<ToolOutput, CallError>,
    /// Fuel burnt.
    pub fuel_used: u64,
    /// Destinations contacted and requests attempted.
    pub egress: EgressRecord,
    /// What the host refused during the call, each rule once, in order
    /// (at most eight, then a count of the rest).
    pub refusals: Vec<String>,
    /// Wall-clock time, instantiation included.
    pub duration: Duration,
}

impl Sandbox {
    /// Runs tool `name` of `component` with JSON `arguments` in a fresh
    /// instance under `grant`, on behalf of `caller`. Cancelling `cancel`
    /// ends the call at once, queued or running, and frees its slot.
    pub async fn call(
        &self,
        component: &LoadedComponent,
        grant: &ToolGrant,
        caller: &CallerIdentity,
        name: &str,
        arguments: &str,
        cancel: &CancellationToken,
    ) -> CallReport {
        let started = Instant::now();
        let record = Arc::new(Mutex::new(EgressRecord::default()));
        let limits = &grant.limits;
        let mut fuel_used = 0;
        // Waiting for a slot is bounded on its own; the call's deadline
        // starts only once it has one, with the store created below. A
        // component's calls first take a place in its share, so one busy
        // tool can never hold every slot.
        let wait = async {
            let share = component.share.acquire().await?;
            let slot = self.slots.acquire().await?;
            Ok::<_, tokio::sync::AcquireError>((share, slot))
        };
        let waited = tokio::select! {
            waited = tokio::time::timeout(self.queue_timeout, wait) => match waited {
                Ok(Ok(held)) => Ok(held),
                _ => Err(self.busy()),
            },
            () = cancel.cancelled() => Err(CallError::Cancelled),
        };
        let _held = match waited {
            Ok(held) => held,
            Err(err) => {
                return CallReport {
                    result: Err(err),
                    fuel_used,
                    egress: EgressRecord::default(),
                    refusals: Vec::new(),
                    duration: started.elapsed(),
                };
            }
        };
        let refusals = Refusals::new(&grant.label);
        let outcome = match self.new_store(
            grant,
            caller,
            record.clone(),
            refusals.clone(),
            component.log_rate.clone(),
        ) {
            Err(err) => {
                tracing::error!(tool = %grant.label, "cannot prepare call: {err}");
                Err(CallError::Internal)
            }
            Ok((mut store, stdout, stderr)) => {
                let run = async {
                    contract::invoke(&component.contract, &mut store, name, arguments)
                        .await
                        .map_err(
                            |err| match err.downcast_ref::<PoolConcurrencyLimitError>() {
                                Some(_) => self.busy(),
                                None => CallError::Internal.or_trap(err, store.data(), limits),
                            },
                        )
                };
                // Dropping the running call (at its deadline or on
                // cancellation) is clean: the guest stops at its next epoch
                // yield or host call, and the store goes with it.
                let outcome = tokio::select! {
                    ran = tokio::time::timeout(limits.timeout, run) => match ran {
                        Ok(Ok(Ok(output))) => Ok(output),
                        Ok(Ok(Err(failure))) => Err(CallError::Tool(failure)),
                        Ok(Err(err)) => Err(err),
                        Err(_) => Err(CallError::Limit(LimitKind::Timeout(limits.timeout))),
                    },
                    () = cancel.cancelled() => Err(CallError::Cancelled),
                };
                fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
                store.data_mut().log.flush_stdio(&stdout, &stderr);
                outcome
            }
        };
        // Taken after the call, so it knows every value the call injected.
        let scrubber = self.redactor.scrubber();
        let result = settle(outcome, &scrubber, limits);
        let egress = record.lock().expect("egress record").clone();
        let (mut lines, more) = refusals.snapshot();
        if more > 0 {
            lines.push(format!("(and {more} further refusals not shown)"));
        }
        if !scrubber.is_empty() {
            for line in &mut lines {
                *line = scrubber.scrub_text(line);
            }
        }
        CallReport {
            result,
            fuel_used,
            egress,
            refusals: lines,
            duration: started.elapsed(),
        }
    }

    fn busy(&self) -> CallError {
        CallError::Busy {
            slots: self.max_concurrent_calls,
            share: self.tool_share,
            waited: self.queue_timeout,
        }
    }

    /// Instantiates the component once to read its tool list, under
    /// `grant`'s limits but none of its capabilities: listing needs no
    /// directory, network or secret, so it gets none.
    pub async fn describe(
        &self,
        component: &LoadedComponent,
        grant: &ToolGrant,
    ) -> Result<Vec<ToolDescriptor>, SandboxError> {
        let record = Arc::new(Mutex::new(EgressRecord::default()));
        let caller = CallerIdentity {
            client: "stockade".into(),
            ..CallerIdentity::default()
        };
        let bare = ToolGrant {
            label: grant.label.clone(),
            limits: grant.limits.clone(),
            fs: Vec::new(),
            egress: Arc::new(crate::EgressPolicy::default()),
            secrets: None,
        };
        let refusals = Refusals::new(&grant.label);
        let (mut store, stdout, stderr) =
            self.new_store(&bare, &caller, record, refusals, component.log_rate.clone())?;
        let run = contract::describe(&component.contract, &mut store);
        let listed = tokio::time::timeout(grant.limits.timeout, run).await;
        store.data_mut().log.flush_stdio(&stdout, &stderr);
        match listed {
            Ok(Ok(Ok(tools))) => Ok(tools),
            Ok(Ok(Err(err))) => Err(SandboxError::Describe(err.to_string())),
            Ok(Err(err)) => {
                let why = CallError::Internal.or_trap(err, store.data(), &grant.limits);
                Err(SandboxError::Describe(why.to_string()))
            }
            Err(_) => Err(SandboxError::Describe(
                LimitKind::Timeout(grant.limits.timeout).to_string(),
            )),
        }
    }

    fn new_store(
        &self,
        grant: &ToolGrant,
        caller: &CallerIdentity,
        record: Arc<Mutex<EgressRecord>>,
        refusals: Refusals,
        log_rate: LogRate,
    ) -> Result<(Store<CallState>, MemoryOutputPipe, MemoryOutputPipe), SandboxError> {
        let limits = &grant.limits;
        let stdout = MemoryOutputPipe::new(limits.max_stdio_bytes);
        let stderr = MemoryOutputPipe::new(limits.max_stdio_bytes);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        // wasi:sockets stays shut whatever wasmtime's defaults become; no
        // manifest key opens it. The only network path is wasi:http.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        fs::apply(&grant.fs, &mut wasi)?;
        let state = CallState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: EgressHooks::new(
                grant.egress.clone(),
                self.tls.clone(),
                record,
                refusals.clone(),
                grant.secrets.clone(),
                self.redactor.clone(),
                caller.call_depth,
            ),
            limiter: StoreLimiter::new(limits, refusals.clone()),
            fs: fs::FsGuard::new(&grant.fs, refusals.clone()),
            refusals,
            caller: caller.clone(),
            log: GuestLog::new(&grant.label, log_rate, self.redactor.clone()),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_hostcall_fuel(usize::try_from(limits.transfer_bytes()).unwrap_or(usize::MAX));
        store
            .set_fuel(limits.fuel)
            .map_err(|_| SandboxError::Internal("fuel is not enabled".into()))?;
        let deadline = Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok((store, stdout, stderr))
    }
}

impl CallError {
    /// Turns a wasmtime error into the limit or trap that caused it, or
    /// `self` when it is neither (the detail then goes to the host log).
    fn or_trap(self, err: wasmtime::Error, state: &CallState, limits: &crate::CallLimits) -> Self {
        match state.limiter.hit {
            Some(LimitHit::Memory) => return Self::Limit(LimitKind::Memory(limits.memory_bytes)),
            Some(LimitHit::Table) => return Self::Limit(LimitKind::Table(limits.table_elements)),
            None => {}
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => Self::Limit(LimitKind::Fuel(limits.fuel)),
            Some(Trap::Interrupt) => Self::Limit(LimitKind::Timeout(limits.timeout)),
            Some(Trap::StackOverflow) => Self::Limit(LimitKind::Stack),
            Some(Trap::MemoryOutOfBounds) => Self::Crashed(out_of_bounds(&err)),
            Some(Trap::UnreachableCodeReached) => {
                Self::Crashed("the tool panicked or aborted".into())
            }
            Some(trap) => Self::Crashed(trap.to_string()),
            // wasmtime's error for this is a private type, so its text is
            // all there is to recognise it by. A host call's arguments are
            // lifted with the guest on the stack (the error carries its
            // frames); the result, after it returned.
            None if format!("{err:#}").contains(HOSTCALL_FUEL_EXHAUSTED) => {
                let in_host_call = err
                    .downcast_ref::<WasmBacktrace>()
                    .is_some_and(|trace| !trace.frames().is_empty());
                let limit = if in_host_call {
                    LimitKind::Transfer(limits.transfer_bytes())
                } else {
                    LimitKind::Output(limits.max_output_bytes)
                };
                state.refusals.record(limit.to_string());
                Self::Limit(limit)
            }
            None => {
                tracing::error!(tool = %state.log_label(), "sandbox error: {err:#}");
                self
            }
        }
    }
}

/// How wasmtime says a guest handed the host more than its hostcall fuel.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Innermost frames that must all belong to a recursion (at most
/// [`RECURSION_FUNCTIONS`] distinct functions) before an out-of-bounds
/// access is put down to the tool's own stack.
const RECURSION_FRAMES: usize = 16;
/// Distinct functions a recursion may cycle through (mutual recursion).
const RECURSION_FUNCTIONS: usize = 3;

/// Describes an out-of-bounds access. A Rust tool keeps its own stack in
/// its linear memory (its size is the toolchain's choice, not a host
/// limit), and overflowing it ends in such an access, deep in a recursion.
/// The backtrace tells the two apart only by that pattern, so the message
/// says what was seen and what it most likely means.
fn out_of_bounds(err: &wasmtime::Error) -> String {
    let recursion = err.downcast_ref::<WasmBacktrace>().and_then(|trace| {
        let frames = trace.frames();
        let mut functions: Vec<(Option<&str>, u32)> = frames
            .iter()
            .take(RECURSION_FRAMES)
            .map(|f| (f.module().name(), f.func_index()))
            .collect();
        functions.sort_unstable();
        functions.dedup();
        (frames.len() >= RECURSION_FRAMES && functions.len() <= RECURSION_FUNCTIONS)
            .then_some(frames.len())
    });
    match recursion {
        Some(depth) => format!(
            "out-of-bounds memory access at least {depth} calls deep in a recursion \
             (most likely the tool overflowed its own stack)"
        ),
        None => "out-of-bounds memory access".into(),
    }
}

impl CallState {
    /// The view `wasi:filesystem` runs on: wasmtime-wasi's, guarded.
    pub(crate) fn guarded_fs(&mut self) -> fs::GuardedFs<'_> {
        let inner = WasiFilesystemCtxView {
            ctx: self.wasi.filesystem(),
            table: &mut self.table,
        };
        fs::GuardedFs::new(inner, &mut self.fs)
    }

    fn log_label(&self) -> &str {
        self.log.label()
    }
}

/// What the client may see of an outcome: scrubbed first, so that
/// truncation can never cut a credential into pieces the scrubber no longer
/// recognises, then bounded by `max_output`.
fn settle(
    outcome: Result<ToolOutput, CallError>,
    scrubber: &Scrubber,
    limits: &crate::CallLimits,
) -> Result<ToolOutput, CallError> {
    match outcome {
        Ok(output) => bound_output(scrubber.scrub_output(output), limits),
        Err(err) => Err(scrubber.scrub_error(err)),
    }
}

/// Applies `max_output` to a result: refuse, or keep what fits and say so.
fn bound_output(output: ToolOutput, limits: &crate::CallLimits) -> Result<ToolOutput, CallError> {
    let size = output.size_bytes();
    if size <= limits.max_output_bytes {
        return Ok(output);
    }
    match limits.oversize {
        OversizePolicy::Refuse => Err(CallError::Limit(LimitKind::Output(limits.max_output_bytes))),
        OversizePolicy::Truncate => {
            let mut budget = limits.max_output_bytes as usize;
            let mut content = Vec::new();
            for item in output.content {
                match item {
                    ContentItem::Text(text) | ContentItem::Json(text) => {
                        let cut = floor_char_boundary(&text, budget);
                        budget -= cut;
                        content.push(ContentItem::Text(text[..cut].to_owned()));
                    }
                    // Media and resources are kept whole or not at all.
                    ContentItem::Image { .. }
                    | ContentItem::Audio { .. }
                    | ContentItem::Resource { .. } => {}
                }
                if budget == 0 {
                    break;
                }
            }
            content.push(ContentItem::Text(format!(
                "[output truncated at max_output = {} bytes]",
                limits.max_output_bytes
            )));
            Ok(ToolOutput {
                content,
                structured: None,
                truncated: true,
            })
        }
    }
}

fn floor_char_boundary(text: &str, max: usize) -> usize {
    let mut cut = max.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallLimits;

    #[test]
    fn oversize_output_is_refused_or_truncated_by_choice() {
        let output = ToolOutput {
            content: vec![ContentItem::Text("é".repeat(100))],
            structured: None,
            truncated: false,
        };
        let mut limits = CallLimits {
            max_output_bytes: 51,
            ..CallLimits::default()
        };
        let refused = bound_output(output.clone(), &limits).unwrap_err();
        assert_eq!(refused, CallError::Limit(LimitKind::Output(51)));
        limits.oversize = OversizePolicy::Truncate;
        let cut = bound_output(output, &limits).unwrap();
        let ContentItem::Text(first) = &cut.content[0] else {
            panic!("text expected")
        };
        assert_eq!(first.len(), 50);
        assert!(matches!(&cut.content[1], ContentItem::Text(t) if t.contains("truncated")));
        assert!(cut.truncated && cut.structured.is_none());
    }

    #[test]
    fn a_value_cut_by_truncation_is_scrubbed_before_the_cut() {
        let value = "tok-A1b2C3d4E5f6G7h8I9j0";
        let redactor = crate::secrets::Redactor::default();
        redactor.remember(&crate::secrets::SecretValue::new(value.into()), value);
        // The cut would fall after 10 characters of the value: scrubbed
        // afterwards, those 10 would survive as a piece too short to match
        // the whole value but long enough to leak.
        let text = format!("{}{value}", "x".repeat(40));
        let limits = CallLimits {
            max_output_bytes: 50,
            oversize: OversizePolicy::Truncate,
            ..CallLimits::default()
        };
        let output = ToolOutput {
            content: vec![ContentItem::Text(text)],
            structured: None,
            truncated: false,
        };
        let settled = settle(Ok(output), &redactor.scrubber(), &limits).unwrap();
        let ContentItem::Text(first) = &settled.content[0] else {
            panic!("text expected")
        };
        assert_eq!(first, &format!("{}[redacted]", "x".repeat(40)));
    }
}
