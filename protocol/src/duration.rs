//! Durations on the command line (DESIGN §8): a number with a unit, `500ms`, `20s`, `2m`, `1h`.
//! Both binaries take them, so they share one parser and one set of error messages.

use std::time::Duration;

/// Parses `500ms`, `20s`, `1.5s`, `2m`, `1h`. A bare number is refused (is `20` seconds or
/// milliseconds?), and so are zero, negative and absurdly long durations.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("`{s}` needs a unit: ms, s, m or h"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a number with a unit"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` (use ms, s, m or h)")),
    };
    // Below 1e9 s (31 years) so that adding it to an `Instant` cannot overflow.
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("`{s}` must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("20").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("xs").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("1e99s").is_err());
        assert!(parse_duration("99999999999s").is_err());
    }
}
