//! Redaction cost: the scrubber over a response body a tool holding a
//! secret receives, against the naive check it replaced (one exact search
//! for the raw value).

use std::time::Instant;

use stockade_host_api::secrets::{Redactor, SecretValue};

use crate::stats::Samples;

/// The credential the bodies are scrubbed of.
const VALUE: &str = "tok-A1b2C3d4/E5f6+G7h8I9j0.k1";

/// A JSON-looking body of `size` bytes, holding the value once when `with_value`.
pub fn body(size: usize, with_value: bool) -> Vec<u8> {
    let row = b"{\"id\": 12345, \"name\": \"row of ordinary text\", \"ok\": true},\n";
    let mut body: Vec<u8> = row.iter().copied().cycle().take(size).collect();
    if with_value {
        let at = size / 2;
        body[at..at + VALUE.len()].copy_from_slice(VALUE.as_bytes());
    }
    body
}

/// Time to scrub `body` once, `calls` times.
pub fn scrub_latency(body: &[u8], calls: usize) -> Samples {
    let redactor = Redactor::default();
    redactor.remember(&SecretValue::new(VALUE.into()), VALUE);
    let scrubber = redactor.scrubber();
    let timings = (0..calls)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(scrubber.scrub(std::hint::black_box(body)));
            started.elapsed()
        })
        .collect();
    Samples::new(timings)
}

/// Time for one exact search of the raw value in `body`, `calls` times.
pub fn exact_search_latency(body: &[u8], calls: usize) -> Samples {
    let text = String::from_utf8_lossy(body).into_owned();
    let timings = (0..calls)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(std::hint::black_box(&text).contains(VALUE));
            started.elapsed()
        })
        .collect();
    Samples::new(timings)
}
