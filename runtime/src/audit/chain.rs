//! The hash chain: every line carries its sequence number, its time and the
//! SHA-256 of the line before it, so an edited, deleted, inserted or
//! reordered line breaks the chain at that place.

use sha2::{Digest, Sha256};

/// `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the chain stands: the next record's number and the previous
/// line's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Sequence number the next record gets.
    pub next_seq: u64,
    /// Hex SHA-256 of the last line written.
    pub prev: String,
}

/// One line, sealed but not yet written.
pub struct Sealed {
    /// The line, without its newline.
    pub line: String,
    /// Its hash: the next line's `prev`.
    pub hash: String,
}

impl Chain {
    /// The chain of an empty log.
    pub fn genesis() -> Self {
        Self {
            next_seq: 0,
            prev: GENESIS.to_owned(),
        }
    }

    /// `body` (a JSON object with at least one field) as the next line:
    /// `seq`, `ts` and `prev` first, then the body's own fields. The chain
    /// moves on only when [`Chain::advance`] is called, once the line is
    /// written.
    pub fn seal(&self, ts: &str, body: &str) -> Sealed {
        debug_assert!(body.starts_with('{') && body.len() > 2);
        let line = format!(
            "{{\"seq\":{},\"ts\":\"{ts}\",\"prev\":\"{}\",{}",
            self.next_seq,
            self.prev,
            &body[1..]
        );
        let hash = line_hash(line.as_bytes());
        Sealed { line, hash }
    }

    /// Moves past a line that has been written.
    pub fn advance(&mut self, sealed: &Sealed) {
        self.next_seq += 1;
        self.prev.clone_from(&sealed.hash);
    }
}

/// Hex SHA-256 of one line, without its newline.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// The time now as records carry it: UTC, milliseconds,
/// `2026-12-01T04:21:40.123Z` (so text order is time order).
pub fn now() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

/// `at` as records carry it (written field by field: every record pays
/// for it, and a format description is interpreted on each use).
pub fn format_time(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// What a checkpoint's signature covers: its own number and the hash of
/// the line before it, which covers every line before that.
pub fn checkpoint_message(seq: u64, prev: &str) -> Vec<u8> {
    format!("stockade-audit-checkpoint-v1\n{seq}\n{prev}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_with_milliseconds() {
        let at = time::macros::datetime!(2026-03-04 05:06:07.089 +02:00);
        assert_eq!(format_time(at), "2026-03-04T03:06:07.089Z");
        let last_moment = time::macros::datetime!(0999-12-31 23:59:59.999999 UTC);
        assert_eq!(format_time(last_moment), "0999-12-31T23:59:59.999Z");
    }

    #[test]
    fn each_line_names_the_hash_of_the_one_before() {
        let mut chain = Chain::genesis();
        let first = chain.seal("t0", r#"{"event":"a"}"#);
        assert!(first.line.starts_with(&format!(
            r#"{{"seq":0,"ts":"t0","prev":"{GENESIS}","event":"a"}}"#
        )));
        chain.advance(&first);
        let second = chain.seal("t1", r#"{"event":"b"}"#);
        assert!(
            second
                .line
                .contains(&format!("\"prev\":\"{}\"", first.hash))
        );
        assert!(second.line.starts_with("{\"seq\":1,"));
    }
}
