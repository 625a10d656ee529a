//! The calls running in this process, each with the cancellation token the
//! sandbox watches, so that an operator's switch stops them where they are.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

/// One running call, as the switches see it.
struct Entry {
    tool: String,
    client: String,
    token: CancellationToken,
    /// Why an operator stopped it, once one did.
    stopped: Arc<OnceLock<String>>,
}

/// Every call running in this process.
#[derive(Default)]
pub struct RunningCalls {
    next: AtomicU64,
    calls: Mutex<HashMap<u64, Entry>>,
}

/// A call's place among the running ones; leaving it (drop) forgets it.
pub struct RunningCall<'a> {
    calls: &'a RunningCalls,
    id: u64,
    token: CancellationToken,
    stopped: Arc<OnceLock<String>>,
}

impl RunningCalls {
    /// Enters a call of `tool` by `client`; its token is a child of
    /// `cancel` (the client's), so either may stop it.
    pub fn enter(&self, tool: &str, client: &str, cancel: &CancellationToken) -> RunningCall<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = cancel.child_token();
        let stopped = Arc::new(OnceLock::new());
        self.lock().insert(
            id,
            Entry {
                tool: tool.to_owned(),
                client: client.to_owned(),
                token: token.clone(),
                stopped: stopped.clone(),
            },
        );
        RunningCall {
            calls: self,
            id,
            token,
            stopped,
        }
    }

    /// Stops every running call for which `matches(tool, client)` gives a
    /// reason; returns how many were stopped.
    pub fn stop_where(&self, matches: impl Fn(&str, &str) -> Option<String>) -> usize {
        let calls = self.lock();
        let mut stopped = 0;
        for entry in calls.values() {
            if let Some(reason) = matches(&entry.tool, &entry.client) {
                // The first reason stands.
                let _ = entry.stopped.set(reason);
                entry.token.cancel();
                stopped += 1;
            }
        }
        stopped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RunningCall<'_> {
    /// The token the sandbox watches.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why an operator stopped this call, if one did.
    pub fn stopped_by_operator(&self) -> Option<&str> {
        self.stopped.get().map(String::as_str)
    }
}

impl Drop for RunningCall<'_> {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.id);
    }
}
