//! What the host refused during one call, named by rule.
//!
//! Every capability records its refusals here: memory and table growth,
//! filesystem caps and quotas, sockets, egress and secrets. When the call
//! then fails, the client's error carries these lines ahead of whatever the
//! tool said, so a refusal the guest swallowed or renamed ("I/O error",
//! "Permission denied") still reaches the client in the rule's own words.
//! The set is bounded and deduplicated, and each distinct rule is logged
//! once at `warn`, so a tool looping on a refused operation grows neither
//! the call's memory, nor the host log, nor the message.

use std::sync::{Arc, Mutex};

/// Distinct refusals kept per call; the rest are counted.
pub const MAX_DISTINCT: usize = 8;
/// Longest refusal line kept, in bytes (a guest-chosen URL or path can be long).
const MAX_LINE_BYTES: usize = 512;

/// One call's refusals, shared by every capability of that call.
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    inner: Arc<Mutex<RefusalSet>>,
}

#[derive(Debug, Default)]
struct RefusalSet {
    tool: String,
    lines: Vec<String>,
    /// Refusals not kept because [`MAX_DISTINCT`] others came first
    /// (repeats of a kept one are not counted).
    more: u64,
}

impl Refusals {
    /// An empty set for one call of the tool named `tool`.
    pub fn new(tool: &str) -> Self {
        Self {
            inner: Arc::new(Mutex::new(RefusalSet {
                tool: tool.to_owned(),
                ..RefusalSet::default()
            })),
        }
    }

    /// Records that the host refused something under `rule` (the text the
    /// client will read). New rules are logged at `warn`, repeats at `debug`.
    pub fn record(&self, rule: impl Into<String>) {
        let mut line: String = rule.into();
        if line.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let mut set = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let tool = set.tool.as_str();
        if set.lines.contains(&line) {
            tracing::debug!(target: "stockade::refused", tool, "{line}");
            return;
        }
        if set.lines.len() >= MAX_DISTINCT {
            tracing::debug!(target: "stockade::refused", tool, "{line}");
            set.more += 1;
            return;
        }
        tracing::warn!(target: "stockade::refused", tool, "{line}");
        set.lines.push(line);
    }

    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        let set = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        set.lines.is_empty()
    }

    /// The distinct refusals in the order they happened, and how many
    /// refusals past the first [`MAX_DISTINCT`] rules were only counted.
    pub fn snapshot(&self) -> (Vec<String>, u64) {
        let set = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (set.lines.clone(), set.more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_overflow_are_counted_not_kept() {
        let refusals = Refusals::new("t");
        for round in 0..1000 {
            refusals.record(format!("egress denied: rule {}", round % 20));
        }
        let (lines, more) = refusals.snapshot();
        assert_eq!(lines.len(), MAX_DISTINCT);
        assert_eq!(lines[0], "egress denied: rule 0");
        // Rules 8..20 were refused 50 times each; repeats of kept rules
        // are not counted.
        assert_eq!(more, 12 * 50);
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let refusals = Refusals::new("t");
        refusals.record("é".repeat(1000));
        let (lines, _) = refusals.snapshot();
        assert!(lines[0].len() <= MAX_LINE_BYTES + '…'.len_utf8());
        assert!(lines[0].ends_with('…'));
    }
}
