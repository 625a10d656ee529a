//! Latency samples, their percentiles, and the result table.

use std::time::Duration;

/// Timings of one measured operation, sorted once taken.
#[derive(Clone)]
pub struct Samples {
    sorted: Vec<Duration>,
}

impl Samples {
    /// Sorts `timings` for percentile queries.
    pub fn new(mut timings: Vec<Duration>) -> Self {
        assert!(
            !timings.is_empty(),
            "a measurement needs at least one sample"
        );
        timings.sort_unstable();
        Self { sorted: timings }
    }

    /// The nearest-rank percentile `p` (0 < p <= 100).
    pub fn percentile(&self, p: f64) -> Duration {
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    /// The median.
    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }

    /// How many samples were taken.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }
}

/// A duration with a unit that keeps three significant figures readable.
pub fn show_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1_000.0)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else {
        format!("{:.2} s", ns / 1_000_000_000.0)
    }
}

/// A rate in calls per second, with thousands separated.
pub fn show_rate(per_second: f64) -> String {
    let whole = per_second.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out}/s")
}

/// A size in MiB with one decimal.
pub fn show_bytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// One side of a comparison: a latency distribution or a throughput.
pub enum Figure {
    /// p50 and p99 of a latency.
    Latency(Samples),
    /// An average over many operations (no distribution).
    Mean(Duration),
    /// Calls completed per second.
    Rate(f64),
    /// A size in bytes (no distribution).
    Bytes(u64),
}

impl Figure {
    fn cells(&self) -> (String, String) {
        match self {
            Self::Latency(s) => (show_duration(s.p50()), show_duration(s.p99())),
            Self::Mean(d) => (show_duration(*d), "–".into()),
            Self::Rate(r) => (show_rate(*r), "–".into()),
            Self::Bytes(b) => (show_bytes(*b), "–".into()),
        }
    }
}

/// One line of the table: Stockade beside its baseline.
pub struct Row {
    /// What Stockade did.
    pub measure: String,
    /// Stockade's figure.
    pub stockade: Figure,
    /// What the baseline did.
    pub baseline_name: String,
    /// The baseline's figure.
    pub baseline: Figure,
}

impl Row {
    /// How much more Stockade costs: time over baseline time for latencies
    /// (p50) and means, baseline rate over Stockade's rate for throughputs
    /// (above 1 = Stockade costs more).
    pub fn ratio(&self) -> f64 {
        match (&self.stockade, &self.baseline) {
            (Figure::Latency(s), Figure::Latency(b)) => {
                s.p50().as_secs_f64() / b.p50().as_secs_f64().max(1e-12)
            }
            (Figure::Mean(s), Figure::Mean(b)) => s.as_secs_f64() / b.as_secs_f64().max(1e-12),
            (Figure::Rate(s), Figure::Rate(b)) => b / s.max(1e-12),
            (Figure::Bytes(s), Figure::Bytes(b)) => *s as f64 / (*b as f64).max(1.0),
            _ => f64::NAN,
        }
    }
}

/// Prints `rows` as a Markdown table, ready to paste into the README.
pub fn print_table(rows: &[Row]) {
    println!(
        "| measure | Stockade p50 | Stockade p99 | baseline | baseline p50 | baseline p99 | ratio (p50) |"
    );
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
    for row in rows {
        let (s50, s99) = row.stockade.cells();
        let (b50, b99) = row.baseline.cells();
        let ratio = row.ratio();
        let ratio = if ratio >= 100.0 {
            format!("{ratio:.0}x")
        } else {
            format!("{ratio:.2}x")
        };
        println!(
            "| {} | {s50} | {s99} | {} | {b50} | {b99} | {ratio} |",
            row.measure, row.baseline_name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let s = Samples::new((1..=100).rev().map(Duration::from_micros).collect());
        assert_eq!(s.p50(), Duration::from_micros(50));
        assert_eq!(s.p99(), Duration::from_micros(99));
        assert_eq!(s.percentile(100.0), Duration::from_micros(100));
        let one = Samples::new(vec![Duration::from_millis(3)]);
        assert_eq!(one.p99(), Duration::from_millis(3));
    }

    #[test]
    fn rates_and_durations_read_well() {
        assert_eq!(show_rate(1234567.4), "1,234,567/s");
        assert_eq!(show_rate(999.0), "999/s");
        assert_eq!(show_duration(Duration::from_nanos(120)), "0.12 µs");
        assert_eq!(show_duration(Duration::from_nanos(45_310)), "45.3 µs");
        assert_eq!(show_duration(Duration::from_micros(1_050)), "1.05 ms");
    }
}
