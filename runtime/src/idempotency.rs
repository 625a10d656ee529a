//! Idempotency keys for destructive tools: a call of a tool hinted
//! destructive may carry a key in `_meta` (`io.stockade/idempotency-key`);
//! a repeat of that key by the same caller for the same tool within the
//! window gets the recorded result back without the tool running again.
//! The same key with other arguments is refused, as is a repeat while the
//! first call still runs. Records live in this process's memory, at most
//! [`MAX_RECORDS`] of them (the oldest finished ones go first).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rmcp::model::CallToolResult;
use sha2::{Digest, Sha256};

/// The `_meta` key that carries an idempotency key.
pub const META_KEY: &str = "io.stockade/idempotency-key";

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Most records kept at once.
const MAX_RECORDS: usize = 10_000;

/// Who, which tool, which key.
type RecordKey = (String, String, String);

enum Record {
    Running,
    Done {
        arguments: [u8; 32],
        result: CallToolResult,
        at: Instant,
    },
}

/// The recorded results of one process.
pub struct IdempotencyStore {
    window: Duration,
    records: Mutex<HashMap<RecordKey, Record>>,
}

/// What to do with a keyed call.
pub enum Claim<'a> {
    /// Run it; [`Running::finish`] records its result.
    Run(Running<'a>),
    /// Answer with this recorded result.
    Replay(CallToolResult),
    /// Refuse it, for this reason.
    Refuse(String),
}

/// A keyed call running now; dropped unfinished, it leaves no record.
pub struct Running<'a> {
    store: &'a IdempotencyStore,
    key: Option<RecordKey>,
    arguments: [u8; 32],
}

impl IdempotencyStore {
    /// A store whose records last `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            records: Mutex::new(HashMap::new()),
        }
    }

    /// Claims `key` for `caller`'s call of `tool` with `arguments`.
    pub fn claim(&self, caller: &str, tool: &str, key: &str, arguments: &str) -> Claim<'_> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Claim::Refuse(format!(
                "invalid _meta `{META_KEY}`: 1 to {MAX_KEY_BYTES} bytes"
            ));
        }
        let digest: [u8; 32] = Sha256::digest(arguments.as_bytes()).into();
        let record_key = (caller.to_owned(), tool.to_owned(), key.to_owned());
        let mut records = self.lock();
        let now = Instant::now();
        match records.get(&record_key) {
            Some(Record::Done { at, .. }) if now.duration_since(*at) > self.window => {}
            Some(Record::Done {
                arguments, result, ..
            }) => {
                return if *arguments == digest {
                    Claim::Replay(result.clone())
                } else {
                    Claim::Refuse(format!(
                        "refused: idempotency key `{key}` was used for `{tool}` with other arguments"
                    ))
                };
            }
            Some(Record::Running) => {
                return Claim::Refuse(format!(
                    "refused: a call of `{tool}` with idempotency key `{key}` is still running"
                ));
            }
            None => {}
        }
        if records.len() >= MAX_RECORDS {
            self.make_room(&mut records, now);
        }
        records.insert(record_key.clone(), Record::Running);
        Claim::Run(Running {
            store: self,
            key: Some(record_key),
            arguments: digest,
        })
    }

    /// Drops expired records and, if still full, the oldest finished one.
    fn make_room(&self, records: &mut HashMap<RecordKey, Record>, now: Instant) {
        records.retain(|_, record| match record {
            Record::Done { at, .. } => now.duration_since(*at) <= self.window,
            Record::Running => true,
        });
        if records.len() >= MAX_RECORDS {
            let oldest = records
                .iter()
                .filter_map(|(key, record)| match record {
                    Record::Done { at, .. } => Some((*at, key.clone())),
                    Record::Running => None,
                })
                .min();
            if let Some((_, key)) = oldest {
                records.remove(&key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RecordKey, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Running<'_> {
    /// Records `result` for repeats of the key.
    pub fn finish(mut self, result: &CallToolResult) {
        if let Some(key) = self.key.take() {
            self.store.lock().insert(
                key,
                Record::Done {
                    arguments: self.arguments,
                    result: result.clone(),
                    at: Instant::now(),
                },
            );
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.store.lock().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock;

    #[test]
    fn a_repeat_replays_other_arguments_are_refused_and_the_window_ends_it() {
        let store = IdempotencyStore::new(Duration::from_millis(50));
        let result = CallToolResult::success(vec![ContentBlock::text("done")]);
        match store.claim("c", "t", "k", "{}") {
            Claim::Run(running) => {
                assert!(matches!(store.claim("c", "t", "k", "{}"), Claim::Refuse(_)));
                running.finish(&result);
            }
            _ => panic!("the first claim runs"),
        }
        assert!(matches!(store.claim("c", "t", "k", "{}"), Claim::Replay(r) if r == result));
        assert!(matches!(
            store.claim("c", "t", "k", "{\"a\":1}"),
            Claim::Refuse(_)
        ));
        assert!(matches!(
            store.claim("other", "t", "k", "{}"),
            Claim::Run(_)
        ));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(store.claim("c", "t", "k", "{}"), Claim::Run(_)));
    }

    #[test]
    fn a_call_that_did_not_finish_leaves_no_record() {
        let store = IdempotencyStore::new(Duration::from_secs(60));
        drop(store.claim("c", "t", "k", "{}"));
        assert!(matches!(store.claim("c", "t", "k", "{}"), Claim::Run(_)));
    }
}
