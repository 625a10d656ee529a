//! Human-written quantities in config files: sizes, durations, rates.

use std::time::Duration;

/// Parses `512`, `512B`, `64KiB`, `64MiB`, `1GiB` (also `KB`/`MB`/`GB` as
/// powers of 1000) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .replace('_', "")
        .parse()
        .map_err(|_| format!("a size such as \"64MiB\", got \"{text}\""))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("a size unit of B, KiB, MiB or GiB, got \"{text}\"")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("a size that fits in 64 bits, got \"{text}\""))
}

/// Parses `250ms`, `5s`, `2m`, `12h`, `90d` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("a duration such as \"5s\" or \"500ms\", got \"{text}\""))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" | "min" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        "d" => Ok(Duration::from_secs(number * 86_400)),
        _ => Err(format!(
            "a duration unit of ms, s, m, h or d, got \"{text}\""
        )),
    }
}

/// A rate such as `60/min`: at most `count` events per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per window.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

/// Parses `10/s`, `60/min`, `1000/h`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let expected = || format!("a rate such as \"60/min\" (per s, min, h or day), got \"{text}\"");
    let (count, unit) = text.trim().split_once('/').ok_or_else(expected)?;
    let count: u32 = count.trim().parse().map_err(|_| expected())?;
    let per = match unit.trim() {
        "s" | "sec" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        _ => return Err(expected()),
    };
    if count == 0 {
        return Err(expected());
    }
    Ok(Rate { count, per })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("256KiB"), Ok(256 << 10));
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert!(parse_size("64 lots").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("60/min"),
            Ok(Rate {
                count: 60,
                per: Duration::from_secs(60)
            })
        );
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("60 per minute").is_err());
    }
}
