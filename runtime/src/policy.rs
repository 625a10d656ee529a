//! Policy: may this caller see and call this tool, now?
//!
//! Access rules come from the manifest's `[access]`; rate and concurrency
//! from `[limits]`. The kill switch and approval (governance) plug in here.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

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
    /// An operator put the server in lockdown.
    #[error(
        "refused: the server is in lockdown (an operator's kill switch); every tool is stopped"
    )]
    Lockdown,
    /// An operator revoked the caller's client.
    #[error("refused: client `{0}` was revoked by an operator (kill switch)")]
    ClientRevoked(String),
    /// An operator disabled the tool.
    #[error("refused: tool `{0}` was disabled by an operator (kill switch)")]
    ToolDisabled(String),
    /// The caller has used up its budget across all tools.
    #[error("budget exhausted: this caller may make {count} calls per {}s across all tools (server.caller_budget); retry in {}s", per.as_secs(), retry.as_secs().max(1))]
    BudgetSpent {
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
    /// This caller already has as many calls running as it may.
    #[error("this caller already has {limit} calls running ({rule}); retry when one ends")]
    CallerBusy {
        /// Its limit.
        limit: u32,
        /// The setting that says so.
        rule: &'static str,
    },
}

impl Denial {
    /// The audit's error class of this refusal.
    pub fn class(&self) -> &'static str {
        match self {
            Self::NotPermitted(_) => "unknown_tool",
            Self::Lockdown => "lockdown",
            Self::ClientRevoked(_) => "client_revoked",
            Self::ToolDisabled(_) => "tool_disabled",
            Self::RateLimited { .. } => "rate",
            Self::BudgetSpent { .. } => "budget",
            Self::Busy { .. } | Self::CallerBusy { .. } => "concurrency",
        }
    }
}

/// Calls one caller may have running at once, each caller counted apart
/// (one semaphore per caller, dropped once idle).
pub struct CallerSlots {
    limit: u32,
    rule: &'static str,
    callers: std::sync::Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
}

impl CallerSlots {
    /// At most `limit` calls per caller, refused naming `rule`.
    pub fn new(limit: u32, rule: &'static str) -> Self {
        Self {
            limit,
            rule,
            callers: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// One of `caller`'s slots, held until dropped, or why not.
    pub fn take(&self, caller: &CallerIdentity) -> Result<OwnedSemaphorePermit, Denial> {
        let semaphore = {
            let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
            if callers.len() >= SWEEP_AT {
                // Idle callers: nobody holds their semaphore or a permit.
                callers.retain(|_, s| Arc::strong_count(s) > 1);
            }
            callers
                .entry(caller_key(caller))
                .or_insert_with(|| Arc::new(Semaphore::new(self.limit as usize)))
                .clone()
        };
        semaphore
            .try_acquire_owned()
            .map_err(|_| Denial::CallerBusy {
                limit: self.limit,
                rule: self.rule,
            })
    }
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
    let scopes_ok = access.scopes.iter().all(|s| caller.scopes.contains(s));
    group_ok && client_ok && user_ok && scopes_ok
}

/// Callers' rate state: one GCRA cell per caller (governor), swept of
/// idle callers when it grows past [`SWEEP_AT`].
type CallerRates = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Rate and concurrency limits of one component's tools.
pub struct ToolLimiter {
    rate: Option<(Rate, CallerRates)>,
    concurrency: Option<(u32, Arc<Semaphore>)>,
    caller_concurrency: Option<CallerSlots>,
}

/// The key a caller's rate and budget state is kept under: client and user.
pub fn caller_key(caller: &CallerIdentity) -> String {
    format!(
        "{}\u{0}{}",
        caller.client,
        caller.user.as_deref().unwrap_or("")
    )
}

/// `server.caller_budget`: calls one caller may make across all tools per
/// window, whatever each tool's own rate allows (governor, one cell per
/// caller; all of the budget available at once, refilling over the window).
pub struct CallerBudget {
    budget: Rate,
    callers: CallerRates,
}

impl CallerBudget {
    /// A budget of `budget` per caller.
    pub fn new(budget: Rate) -> Self {
        Self {
            budget,
            callers: RateLimiter::keyed(quota(budget)),
        }
    }

    /// Spends one call of `caller`'s budget, or says when one is next free.
    pub fn spend(&self, caller: &CallerIdentity) -> Result<(), Denial> {
        if self.callers.len() >= SWEEP_AT {
            self.callers.retain_recent();
        }
        self.callers
            .check_key(&caller_key(caller))
            .map_err(|not_until| Denial::BudgetSpent {
                count: self.budget.count,
                per: self.budget.per,
                retry: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }
}

/// Held for the duration of an admitted call.
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
    _caller_permit: Option<OwnedSemaphorePermit>,
}

/// Callers tracked before those whose state has fully recovered are dropped.
const SWEEP_AT: usize = 10_000;

/// Every component's limiter, kept outside the registry so that a reload
/// does not reset rate limits or concurrency counts: a component keeps its
/// limiter while its manifest path and limits stay the same.
#[derive(Default)]
pub struct Limiters {
    by_manifest: std::sync::Mutex<HashMap<PathBuf, (LimiterSettings, Arc<ToolLimiter>)>>,
}

/// The limits a limiter was made for.
type LimiterSettings = (Option<Rate>, Option<u32>, Option<u32>);

impl Limiters {
    /// The limiter of the component `manifest` describes: the one it had,
    /// if its limits did not change.
    pub fn for_manifest(&self, manifest: &crate::manifest::ToolManifest) -> Arc<ToolLimiter> {
        let settings = (
            manifest.rate,
            manifest.concurrency,
            manifest.caller_concurrency,
        );
        let mut by_manifest = self.by_manifest.lock().unwrap_or_else(|p| p.into_inner());
        match by_manifest.get(&manifest.path) {
            Some((kept, limiter)) if *kept == settings => limiter.clone(),
            _ => {
                let limiter = Arc::new(ToolLimiter::new(settings.0, settings.1, settings.2));
                by_manifest.insert(manifest.path.clone(), (settings, limiter.clone()));
                limiter
            }
        }
    }
}

impl ToolLimiter {
    /// Limits from a manifest; `None` means unlimited.
    pub fn new(
        rate: Option<Rate>,
        concurrency: Option<u32>,
        caller_concurrency: Option<u32>,
    ) -> Self {
        Self {
            rate: rate.map(|r| (r, RateLimiter::keyed(quota(r)))),
            concurrency: concurrency.map(|n| (n, Arc::new(Semaphore::new(n as usize)))),
            caller_concurrency: caller_concurrency
                .map(|n| CallerSlots::new(n, "limits.caller_concurrency")),
        }
    }

    /// Admits one call of `tool` by `caller`, or says why not.
    pub fn admit(&self, tool: &str, caller: &CallerIdentity) -> Result<Admission, Denial> {
        if let Some((rate, callers)) = &self.rate {
            let key = caller_key(caller);
            if callers.len() >= SWEEP_AT {
                callers.retain_recent();
            }
            if let Err(not_until) = callers.check_key(&key) {
                return Err(Denial::RateLimited {
                    tool: tool.to_owned(),
                    count: rate.count,
                    per: rate.per,
                    retry: not_until.wait_time_from(DefaultClock::default().now()),
                });
            }
        }
        let caller_permit = self
            .caller_concurrency
            .as_ref()
            .map(|slots| slots.take(caller))
            .transpose()?;
        let permit = match &self.concurrency {
            Some((limit, semaphore)) => Some(semaphore.clone().try_acquire_owned().map_err(
                |_| Denial::Busy {
                    tool: tool.to_owned(),
                    limit: *limit,
                },
            )?),
            None => None,
        };
        Ok(Admission {
            _permit: permit,
            _caller_permit: caller_permit,
        })
    }
}

/// `count` calls per `per`, all of them available at once (the burst).
fn quota(rate: Rate) -> Quota {
    let count = NonZeroU32::new(rate.count.max(1)).expect("at least one");
    let period = (rate.per / count.get()).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .expect("a non-zero period")
        .allow_burst(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(client: &str, groups: &[&str]) -> CallerIdentity {
        CallerIdentity {
            client: client.into(),
            user: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..CallerIdentity::default()
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
        let scoped = Access {
            scopes: vec!["tools:read".into(), "tools:files".into()],
            ..Access::default()
        };
        let mut holder = caller("a", &[]);
        holder.scopes = vec!["tools:read".into()];
        assert!(!may_use(&scoped, &holder), "every listed scope is needed");
        holder.scopes.push("tools:files".into());
        assert!(may_use(&scoped, &holder));
    }

    #[test]
    fn rate_is_per_caller() {
        let limiter = ToolLimiter::new(
            Some(Rate {
                count: 2,
                per: Duration::from_secs(3600),
            }),
            None,
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
    fn each_caller_has_its_own_concurrency_slots() {
        let limiter = ToolLimiter::new(None, None, Some(1));
        let (a, b) = (caller("a", &[]), caller("b", &[]));
        let held = limiter.admit("t", &a).unwrap();
        assert!(matches!(
            limiter.admit("t", &a),
            Err(Denial::CallerBusy {
                limit: 1,
                rule: "limits.caller_concurrency"
            })
        ));
        let other = limiter.admit("t", &b);
        assert!(other.is_ok(), "another caller is not held back");
        drop(held);
        assert!(limiter.admit("t", &a).is_ok());
    }

    #[test]
    fn concurrency_is_released_when_the_call_ends() {
        let limiter = ToolLimiter::new(None, Some(1), None);
        let a = caller("a", &[]);
        let held = limiter.admit("t", &a).unwrap();
        assert!(matches!(limiter.admit("t", &a), Err(Denial::Busy { .. })));
        drop(held);
        assert!(limiter.admit("t", &a).is_ok());
    }
}
