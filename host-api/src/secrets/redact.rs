//! Redaction: finds every run of at least K consecutive characters of a
//! credential, in the encodings an ordinary HTTP upstream (or a tool) can
//! produce, and removes it.
//!
//! Each haystack is read through one *view* that undoes the encodings
//! which act character by character: percent-escapes (any case, partial or
//! whole), JSON/JavaScript `\uXXXX`, `\xXX` and `\/`-style escapes, and
//! HTML/XML character references are decoded; NUL bytes (UTF-16 of ASCII
//! text) and line breaks (wrapped base64) are dropped. The view is searched
//! in one linear pass by one ASCII-case-insensitive Aho-Corasick automaton
//! holding, for every value the process has ever injected: every K-run of
//! the value, forwards and reversed; the hex of every K-run; and the base64
//! of the value at all three byte alignments (standard and URL-safe
//! alphabets), cut into the runs that any K consecutive bytes of the value
//! always produce whatever comes before them.
//!
//! The view remembers which span of the original each of its bytes came
//! from, so a match removes the original text, escapes and all.
//!
//! Patterns are built only from the value itself (and the bytes actually
//! sent for it), never from the operator's `format` text around it: a
//! pattern mixing known text with fewer than K characters of the value
//! would let a tool test guesses one character at a time.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

use super::SecretValue;

/// The default K: the shortest run of a credential that is scrubbed.
pub const DEFAULT_MIN_RUN: usize = 8;

/// The smallest K an operator may configure.
pub const MIN_RUN_FLOOR: usize = 6;

/// The largest K an operator may configure.
pub const MIN_RUN_CEILING: usize = 64;

/// What replaces a scrubbed run.
pub const REDACTED: &str = "[redacted]";

/// Every credential value this process has injected, for its whole life
/// (a rotated value stays, so an old copy held anywhere is still scrubbed),
/// and the current [`Scrubber`] built from them.
pub struct Redactor {
    min_run: usize,
    current: RwLock<Arc<Scrubber>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Redactor(min_run {}, {} values)",
            self.min_run,
            self.scrubber().values.len()
        )
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(DEFAULT_MIN_RUN)
    }
}

impl Redactor {
    /// A redactor that scrubs runs of `min_run` (K) characters or more,
    /// clamped to [`MIN_RUN_FLOOR`]..=[`MIN_RUN_CEILING`].
    pub fn new(min_run: usize) -> Self {
        Self {
            min_run: min_run.clamp(MIN_RUN_FLOOR, MIN_RUN_CEILING),
            current: RwLock::new(Arc::new(Scrubber::default())),
        }
    }

    /// K, as configured.
    pub fn min_run(&self) -> usize {
        self.min_run
    }

    /// The shortest value that can be injected: twice K, so that K is
    /// never more than half a value.
    pub fn min_value_len(&self) -> usize {
        2 * self.min_run
    }

    /// Remembers a value and the bytes sent for it (which differ from the
    /// value when it travels percent-encoded in a query). Cheap when both
    /// are already known.
    pub fn remember(&self, value: &SecretValue, sent: &str) {
        let forms = [value.expose(), sent];
        let known = |scrubber: &Scrubber| {
            forms
                .iter()
                .all(|form| scrubber.values.iter().any(|v| v.expose() == *form))
        };
        if known(&self.scrubber()) {
            return;
        }
        let mut current = self.current.write().expect("redactor");
        if known(&current) {
            return;
        }
        let mut values = current.values.clone();
        for form in forms {
            if !values.iter().any(|v| v.expose() == form) {
                values.push(SecretValue::new(form.to_owned()));
            }
        }
        *current = Arc::new(Scrubber::build(values, self.min_run));
    }

    /// The scrubber for everything remembered so far.
    pub fn scrubber(&self) -> Arc<Scrubber> {
        self.current.read().expect("redactor").clone()
    }
}

/// The automata for a fixed set of values. Cheap to share; rebuilt (by
/// [`Redactor::remember`]) only when a new value is injected.
#[derive(Default)]
pub struct Scrubber {
    values: Vec<SecretValue>,
    automaton: Option<AhoCorasick>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} values)", self.values.len())
    }
}

impl Scrubber {
    fn build(values: Vec<SecretValue>, min_run: usize) -> Self {
        let mut patterns = HashSet::new();
        for value in &values {
            let bytes = value.expose().as_bytes();
            let k = min_run.min(bytes.len() / 2).max(1);
            text_patterns(bytes, k, &mut patterns);
            base64_patterns(bytes, k, &mut patterns);
        }
        let automaton = (!patterns.is_empty()).then(|| {
            AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::DFA))
                .match_kind(MatchKind::Standard)
                .ascii_case_insensitive(true)
                .build(patterns)
                .expect("redaction patterns are small")
        });
        Self { values, automaton }
    }

    /// Whether no value is known, so nothing can be scrubbed.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether `haystack` holds a run of any known value in any encoding.
    pub fn contains(&self, haystack: &[u8]) -> bool {
        !self.spans(haystack).is_empty()
    }

    /// `haystack` with every run of a known value replaced by
    /// [`REDACTED`], or `None` when there was nothing to replace.
    pub fn scrub(&self, haystack: &[u8]) -> Option<Vec<u8>> {
        let spans = self.spans(haystack);
        if spans.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(haystack.len());
        let mut at = 0;
        for span in spans {
            out.extend_from_slice(&haystack[at..span.start]);
            out.extend_from_slice(REDACTED.as_bytes());
            at = span.end;
        }
        out.extend_from_slice(&haystack[at..]);
        Some(out)
    }

    /// [`Scrubber::scrub`] for text; a cut through a multi-byte character
    /// leaves a replacement character.
    pub fn scrub_text(&self, text: &str) -> String {
        match self.scrub(text.as_bytes()) {
            None => text.to_owned(),
            Some(bytes) => String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }

    /// The merged, sorted spans of `haystack` that hold a run of a value.
    fn spans(&self, haystack: &[u8]) -> Vec<Range<usize>> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let view = View::of(haystack);
        let mut spans: Vec<Range<usize>> = automaton
            .find_overlapping_iter(&view.bytes)
            .map(|found| view.origin(found.start()..found.end()))
            .collect();
        // The view reads escapes, and text around a verbatim run can make
        // part of it read as one (`%` before a run that starts with two
        // hex digits; a value that itself holds `\/`): so the haystack as
        // it is is searched too, unless it has nothing the view decodes.
        if view.bytes != haystack {
            spans.extend(
                automaton
                    .find_overlapping_iter(haystack)
                    .map(|found| found.start()..found.end()),
            );
        }
        merge(spans)
    }
}

fn merge(mut spans: Vec<Range<usize>>) -> Vec<Range<usize>> {
    spans.sort_by_key(|s| s.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// Patterns are matched ignoring ASCII case, so each is stored lower-case.
fn text_patterns(value: &[u8], k: usize, out: &mut HashSet<Vec<u8>>) {
    let lower = value.to_ascii_lowercase();
    for run in lower.windows(k) {
        out.insert(run.to_vec());
        out.insert(run.iter().rev().copied().collect());
    }
    for run in value.windows(k) {
        out.insert(hex::encode(run).into_bytes());
    }
}

/// Base64 runs: for each alignment, the value's full 3-byte groups encode
/// to characters that depend on the value alone. Any K consecutive bytes
/// contain at least `(K - 2) / 3` full groups at some alignment, so every
/// run of that many groups (at a group boundary) is a pattern.
fn base64_patterns(value: &[u8], k: usize, out: &mut HashSet<Vec<u8>>) {
    let run = 4 * (k.saturating_sub(2) / 3).max(1);
    for shift in 0..3.min(value.len()) {
        let rest = &value[shift..];
        let whole = rest.len() / 3 * 3;
        let encoded = STANDARD_NO_PAD.encode(&rest[..whole]);
        let encoded = encoded.as_bytes();
        let mut start = 0;
        while start + run <= encoded.len() {
            let standard = &encoded[start..start + run];
            let url_safe = standard.iter().map(|&b| match b {
                b'+' => b'-',
                b'/' => b'_',
                other => other,
            });
            out.insert(url_safe.collect());
            out.insert(standard.to_vec());
            start += 4;
        }
    }
}

/// A decoded copy of a haystack, and where each of its bytes came from.
struct View {
    bytes: Vec<u8>,
    /// In order of `view_at`; a plain run maps byte for byte, an escape
    /// maps all its decoded bytes to the whole escape.
    segments: Vec<Segment>,
}

struct Segment {
    /// Where the segment starts in the view.
    view_at: usize,
    /// Where it starts in the original.
    origin_at: usize,
    /// Bytes of the original one escape takes; 0 for a plain run.
    escape_len: usize,
}

impl View {
    fn of(haystack: &[u8]) -> Self {
        let mut view = Self {
            bytes: Vec::with_capacity(haystack.len()),
            segments: Vec::new(),
        };
        let special = |b: &u8| matches!(b, 0 | b'%' | b'\\' | b'&' | b'\r' | b'\n');
        let mut at = 0;
        while at < haystack.len() {
            // A plain run up to the next byte that needs a look, copied whole.
            let run = haystack[at..]
                .iter()
                .position(special)
                .unwrap_or(haystack.len() - at);
            if run > 0 {
                view.segments.push(Segment {
                    view_at: view.bytes.len(),
                    origin_at: at,
                    escape_len: 0,
                });
                view.bytes.extend_from_slice(&haystack[at..at + run]);
                at += run;
                continue;
            }
            let (decoded, used) = decode_at(haystack, at);
            let kept: Vec<u8> = decoded
                .as_slice()
                .iter()
                .copied()
                .filter(|b| !matches!(b, b'\r' | b'\n'))
                .collect();
            if !kept.is_empty() {
                view.segments.push(Segment {
                    view_at: view.bytes.len(),
                    origin_at: at,
                    escape_len: used,
                });
                view.bytes.extend_from_slice(&kept);
            }
            at += used;
        }
        view
    }

    /// The span of the original that view bytes `range` came from.
    fn origin(&self, range: Range<usize>) -> Range<usize> {
        let span_of = |index: usize| {
            let segment = &self.segments[self.segments.partition_point(|s| s.view_at <= index) - 1];
            if segment.escape_len == 0 {
                let at = segment.origin_at + (index - segment.view_at);
                at..at + 1
            } else {
                segment.origin_at..segment.origin_at + segment.escape_len
            }
        };
        span_of(range.start).start..span_of(range.end - 1).end
    }
}

/// Up to four decoded bytes.
struct Decoded {
    bytes: [u8; 4],
    len: usize,
}

impl Decoded {
    fn none() -> Self {
        Self {
            bytes: [0; 4],
            len: 0,
        }
    }

    fn byte(byte: u8) -> Self {
        Self {
            bytes: [byte, 0, 0, 0],
            len: 1,
        }
    }

    fn char(c: char) -> Self {
        let mut bytes = [0; 4];
        let len = c.encode_utf8(&mut bytes).len();
        Self { bytes, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The escape (or plain byte) at `at`: what it stands for and how many
/// bytes of the original it takes.
fn decode_at(hay: &[u8], at: usize) -> (Decoded, usize) {
    let rest = &hay[at..];
    let decoded = match rest[0] {
        0 => Some((Decoded::none(), 1)),
        b'%' => hex_byte(rest.get(1..3)).map(|b| (Decoded::byte(b), 3)),
        b'\\' => backslash_escape(rest),
        b'&' => character_reference(rest),
        _ => None,
    };
    decoded.unwrap_or((Decoded::byte(rest[0]), 1))
}

/// The byte two hex digits spell, if they do.
pub(super) fn hex_byte(digits: Option<&[u8]>) -> Option<u8> {
    let digits = std::str::from_utf8(digits?).ok()?;
    u8::from_str_radix(digits, 16).ok()
}

fn backslash_escape(rest: &[u8]) -> Option<(Decoded, usize)> {
    match rest.get(1)? {
        b'u' => {
            let digits = std::str::from_utf8(rest.get(2..6)?).ok()?;
            let code = u32::from_str_radix(digits, 16).ok()?;
            char::from_u32(code).map(|c| (Decoded::char(c), 6))
        }
        b'x' => hex_byte(rest.get(2..4)).map(|b| (Decoded::byte(b), 4)),
        b'n' => Some((Decoded::byte(b'\n'), 2)),
        b'r' => Some((Decoded::byte(b'\r'), 2)),
        b't' => Some((Decoded::byte(b'\t'), 2)),
        &c @ (b'/' | b'\\' | b'"' | b'\'') => Some((Decoded::byte(c), 2)),
        _ => None,
    }
}

/// Named references for the characters credentials are made of.
const NAMED_REFERENCES: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("sol", '/'),
    ("plus", '+'),
    ("equals", '='),
    ("period", '.'),
    ("lowbar", '_'),
    ("hyphen", '-'),
    ("dash", '-'),
    ("colon", ':'),
    ("tilde", '~'),
    ("num", '#'),
    ("percnt", '%'),
    ("excl", '!'),
    ("quest", '?'),
    ("commat", '@'),
    ("dollar", '$'),
    ("ast", '*'),
    ("comma", ','),
    ("semi", ';'),
    ("bsol", '\\'),
    ("verbar", '|'),
    ("lpar", '('),
    ("rpar", ')'),
    ("lsqb", '['),
    ("rsqb", ']'),
    ("lcub", '{'),
    ("rcub", '}'),
    ("Hat", '^'),
    ("grave", '`'),
];

/// `&#65;`, `&#x41;` or `&name;` (at most 12 bytes long).
fn character_reference(rest: &[u8]) -> Option<(Decoded, usize)> {
    let end = rest.iter().take(12).position(|&b| b == b';')?;
    let body = std::str::from_utf8(&rest[1..end]).ok()?;
    let c = if let Some(number) = body.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        char::from_u32(code)?
    } else {
        NAMED_REFERENCES
            .iter()
            .find(|(name, _)| *name == body)
            .map(|(_, c)| *c)?
    };
    Some((Decoded::char(c), end + 1))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    use super::*;

    const VALUE: &str = "tok-A1b2C3d4E5f6G7h8I9j0/x+y";

    fn scrubber() -> Arc<Scrubber> {
        let redactor = Redactor::default();
        redactor.remember(&SecretValue::new(VALUE.into()), VALUE);
        redactor.scrubber()
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        text.encode_utf16()
            .flat_map(|u| {
                if big_endian {
                    u.to_be_bytes()
                } else {
                    u.to_le_bytes()
                }
            })
            .collect()
    }

    fn wrapped(text: String, width: usize) -> String {
        text.as_bytes()
            .chunks(width)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    /// Every form an echoing upstream might use, each of which must lose
    /// every 8-character piece of the value.
    fn encodings() -> Vec<(String, Vec<u8>)> {
        let v = VALUE;
        let sent = format!("Bearer {v}");
        let mut forms: Vec<(String, Vec<u8>)> = vec![
            ("raw".into(), v.into()),
            ("upper".into(), v.to_uppercase().into()),
            ("lower".into(), v.to_lowercase().into()),
            (
                "reversed".into(),
                v.chars().rev().collect::<String>().into(),
            ),
            ("hex".into(), hex::encode(v).into()),
            ("HEX".into(), hex::encode_upper(v).into()),
            (
                "percent-all-lower".into(),
                v.bytes()
                    .map(|b| format!("%{b:02x}"))
                    .collect::<String>()
                    .into(),
            ),
            (
                "percent-partial".into(),
                v.bytes()
                    .enumerate()
                    .map(|(i, b)| {
                        if i % 2 == 0 {
                            format!("%{b:02X}")
                        } else {
                            (b as char).to_string()
                        }
                    })
                    .collect::<String>()
                    .into(),
            ),
            (
                "json-u".into(),
                v.chars()
                    .map(|c| format!("\\u{:04x}", c as u32))
                    .collect::<String>()
                    .into(),
            ),
            (
                "html-decimal".into(),
                v.chars()
                    .map(|c| format!("&#{};", c as u32))
                    .collect::<String>()
                    .into(),
            ),
            (
                "html-hex-named".into(),
                v.replace('/', "&sol;")
                    .replace('+', "&plus;")
                    .replace('-', "&#x2d;")
                    .into(),
            ),
            ("utf16le".into(), utf16(v, false)),
            ("utf16be".into(), utf16(&sent, true)),
            ("url-safe".into(), URL_SAFE_NO_PAD.encode(v).into()),
            (
                "wrapped-4".into(),
                wrapped(STANDARD.encode(&sent), 4).into(),
            ),
        ];
        for prefix in ["", "x", "xy", "xyz"] {
            forms.push((
                format!("base64 after {prefix:?}"),
                STANDARD.encode(format!("{prefix}{sent}")).into(),
            ));
            forms.push((
                format!("base64 of the bare value after {prefix:?}"),
                STANDARD.encode(format!("{prefix}{v}")).into(),
            ));
        }
        forms
    }

    #[test]
    fn every_encoding_loses_every_piece() {
        let scrubber = scrubber();
        for (name, encoded) in encodings() {
            let mut text = b"prefix ".to_vec();
            text.extend_from_slice(&encoded);
            text.extend_from_slice(b" suffix");
            let scrubbed = scrubber
                .scrub(&text)
                .unwrap_or_else(|| panic!("{name}: nothing found"));
            assert!(!scrubber.contains(&scrubbed), "{name}: a piece is left");
            let shown = String::from_utf8_lossy(&scrubbed);
            assert!(shown.starts_with("prefix"), "{name}: {shown}");
            assert!(shown.contains(REDACTED), "{name}: {shown}");
            for run in VALUE.as_bytes().windows(DEFAULT_MIN_RUN) {
                let run = std::str::from_utf8(run).unwrap();
                assert!(!shown.contains(run), "{name}: {run} left in {shown}");
            }
        }
    }

    #[test]
    fn pieces_and_halves_are_scrubbed_but_short_fragments_and_other_text_are_not() {
        let scrubber = scrubber();
        let first = &VALUE[..14];
        let second = &VALUE[14..];
        let split = format!("x-a: {first}\r\nx-b: {second}\r\n");
        let out = scrubber.scrub_text(&split);
        assert!(!out.contains(first) && !out.contains(second), "{out}");
        assert_eq!(scrubber.scrub_text(&VALUE[..7]), &VALUE[..7]);
        let ordinary = "{\"rows\": [1, 2, 3], \"token\": \"Bearer\"}";
        assert_eq!(scrubber.scrub_text(ordinary), ordinary);
        assert!(scrubber.scrub(ordinary.as_bytes()).is_none());
    }

    /// Found by the fuzzed redactor: a value holding `\/` (or `%41`,
    /// `&amp;`) echoed as it is reads shorter through the view, and so does
    /// a run after a `%` when it starts with two hex digits: such runs
    /// were never matched.
    #[test]
    fn a_verbatim_run_is_scrubbed_whatever_it_holds_or_follows() {
        for value in [
            "a!AAaaaaA!A!0a!0aaa0\\/a0a0AAA",
            "pct%41%42%43-abcdefgh-%7e%7e",
            "amp&amp;&lt;-qwertyuiop-&#x41;",
            "a!Aa0a&a0a!A00AaAa!a!a!A!aAA",
        ] {
            let redactor = Redactor::default();
            redactor.remember(&SecretValue::new(value.into()), value);
            let scrubber = redactor.scrubber();
            for start in 0..=value.len() - redactor.min_run() {
                let run = &value[start..start + redactor.min_run()];
                for text in [
                    format!("echo {run} echo"),
                    format!("%{run}&"),
                    format!("\\{run}\\"),
                ] {
                    let out = scrubber.scrub_text(&text);
                    assert!(!out.contains(run), "{value}: {run} -> {out}");
                }
            }
        }
    }

    #[test]
    fn a_rotated_value_stays_scrubbed_beside_the_new_one() {
        let redactor = Redactor::default();
        let old = SecretValue::new("old-value-0123456789abcdef".into());
        let new = SecretValue::new("new-value-fedcba9876543210".into());
        redactor.remember(&old, old.expose());
        redactor.remember(&new, new.expose());
        let text = format!("{} and {}", old.expose(), new.expose());
        assert_eq!(
            redactor.scrubber().scrub_text(&text),
            format!("{REDACTED} and {REDACTED}")
        );
    }

    #[test]
    fn the_sent_form_of_a_query_value_is_scrubbed_too() {
        let redactor = Redactor::default();
        let value = SecretValue::new("key with spaces & symbols=1".into());
        let sent = "key%20with%20spaces%20%26%20symbols%3D1";
        redactor.remember(&value, sent);
        let scrubber = redactor.scrubber();
        assert!(scrubber.contains(sent.as_bytes()));
        assert!(scrubber.contains(value.expose().as_bytes()));
    }

    #[test]
    fn k_is_clamped_and_never_more_than_half_a_value() {
        assert_eq!(Redactor::new(2).min_run(), MIN_RUN_FLOOR);
        assert_eq!(Redactor::new(1000).min_run(), MIN_RUN_CEILING);
        assert_eq!(Redactor::new(12).min_value_len(), 24);
    }
}
