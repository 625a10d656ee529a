//! Policy: may this caller see and call this tool, now?
//!
//! Access rules come from the manifest's `[access]`; rate and concurrency
//! from `[limits]`. The kill switch and approval (governance) plug in here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stockade_host_api::CallerIdentity;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::manifest::Access;
use crate::units::Rate;

/// Why policy refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The caller may not use this tool (reported as an unknown tool, so
    /// its existence is not revealed).
    #[error("unknown tool `{0}`")]
    NotPermitted(String),
    /// The caller exceeded the tool's rate.
    #[error("rate limit exceeded for `{tool}`: at most {count} calls per {}s; retry in {}s", per.as_secs(), retry.as_secs().max(1))]
    RateLimited {
        /// The tool.
        tool: String,
        /// Calls allowed per window.
        count: u32,
        /// The window.
        per: Duration,
        /// When a call will next be allowed.
        retry: Duration,
    },
    /// The tool's concurrency limit is reached.
    #[error("concurrency limit reached for `{tool}` ({limit} calls at once); try again")]
    Busy {
        /// The tool.
        tool: String,
        /// Its limit.
        limit: u32,
    },
}

/// Whether `caller` may see and call a tool governed by `access`.
pub fn may_use(access: &Access, caller: &CallerIdentity) -> bool {
    let group_ok =
        access.groups.is_empty() || caller.groups.iter().any(|g| access.groups.contains(g));
    let client_ok = access.clients.is_empty() || access.clients.contains(&caller.client);
    let user_ok = access.users.is_empty()
        || caller
            .user
            .as_ref()
            .is_some_and(|u| access.users.contains(u));
    group_ok && client_ok && user_ok
}

/// Rate and concurrency limits of one component's tools.
pub struct ToolLimiter {
    rate: Option<(Rate, Mutex<HashMap<String, Bucket>>)>,
    concurrency: Option<(u32, Arc<Semaphore>)>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Held for the duration of an admitted call.
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
}

/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 10_000;

impl ToolLimiter {
    /// Limits from a manifest; `None` means unlimited.
    pub fn new(rate: Option<Rate>, concurrency: Option<u32>) -> Self {
        Self {
            rate: rate.map(|r| (r, Mutex::new(HashMap::new()))),
            concurrency: concurrency.map(|n| (n, Arc::new(Semaphore::new(n as usize)))),
        }
    }

    /// Admits one call of `tool` by `caller`, or says why not.
    pub fn admit(&self, tool: &str, caller: &CallerIdentity) -> Result<Admission, Denial> {
        if let Some((rate, buckets)) = &self.rate {
            let key = format!(
                "{}\u{0}{}",
                caller.client,
                caller.user.as_deref().unwrap_or("")
            );
            let mut buckets = buckets.lock().expect("rate buckets");
            let now = Instant::now();
            let refill = f64::from(rate.count) / rate.per.as_secs_f64();
            if buckets.len() >= MAX_BUCKETS {
                buckets.retain(|_, b| {
                    b.tokens + now.duration_since(b.updated).as_secs_f64() * refill
                        < f64::from(rate.count)
                });
            }
            let bucket = buckets.entry(key).or_insert(Bucket {
                tokens: f64::from(rate.count),
                updated: now,
            });
            let elapsed = now.duration_since(bucket.updated).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * refill).min(f64::from(rate.count));
            bucket.updated = now;
            if bucket.tokens < 1.0 {
                let retry = Duration::from_secs_f64((1.0 - bucket.tokens) / refill);
                return Err(Denial::RateLimited {
                    tool: tool.to_owned(),
                    count: rate.count,
                    per: rate.per,
                    retry,
                });
            }
            bucket.tokens -= 1.0;
        }
        let permit = match &self.concurrency {
            Some((limit, semaphore)) => Some(semaphore.clone().try_acquire_owned().map_err(
                |_| Denial::Busy {
                    tool: tool.to_owned(),
                    limit: *limit,
                },
            )?),
            None => None,
        };
        Ok(Admission { _permit: permit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(client: &str, groups: &[&str]) -> CallerIdentity {
        CallerIdentity {
            client: client.into(),
            user: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn access_requires_a_listed_group_client_and_user() {
        let open = Access::default();
        assert!(may_use(&open, &caller("a", &[])));
        let ops = Access {
            groups: vec!["ops".into()],
            ..Access::default()
        };
        assert!(may_use(&ops, &caller("a", &["dev", "ops"])));
        assert!(!may_use(&ops, &caller("a", &["dev"])));
        let users = Access {
            users: vec!["ann".into()],
            ..Access::default()
        };
        assert!(!may_use(&users, &caller("a", &[])));
    }

    #[test]
    fn rate_is_per_caller() {
        let limiter = ToolLimiter::new(
            Some(Rate {
                count: 2,
                per: Duration::from_secs(3600),
            }),
            None,
        );
        let a = caller("a", &[]);
        assert!(limiter.admit("t", &a).is_ok());
        assert!(limiter.admit("t", &a).is_ok());
        assert!(matches!(
            limiter.admit("t", &a),
            Err(Denial::RateLimited { .. })
        ));
        assert!(limiter.admit("t", &caller("b", &[])).is_ok());
    }

    #[test]
    fn concurrency_is_released_when_the_call_ends() {
        let limiter = ToolLimiter::new(None, Some(1));
        let a = caller("a", &[]);
        let held = limiter.admit("t", &a).unwrap();
        assert!(matches!(limiter.admit("t", &a), Err(Denial::Busy { .. })));
        drop(held);
        assert!(limiter.admit("t", &a).is_ok());
    }
}
