//! The shared engine: compilation settings, the pooling allocator, the
//! epoch ticker, the compiled-component cache, and loading a component.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::ArtifactCache;
use crate::call::CallState;
use crate::contract::{self, ContractPre};
use crate::limits::MAX_MEMORY_BYTES;
use crate::log::LogRate;
use crate::secrets::Redactor;
use crate::{SandboxError, egress, fs};

/// How often the epoch advances; the deadline check and the cooperative
/// yield of a running guest happen on this beat.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Settings that shape the engine for the whole process.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Directory for compiled artefacts; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Calls that may run at once across all tools (pool slots).
    pub max_concurrent_calls: u32,
    /// Largest wasm stack a guest may use, in bytes.
    pub max_wasm_stack: usize,
    /// K: the shortest run of a credential that redaction removes.
    pub redact_min_run: usize,
    /// Longest a call waits for a free slot before it is refused as busy.
    pub queue_timeout: Duration,
    /// Slots one component's calls may hold at once; `None` is half of
    /// `max_concurrent_calls` (at least one), so that one busy tool always
    /// leaves room for the others.
    pub tool_share: Option<u32>,
    /// The largest `limits.memory` of any tool: every pool slot reserves
    /// this much address space (plus a guard), so it sizes the pool.
    pub max_memory_bytes: u64,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_concurrent_calls: 64,
            max_wasm_stack: 512 << 10,
            redact_min_run: crate::secrets::redact::DEFAULT_MIN_RUN,
            queue_timeout: Duration::from_secs(5),
            tool_share: None,
            max_memory_bytes: MAX_MEMORY_BYTES,
        }
    }
}

/// The sandbox: one engine and linker shared by every tool.
pub struct Sandbox {
    pub(crate) engine: Engine,
    linker: Linker<CallState>,
    cache: Option<ArtifactCache>,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) max_concurrent_calls: u32,
    pub(crate) queue_timeout: Duration,
    pub(crate) tool_share: u32,
    ticker_stop: Arc<AtomicBool>,
    /// Every credential injected in this process, for scrubbing.
    pub(crate) redactor: Arc<Redactor>,
}

/// A component compiled, checked against its pinned digest and ready to
/// instantiate.
#[derive(Clone)]
pub struct LoadedComponent {
    pub(crate) contract: ContractPre,
    /// SHA-256 of the component file, lower-case hex.
    pub digest: String,
    /// Whether the compiled form came from the cache.
    pub from_cache: bool,
    /// The slots this component's calls may hold at once (its share).
    pub(crate) share: Arc<Semaphore>,
    /// How fast this component's calls may write to the host log.
    pub(crate) log_rate: LogRate,
}

impl LoadedComponent {
    /// The same compiled component for another manifest that pins the
    /// same file: code and pre-instantiation shared, its slot share and
    /// log rate its own.
    pub fn for_another_manifest(&self, sandbox: &Sandbox) -> Self {
        Self {
            contract: self.contract.clone(),
            digest: self.digest.clone(),
            from_cache: self.from_cache,
            share: Arc::new(Semaphore::new(sandbox.tool_share as usize)),
            log_rate: LogRate::default(),
        }
    }
}

impl Sandbox {
    /// Builds the engine and linker.
    pub fn new(settings: &SandboxSettings) -> Result<Self, SandboxError> {
        let pool = PoolSize::of(settings);
        pool.fits_address_space()?;
        let engine = Engine::new(&engine_config(settings, &pool)).map_err(|err| {
            SandboxError::Internal(format!("engine: {err:#}; {}", pool.describe()))
        })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| fs::add_to_linker(&mut linker))
            .and_then(|()| crate::sockets::add_to_linker(&mut linker))
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| contract::add_to_linker(&mut linker))
            .map_err(|err| SandboxError::Internal(format!("linker: {err:#}")))?;
        let cache = settings
            .cache_dir
            .as_deref()
            .map(|dir| ArtifactCache::open(dir, &engine))
            .transpose()?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone());
        Ok(Self {
            engine,
            linker,
            cache,
            tls: egress::default_tls_config(),
            slots: Arc::new(Semaphore::new(settings.max_concurrent_calls as usize)),
            max_concurrent_calls: settings.max_concurrent_calls,
            queue_timeout: settings.queue_timeout,
            tool_share: settings
                .tool_share
                .unwrap_or(settings.max_concurrent_calls / 2)
                .clamp(1, settings.max_concurrent_calls.max(1)),
            ticker_stop,
            redactor: Arc::new(Redactor::new(settings.redact_min_run)),
        })
    }

    /// Every credential injected in this process, for scrubbing what the
    /// host writes elsewhere (its log).
    pub fn redactor(&self) -> Arc<Redactor> {
        self.redactor.clone()
    }

    /// Sandbox slots in use and in all (`max_concurrent_calls`), for the
    /// pool-occupancy metric.
    pub fn slots(&self) -> (usize, usize) {
        let total = self.max_concurrent_calls as usize;
        (total.saturating_sub(self.slots.available_permits()), total)
    }

    /// Reads, verifies and compiles (or loads from the cache) a component.
    /// When `pinned_sha256` is given, a file with any other digest is refused.
    pub fn load(
        &self,
        path: &Path,
        pinned_sha256: Option<&str>,
    ) -> Result<LoadedComponent, SandboxError> {
        let bytes = std::fs::read(path).map_err(|err| SandboxError::Read {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if let Some(pinned) = pinned_sha256
            && !pinned.eq_ignore_ascii_case(&digest)
        {
            return Err(SandboxError::DigestMismatch {
                path: path.to_owned(),
                pinned: pinned.to_ascii_lowercase(),
                actual: digest,
            });
        }
        let (component, from_cache) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, &digest, &bytes)?,
            None => (
                wasmtime::component::Component::new(&self.engine, &bytes)
                    .map_err(|err| SandboxError::Compile(format!("{err:#}")))?,
                false,
            ),
        };
        let contract = contract::prepare(&self.linker, &component)
            .map_err(|err| SandboxError::Contract(format!("{err:#}")))?;
        Ok(LoadedComponent {
            contract,
            digest,
            from_cache,
            share: Arc::new(Semaphore::new(self.tool_share as usize)),
            log_rate: LogRate::default(),
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("stockade-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawn the epoch thread");
}

/// Guard region after each linear memory (wasmtime's default on 64-bit).
const MEMORY_GUARD_BYTES: u64 = 32 << 20;
/// Address space the process needs besides the memory pool.
const OTHER_ADDRESS_SPACE: u64 = 4 << 30;

/// How big the pooling allocator is, from the configuration.
struct PoolSize {
    /// Instances that may exist at once (calls plus a few for listing).
    slots: u32,
    /// Bytes each linear memory may reach and reserves.
    memory_bytes: u64,
    max_concurrent_calls: u32,
}

impl PoolSize {
    fn of(settings: &SandboxSettings) -> Self {
        // Whole wasm pages, at least one MiB.
        let memory_bytes = settings
            .max_memory_bytes
            .clamp(1 << 20, MAX_MEMORY_BYTES)
            .next_multiple_of(64 << 10);
        Self {
            slots: settings.max_concurrent_calls.max(1) + 4,
            memory_bytes,
            max_concurrent_calls: settings.max_concurrent_calls,
        }
    }

    /// Virtual address space the pool reserves.
    fn reserved_bytes(&self) -> u64 {
        u64::from(self.slots) * 2 * (self.memory_bytes + MEMORY_GUARD_BYTES)
    }

    fn describe(&self) -> String {
        format!(
            "the sandbox reserves about {} MiB of virtual address space for max_concurrent_calls = {} \
             and the largest limits.memory = {} MiB",
            self.reserved_bytes() >> 20,
            self.max_concurrent_calls,
            self.memory_bytes >> 20
        )
    }

    /// Refuses to start, with the numbers, when `ulimit -v` is too small.
    fn fits_address_space(&self) -> Result<(), SandboxError> {
        let Some(limit) = address_space_limit() else {
            return Ok(());
        };
        let needed = self.reserved_bytes() + OTHER_ADDRESS_SPACE;
        if limit >= needed {
            return Ok(());
        }
        Err(SandboxError::Resources(format!(
            "{}; with the rest of the process it needs about {} MiB, but `ulimit -v` allows {} MiB: \
             raise the limit, or lower server.max_concurrent_calls or the tools' limits.memory",
            self.describe(),
            needed >> 20,
            limit >> 20
        )))
    }
}

/// The soft limit on this process's address space, if there is one.
fn address_space_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    let soft = line.split_whitespace().nth(3)?;
    soft.parse().ok()
}

fn engine_config(settings: &SandboxSettings, size: &PoolSize) -> Config {
    let slots = size.slots;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 16)
        .total_memories(slots * 2)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memories_per_component(2)
        .max_memory_size(size.memory_bytes as usize)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10);
    // The page-map reset skips swapped-out pages, which could then show one
    // call's data to the next; use it only where there is no swap.
    if swap_is_active() {
        tracing::info!(
            "swap is active: pagemap_scan reset disabled so no call can see another's pages"
        );
        pool.pagemap_scan(Enabled::No);
    } else {
        pool.pagemap_scan(Enabled::Auto);
    }
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(settings.max_wasm_stack)
        .memory_reservation(size.memory_bytes)
        .memory_guard_size(MEMORY_GUARD_BYTES)
        .concurrency_support(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Whether any swap device is in use on this host.
fn swap_is_active() -> bool {
    match std::fs::read_to_string("/proc/swaps") {
        Ok(text) => text.lines().skip(1).any(|l| !l.trim().is_empty()),
        Err(_) => true,
    }
}
