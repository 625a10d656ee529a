//! Audit records of refused credentials, bounded per peer: an
//! unauthenticated client must not be able to fill the audit disk. Each
//! address gets a few records a second; the failures past that are counted
//! and the count rides on that address's next record (and in the metric).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::audit::{Audit, AuditRecord, EventKind};
use crate::auth::AuthFailure;

/// Records per second per peer address, and the burst allowed.
const PER_SECOND: u32 = 5;
const BURST: u32 = 20;

/// Addresses whose suppressed failures are counted apart; past this many
/// the rest share one count.
const MAX_TRACKED: usize = 10_000;

/// Writes `auth_failed` records, at most [`PER_SECOND`] a second per peer.
pub struct FailureRecords {
    limiter: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>,
    suppressed: Mutex<HashMap<IpAddr, u64>>,
}

impl Default for FailureRecords {
    fn default() -> Self {
        let quota = Quota::per_second(NonZeroU32::new(PER_SECOND).expect("non-zero"))
            .allow_burst(NonZeroU32::new(BURST).expect("non-zero"));
        Self {
            limiter: RateLimiter::keyed(quota),
            suppressed: Mutex::new(HashMap::new()),
        }
    }
}

impl FailureRecords {
    /// Records `failure` from `peer`, or counts it for that peer's next record.
    pub fn record(&self, audit: &Audit, peer: Option<SocketAddr>, failure: &AuthFailure) {
        let address = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
        let mut suppressed = self.suppressed.lock().unwrap_or_else(|p| p.into_inner());
        if self.limiter.check_key(&address).is_err() {
            let key = if suppressed.len() < MAX_TRACKED || suppressed.contains_key(&address) {
                address
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            };
            *suppressed.entry(key).or_default() += 1;
            return;
        }
        let earlier = suppressed.remove(&address).unwrap_or(0);
        drop(suppressed);
        self.limiter.retain_recent();
        let reason = failure.to_string();
        let mut record = AuditRecord::new(EventKind::AuthFailed);
        record.outcome = Some("denied");
        record.error_class = Some(failure.class());
        record.detail = Some(&reason);
        let mut data = serde_json::json!({ "peer": peer.map(|p| p.to_string()) });
        if earlier > 0 {
            data["suppressed"] = earlier.into();
        }
        record.data = Some(data);
        audit.record_or_log(&record);
    }
}
