//! `p2pchat-bench compare OLD.json NEW.json`: two runs side by side, like critcmp for whole
//! system runs. Reads the `figures` of each `summary.json`, prints old, new and new/old, and
//! marks each figure that moved past the tolerance in its bad direction as a regression.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// Which way is better for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Latencies, CPU, memory, losses.
    Lower,
    /// Throughput, delivery.
    Higher,
    /// Context, not a result (the floor, counts of work asked for).
    Neither,
}

/// The direction of a figure, from its name (the naming rules in docs/performance.md).
pub fn better(name: &str) -> Better {
    // Counts of work asked for or done, and settings: context, not results.
    const NEUTRAL: [&str; 13] = [
        "peers",
        "messages",
        "deliveries",
        "duration_s",
        "samples",
        "connections",
        "vanished",
        "registry_ops",
        "heartbeats",
        "frames_per_message_bound",
        "detection_resolution_ms",
        "datagrams_lost",
        "logins_completed",
    ];
    if name.starts_with("floor")
        || (name.starts_with("requests") && name != "request_errors")
        || NEUTRAL.contains(&name)
    {
        Better::Neither
    } else if name.starts_with("throughput")
        || name.starts_with("delivery")
        || name.ends_with("_per_s")
        || name.starts_with("online")
        || name.starts_with("resumed")
        || name.starts_with("rejoined")
        || name.starts_with("exactly_once")
    {
        Better::Higher
    } else {
        Better::Lower
    }
}

/// Figures judged with no tolerance: any move the bad way is a regression.
pub fn is_correctness(name: &str) -> bool {
    name == "delivery" || name == "exactly_once" || name == "false_expiries" || name == "undetected"
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Figure name.
    pub name: String,
    /// Old value (absent in the old run: `None`).
    pub old: Option<f64>,
    /// New value.
    pub new: Option<f64>,
    /// Moved past the tolerance the bad way.
    pub regressed: bool,
    /// Moved past the tolerance the good way.
    pub improved: bool,
}

/// Parses `10%` or `0.1`.
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    let (num, scale) = match s.trim().strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (s.trim(), 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad tolerance {s:?} (say 10% or 0.1)"))?;
    if !(0.0..100.0).contains(&v) {
        return Err(format!("tolerance {s:?} out of range"));
    }
    Ok(v * scale)
}

fn figures(v: &Value) -> BTreeMap<String, f64> {
    v.get("figures")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Compares the figures of two summaries.
pub fn compare(old: &Value, new: &Value, tolerance: f64) -> Vec<Row> {
    let (a, b) = (figures(old), figures(new));
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let (o, n) = (a.get(name).copied(), b.get(name).copied());
            let (mut regressed, mut improved) = (false, false);
            if let (Some(o), Some(n)) = (o, n) {
                // Correctness figures get no tolerance: losing 1 % of deliveries is a bug.
                let tol = if is_correctness(name) { 0.0 } else { tolerance };
                let up = n > o * (1.0 + tol) || (o == 0.0 && n > 0.0);
                let down = n < o * (1.0 - tol);
                match better(name) {
                    Better::Lower => (regressed, improved) = (up, down),
                    Better::Higher => (regressed, improved) = (down, up),
                    Better::Neither => {}
                }
            }
            Row {
                name: name.clone(),
                old: o,
                new: n,
                regressed,
                improved,
            }
        })
        .collect()
}

/// The side-by-side table.
pub fn render(old: &Value, new: &Value, rows: &[Row], tolerance: f64) -> String {
    let mut o = String::new();
    let id = |v: &Value| {
        format!(
            "{} {} @ {}",
            v["tool"].as_str().unwrap_or("?"),
            v["scenario"].as_str().unwrap_or("?"),
            v["git_commit"]
                .as_str()
                .unwrap_or("?")
                .chars()
                .take(10)
                .collect::<String>()
        )
    };
    let _ = writeln!(o, "old: {}\nnew: {}", id(old), id(new));
    let _ = writeln!(o, "tolerance {:.1}%", tolerance * 100.0);
    let _ = writeln!(
        o,
        "{:<36} {:>14} {:>14} {:>9}",
        "figure", "old", "new", "new/old"
    );
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    for r in rows {
        let ratio = match (r.old, r.new) {
            (Some(a), Some(b)) if a != 0.0 => format!("{:.3}", b / a),
            (Some(a), Some(b)) if a == b => "1.000".into(),
            _ => "-".into(),
        };
        let mark = if r.regressed {
            "  REGRESSION"
        } else if r.improved {
            "  improved"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "{:<36} {:>14} {:>14} {:>9}{mark}",
            r.name,
            num(r.old),
            num(r.new),
            ratio
        );
    }
    let n = rows.iter().filter(|r| r.regressed).count();
    let _ = writeln!(o, "{n} regression(s) past {:.1}%", tolerance * 100.0);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn marks_regressions_by_direction() {
        let old = json!({"figures": {"p99_us": 100.0, "throughput_per_s": 1000.0, "delivery": 1.0,
                                      "floor_us": 50.0, "false_expiries": 0.0, "rss": 10.0}});
        let new = json!({"figures": {"p99_us": 120.0, "throughput_per_s": 1200.0, "delivery": 0.95,
                                      "floor_us": 90.0, "false_expiries": 1.0, "rss": 10.5}});
        let rows = compare(&old, &new, 0.10);
        let get = |n: &str| rows.iter().find(|r| r.name == n).unwrap().clone();
        assert!(get("p99_us").regressed);
        assert!(get("throughput_per_s").improved && !get("throughput_per_s").regressed);
        assert!(get("delivery").regressed);
        assert!(
            !get("floor_us").regressed,
            "the floor is context, not a result"
        );
        assert!(get("false_expiries").regressed, "0 -> 1 is a regression");
        assert!(
            !get("rss").regressed && !get("rss").improved,
            "5% is within 10%"
        );
        let text = render(&old, &new, &rows, 0.10);
        assert!(text.contains("3 regression(s)"), "{text}");
    }

    #[test]
    fn directions_follow_the_naming_rules() {
        assert_eq!(better("p99_us"), Better::Lower);
        assert_eq!(better("requests_answered"), Better::Neither);
        assert_eq!(better("request_errors"), Better::Lower);
        assert_eq!(better("rejoined"), Better::Higher);
        assert_eq!(better("heartbeats_per_s"), Better::Higher);
        assert_eq!(better("deliveries"), Better::Neither);
    }

    #[test]
    fn tolerance_accepts_percent_or_fraction() {
        assert_eq!(parse_tolerance("10%").unwrap(), 0.1);
        assert_eq!(parse_tolerance("0.25").unwrap(), 0.25);
        assert!(parse_tolerance("ten").is_err());
        assert!(parse_tolerance("-1%").is_err());
    }

    #[test]
    fn a_figure_missing_on_one_side_is_shown_not_judged() {
        let rows = compare(
            &json!({"figures": {"a_us": 1.0}}),
            &json!({"figures": {}}),
            0.1,
        );
        assert_eq!(rows.len(), 1);
        assert!(!rows[0].regressed && rows[0].new.is_none());
    }
}
