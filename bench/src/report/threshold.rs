//! `--threshold 'p99<5ms'`: a bound on one figure of a report, for CI gates.
//!
//! Grammar: `METRIC OP VALUE[UNIT]` with optional spaces. Metrics and the figure each reads:
//!
//! | metric         | figure in `summary.json`         | units                           |
//! |----------------|----------------------------------|---------------------------------|
//! | `p50` `p90` `p99` `p999` `max` | `figures.<m>_us` (primary series) | `ns` `us` `ms` `s` |
//! | `throughput`   | `figures.throughput_per_s`       | none, `k`, `M` (`/s` optional)  |
//! | `delivery`     | `figures.delivery`               | fraction, or `%`                |
//! | `cpu_per_op`   | `figures.registry_cpu_per_op_us` | `ns` `us` `ms` `s`              |
//! | `rss_per_peer` | `figures.registry_rss_per_peer_bytes` | `B` `KB` `KiB` `MB` `MiB`  |
//!
//! Operators: `<`, `<=`, `>`, `>=`.

use std::collections::BTreeMap;
use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// One parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The text as given.
    pub text: String,
    /// The metric name (`p99`).
    pub metric: String,
    /// The figure key it reads.
    pub figure: &'static str,
    /// The operator.
    pub op: Op,
    /// The bound, in the figure's own unit (us, per second, fraction, bytes).
    pub bound: f64,
}

/// Why a threshold did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// No operator.
    #[error("no comparison operator (<, <=, >, >=) in {0:?}")]
    NoOperator(String),
    /// Unknown metric.
    #[error("unknown metric {0:?} (p50, p90, p99, p999, max, throughput, delivery, cpu_per_op, rss_per_peer)")]
    UnknownMetric(String),
    /// Bad number or unit.
    #[error("bad value {0:?} for {1}")]
    BadValue(String, String),
}

enum Kind {
    Time,
    Rate,
    Fraction,
    Bytes,
}

fn metric(name: &str) -> Option<(&'static str, Kind)> {
    Some(match name {
        "p50" => ("p50_us", Kind::Time),
        "p90" => ("p90_us", Kind::Time),
        "p99" => ("p99_us", Kind::Time),
        "p999" | "p99.9" => ("p999_us", Kind::Time),
        "max" => ("max_us", Kind::Time),
        "throughput" => ("throughput_per_s", Kind::Rate),
        "delivery" => ("delivery", Kind::Fraction),
        "cpu_per_op" => ("registry_cpu_per_op_us", Kind::Time),
        "rss_per_peer" => ("registry_rss_per_peer_bytes", Kind::Bytes),
        _ => return None,
    })
}

fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| {
            !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+')
        })
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

fn value(kind: &Kind, s: &str) -> Option<f64> {
    let (num, unit) = split_number(s);
    let n: f64 = num.parse().ok()?;
    let scale = match kind {
        Kind::Time => match unit {
            "ns" => 1e-3,
            "us" | "µs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            _ => return None,
        },
        Kind::Rate => match unit.trim_end_matches("/s") {
            "" => 1.0,
            "k" | "K" => 1e3,
            "M" => 1e6,
            _ => return None,
        },
        Kind::Fraction => match unit {
            "" => 1.0,
            "%" => 0.01,
            _ => return None,
        },
        Kind::Bytes => match unit {
            "" | "B" => 1.0,
            "KB" | "kB" => 1e3,
            "KiB" => 1024.0,
            "MB" => 1e6,
            "MiB" => 1024.0 * 1024.0,
            _ => return None,
        },
    };
    n.is_finite().then_some(n * scale)
}

impl Threshold {
    /// Parses `METRIC OP VALUE[UNIT]`.
    pub fn parse(text: &str) -> Result<Threshold, ThresholdError> {
        let t = text.trim();
        let at = t
            .find(['<', '>'])
            .ok_or_else(|| ThresholdError::NoOperator(text.into()))?;
        let (name, rest) = (t[..at].trim(), &t[at..]);
        let (op, rest) = if let Some(r) = rest.strip_prefix("<=") {
            (Op::Le, r)
        } else if let Some(r) = rest.strip_prefix(">=") {
            (Op::Ge, r)
        } else if let Some(r) = rest.strip_prefix('<') {
            (Op::Lt, r)
        } else if let Some(r) = rest.strip_prefix('>') {
            (Op::Gt, r)
        } else {
            return Err(ThresholdError::NoOperator(text.into()));
        };
        let (figure, kind) =
            metric(name).ok_or_else(|| ThresholdError::UnknownMetric(name.into()))?;
        let bound = value(&kind, rest.trim())
            .ok_or_else(|| ThresholdError::BadValue(rest.trim().into(), name.into()))?;
        Ok(Threshold {
            text: t.into(),
            metric: name.into(),
            figure,
            op,
            bound,
        })
    }

    /// `None` when the figures meet the threshold, else the one line to print.
    pub fn check(&self, figures: &BTreeMap<String, f64>) -> Option<String> {
        match figures.get(self.figure) {
            None => Some(format!(
                "threshold {} missed: this run did not measure {} ({})",
                self.text, self.metric, self.figure
            )),
            Some(&v) if self.op.holds(v, self.bound) => None,
            Some(&v) => Some(format!(
                "threshold {} missed: {} = {} (must be {} {})",
                self.text,
                self.figure,
                fmt_num(v),
                self.op.as_str(),
                fmt_num(self.bound)
            )),
        }
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks every threshold; returns the lines for the missed ones.
pub fn check_all(thresholds: &[Threshold], figures: &BTreeMap<String, f64>) -> Vec<String> {
    thresholds.iter().filter_map(|t| t.check(figures)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_with_units() {
        let t = Threshold::parse("p99<5ms").unwrap();
        assert_eq!((t.figure, t.op, t.bound), ("p99_us", Op::Lt, 5000.0));
        assert_eq!(Threshold::parse("p50 <= 250us").unwrap().bound, 250.0);
        assert_eq!(Threshold::parse("max<2s").unwrap().bound, 2e6);
        assert_eq!(Threshold::parse("p999<1500ns").unwrap().bound, 1.5);
        assert_eq!(Threshold::parse("p99<1us").unwrap().bound, 1.0);
        assert_eq!(
            Threshold::parse("cpu_per_op<3us").unwrap().figure,
            "registry_cpu_per_op_us"
        );
    }

    #[test]
    fn parses_rates_fractions_and_bytes() {
        let t = Threshold::parse("throughput>=150k").unwrap();
        assert_eq!((t.op, t.bound), (Op::Ge, 150_000.0));
        assert_eq!(Threshold::parse("throughput>2M/s").unwrap().bound, 2e6);
        assert_eq!(Threshold::parse("delivery>=100%").unwrap().bound, 1.0);
        assert_eq!(Threshold::parse("delivery>0.999").unwrap().bound, 0.999);
        assert_eq!(Threshold::parse("rss_per_peer<4KiB").unwrap().bound, 4096.0);
        assert_eq!(Threshold::parse("rss_per_peer<2MB").unwrap().bound, 2e6);
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert!(matches!(
            Threshold::parse("p99=5ms"),
            Err(ThresholdError::NoOperator(_))
        ));
        assert!(matches!(
            Threshold::parse("p98<5ms"),
            Err(ThresholdError::UnknownMetric(_))
        ));
        assert!(matches!(
            Threshold::parse("p99<5"),
            Err(ThresholdError::BadValue(..))
        ));
        assert!(matches!(
            Threshold::parse("p99<fast"),
            Err(ThresholdError::BadValue(..))
        ));
        assert!(matches!(
            Threshold::parse("delivery>1x"),
            Err(ThresholdError::BadValue(..))
        ));
    }

    #[test]
    fn check_reports_one_line_per_miss() {
        let mut f = BTreeMap::new();
        f.insert("p99_us".to_string(), 120.0);
        f.insert("throughput_per_s".to_string(), 1000.0);
        let ts: Vec<_> = ["p99<1us", "p99<1ms", "throughput>2k", "delivery>=100%"]
            .iter()
            .map(|s| Threshold::parse(s).unwrap())
            .collect();
        let missed = check_all(&ts, &f);
        assert_eq!(missed.len(), 3, "{missed:?}");
        assert!(missed[0].contains("p99_us = 120"), "{}", missed[0]);
        assert!(
            missed[2].contains("did not measure delivery"),
            "{}",
            missed[2]
        );
    }
}
