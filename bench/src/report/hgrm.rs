//! The HdrHistogram percentile-distribution text format (`.hgrm`), as Java's
//! `outputPercentileDistribution` writes it and the HdrHistogram plotter
//! (<https://hdrhistogram.github.io/HdrHistogram/plotFiles.html>) reads it.
//!
//! Latencies are recorded in nanoseconds; the file states them in milliseconds (the plotter's
//! usual unit), as the Java tool does with an output scaling ratio.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Nanoseconds per output unit (milliseconds).
pub const NS_PER_MS: f64 = 1_000_000.0;

/// Percentile rows per halving of the distance to 100 %, as the Java default.
pub const TICKS_PER_HALF: u32 = 5;

/// The `.hgrm` text of `h` (values in ns, written in ms).
pub fn render(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    out.push_str("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / NS_PER_MS;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {q:14.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:14.12} {total:10}");
            }
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / NS_PER_MS,
        h.stdev() / NS_PER_MS
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / NS_PER_MS,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    );
    out
}

/// One data row of a `.hgrm` file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Value in ms.
    pub value_ms: f64,
    /// Quantile (0..=1).
    pub quantile: f64,
    /// Samples at or below the value.
    pub total: u64,
}

/// Parses the data rows of a `.hgrm` text (what the plotter reads). `None` for a malformed
/// row: this is for tests and for `compare`-style tooling, not for untrusted input at scale.
pub fn parse(text: &str) -> Option<Vec<Row>> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let mut f = line.split_whitespace();
        rows.push(Row {
            value_ms: f.next()?.parse().ok()?,
            quantile: f.next()?.parse().ok()?,
            total: f.next()?.parse().ok()?,
        });
    }
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for i in 1..=10_000u64 {
            // 10 us .. 100 ms, skewed like a latency distribution.
            h.record(10_000 + i * i).unwrap();
        }
        h
    }

    #[test]
    fn rows_round_trip_through_the_histograms_own_iterator() {
        let h = sample();
        let text = render(&h);
        let rows = parse(&text).unwrap();
        let want: Vec<_> = h.iter_quantiles(TICKS_PER_HALF).collect();
        assert_eq!(rows.len(), want.len());
        let mut total = 0;
        for (r, w) in rows.iter().zip(&want) {
            total += w.count_since_last_iteration();
            assert_eq!(r.total, total);
            let v = w.value_iterated_to() as f64 / NS_PER_MS;
            assert!((r.value_ms - v).abs() <= 0.0005, "{} vs {v}", r.value_ms);
            assert!((r.quantile - w.quantile_iterated_to()).abs() < 1e-11);
        }
        let last = rows.last().unwrap();
        assert_eq!(last.total, h.len());
        assert_eq!(last.quantile, 1.0);
        // The value at each row's quantile is the histogram's own answer for it.
        let p99 = rows.iter().find(|r| r.quantile >= 0.99).unwrap();
        let own = h.value_at_quantile(p99.quantile) as f64 / NS_PER_MS;
        assert!((p99.value_ms - own).abs() <= 0.0005 + own * 1e-3);
    }

    #[test]
    fn footer_states_max_and_count_like_the_java_writer() {
        let h = sample();
        let text = render(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n"));
        let max = format!(
            "#[Max     = {:12.3}, Total count    = {:12}]",
            h.max() as f64 / NS_PER_MS,
            10_000
        );
        assert!(text.contains(&max), "{text}");
    }

    #[test]
    fn an_empty_histogram_still_has_header_and_footer() {
        let h = Histogram::<u64>::new_with_bounds(1, 1000, 3).unwrap();
        let text = render(&h);
        assert_eq!(parse(&text).unwrap(), vec![]);
        assert!(text.contains("Total count    =            0"));
    }
}
