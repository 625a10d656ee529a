//! Per-call resource limits and the store limiter that enforces memory caps.

use std::time::Duration;

use crate::refusals::Refusals;

/// The bounds one tool call runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLimits {
    /// Fuel (roughly, wasm instructions) the call may burn.
    pub fuel: u64,
    /// Largest linear memory, in bytes, any one memory of the instance may reach.
    pub memory_bytes: u64,
    /// Wall-clock time the call may take, host calls included.
    pub timeout: Duration,
    /// Largest result, in bytes of content, the call may return.
    pub max_output_bytes: u64,
    /// What happens to a result larger than `max_output_bytes`.
    pub oversize: OversizePolicy,
    /// Bytes of stdout and of stderr captured from the guest (each).
    pub max_stdio_bytes: usize,
    /// Largest number of table elements any one table may hold.
    pub table_elements: usize,
}

/// What to do with a result that exceeds `max_output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OversizePolicy {
    /// Refuse the whole result with an error naming the limit.
    #[default]
    Refuse,
    /// Keep what fits and mark the result as truncated.
    Truncate,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            fuel: 1_000_000_000,
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            max_output_bytes: 256 << 10,
            oversize: OversizePolicy::Refuse,
            max_stdio_bytes: 64 << 10,
            table_elements: 20_000,
        }
    }
}

/// Slack over `max_output_bytes` for what a lifted result carries besides
/// its text (item headers, MIME types).
const LIFT_SLACK_BYTES: u64 = 64 << 10;
/// Least data one guest-to-host step may carry, so ordinary host calls
/// (a positional write of a few MiB) are never cut by a small `max_output`.
const MIN_TRANSFER_BYTES: u64 = 4 << 20;

impl CallLimits {
    /// Bytes the guest may hand the host in one step (one host call's
    /// arguments, or the call's result): wasmtime stops lifting and fails
    /// the step as soon as it passes this, before copying. With
    /// `on_oversize = "refuse"` a result much larger than `max_output` is
    /// thus refused while it is lifted, never copied whole; with
    /// `"truncate"` it is copied (at most the memory cap) so it can be cut.
    pub fn transfer_bytes(&self) -> u64 {
        match self.oversize {
            OversizePolicy::Refuse => {
                (self.max_output_bytes + LIFT_SLACK_BYTES).max(MIN_TRANSFER_BYTES)
            }
            OversizePolicy::Truncate => self.memory_bytes.max(MIN_TRANSFER_BYTES),
        }
    }
}

/// The largest `memory_bytes` a manifest may ask for; the pooling allocator
/// reserves slots of this size.
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;

/// Enforces the memory and table caps of one store and remembers whether
/// the guest was refused, so a trap that follows can be reported as a
/// memory limit rather than a crash, and a failure the guest reports
/// itself still names the cap.
#[derive(Debug)]
pub struct StoreLimiter {
    memory_bytes: usize,
    table_elements: usize,
    refusals: Refusals,
    /// Set once a growth was refused.
    pub hit: Option<LimitHit>,
}

/// Which cap refused a growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// A linear memory would have exceeded `memory_bytes`.
    Memory,
    /// A table would have exceeded `table_elements`.
    Table,
}

impl StoreLimiter {
    /// A limiter for one call, recording what it refuses in `refusals`.
    pub fn new(limits: &CallLimits, refusals: Refusals) -> Self {
        Self {
            memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            table_elements: limits.table_elements,
            refusals,
            hit: None,
        }
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes;
        if !allowed {
            self.hit = Some(LimitHit::Memory);
            self.refusals.record(format!(
                "limit exceeded: memory ({} bytes)",
                self.memory_bytes
            ));
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.table_elements;
        if !allowed {
            self.hit = Some(LimitHit::Table);
            self.refusals.record(format!(
                "limit exceeded: table ({} elements)",
                self.table_elements
            ));
        }
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        32
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn refuses_growth_past_the_cap_and_remembers_it() {
        let limits = CallLimits {
            memory_bytes: 1 << 20,
            ..CallLimits::default()
        };
        let refusals = Refusals::new("t");
        let mut limiter = StoreLimiter::new(&limits, refusals.clone());
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(limiter.hit, None);
        assert!(
            !limiter
                .memory_growing(1 << 20, (1 << 20) + 65536, None)
                .unwrap()
        );
        assert_eq!(limiter.hit, Some(LimitHit::Memory));
        assert_eq!(
            refusals.snapshot().0,
            [format!("limit exceeded: memory ({} bytes)", 1 << 20)]
        );
    }

    #[test]
    fn refuses_table_growth_past_the_cap() {
        let limits = CallLimits {
            table_elements: 10,
            ..CallLimits::default()
        };
        let mut limiter = StoreLimiter::new(&limits, Refusals::new("t"));
        assert!(!limiter.table_growing(0, 11, None).unwrap());
        assert_eq!(limiter.hit, Some(LimitHit::Table));
    }
}
