//! Reports: what every `p2pchat-bench` command produces.
//!
//! A [`Report`] holds latency series (HdrHistograms in nanoseconds), flat named figures, the
//! machine floor measured in the same run, a timeline of samples, and plots. It renders as a
//! wrk2-style text summary ([`Report::text`]), as `summary.json` ([`Report::to_json`], field
//! names documented in docs/performance.md and pinned by a test), and with `--out DIR` as one
//! `.hgrm` file per series ([`hgrm`]) plus SVG plots ([`plot`]). [`threshold`] gates a run on a
//! figure, [`compare`] sets two `summary.json` files side by side.

pub mod compare;
pub mod hgrm;
pub mod plot;
pub mod threshold;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// The `schema` field of every `summary.json`; bumped when a field changes meaning.
pub const SCHEMA: &str = "p2pchat-bench/summary/1";

/// Percentiles reported for every series: (figure suffix, quantile, label).
pub const PERCENTILES: [(&str, f64, &str); 4] = [
    ("p50", 0.5, "50.000%"),
    ("p90", 0.9, "90.000%"),
    ("p99", 0.99, "99.000%"),
    ("p999", 0.999, "99.900%"),
];

/// A latency histogram in nanoseconds, from 1 ns to one hour, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    // NOTE(unwrap): constant, valid bounds (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// One named latency series.
#[derive(Debug, Clone)]
pub struct Series {
    /// File-name-safe name (`search`, `delivery`, `login`).
    pub name: String,
    /// What is measured, for the summary.
    pub what: String,
    /// Latencies in ns.
    pub hist: Histogram<u64>,
    /// Also plot its CDF (room-flood delivery).
    pub cdf: bool,
}

impl Series {
    /// An empty series.
    pub fn new(name: &str, what: &str) -> Series {
        Series {
            name: name.into(),
            what: what.into(),
            hist: new_hist(),
            cdf: false,
        }
    }

    fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    fn to_json(&self, floor_us: Option<f64>) -> Value {
        let mut m = Map::new();
        m.insert("what".into(), json!(self.what));
        m.insert("count".into(), json!(self.hist.len()));
        m.insert("mean_us".into(), json!(self.hist.mean() / 1000.0));
        for (k, q, _) in PERCENTILES {
            m.insert(format!("{k}_us"), json!(self.us(q)));
        }
        m.insert("max_us".into(), json!(self.hist.max() as f64 / 1000.0));
        if let Some(f) = floor_us.filter(|f| *f > 0.0) {
            for (k, q, _) in PERCENTILES {
                m.insert(format!("{k}_to_floor"), json!(self.us(q) / f));
            }
        }
        Value::Object(m)
    }
}

/// The machine's floor, measured in the same run as the figures it scales.
#[derive(Debug, Clone, Default)]
pub struct Floor {
    /// Round trip of a minimal frame echoed over the engine on loopback (ns).
    pub engine_echo: Option<Histogram<u64>>,
    /// Round trip of a PING to the registry under test, before the load (ns).
    pub registry_ping: Option<Histogram<u64>>,
}

impl Floor {
    /// The reference latency ratios are computed against: the registry PING p50, else the
    /// engine echo p50 (us).
    pub fn reference_us(&self) -> Option<f64> {
        self.registry_ping
            .as_ref()
            .or(self.engine_echo.as_ref())
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.5) as f64 / 1000.0)
    }

    fn to_json(&self) -> Value {
        let one = |h: &Option<Histogram<u64>>| match h {
            Some(h) if !h.is_empty() => json!({
                "count": h.len(),
                "p50_us": h.value_at_quantile(0.5) as f64 / 1000.0,
                "p99_us": h.value_at_quantile(0.99) as f64 / 1000.0,
            }),
            _ => Value::Null,
        };
        json!({
            "engine_echo": one(&self.engine_echo),
            "registry_ping": one(&self.registry_ping),
            "reference_us": self.reference_us(),
        })
    }
}

/// One point of the run's timeline.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the measured phase started.
    pub t_s: f64,
    /// Operations completed so far in the measured phase.
    pub ops: u64,
    /// Registry resident set (bytes), when its process is known.
    pub registry_rss_bytes: Option<u64>,
    /// Registry CPU seconds (user + system) so far, when its process is known.
    pub registry_cpu_s: Option<f64>,
    /// This generator's CPU seconds so far.
    pub generator_cpu_s: f64,
}

/// A line chart: one or more named lines over a shared x axis.
#[derive(Debug, Clone)]
pub struct LinePlot {
    /// File name (`throughput.svg`).
    pub file: String,
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// (name, points).
    pub lines: Vec<(String, Vec<(f64, f64)>)>,
}

/// A bar chart.
#[derive(Debug, Clone)]
pub struct BarPlot {
    /// File name.
    pub file: String,
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// (bar label, value).
    pub bars: Vec<(String, f64)>,
}

/// Everything one run reports.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `load`, `sim-flood`, `sim-presence`.
    pub tool: String,
    /// Scenario name (`steady`); for sims the tool name again.
    pub scenario: String,
    /// One-line description for the summary header.
    pub headline: String,
    /// The scenario's parameters as run.
    pub params: Map<String, Value>,
    /// The floor.
    pub floor: Floor,
    /// Latency series; the first is the primary one thresholds read.
    pub series: Vec<Series>,
    /// Flat named figures (counts, rates, ratios). `compare` and thresholds read these.
    pub figures: BTreeMap<String, f64>,
    /// Samples over time.
    pub timeline: Vec<Sample>,
    /// The registry process's side, free-form (pid, fds, drops...).
    pub registry: Map<String, Value>,
    /// The generator's side, free-form.
    pub generator: Map<String, Value>,
    /// Problems seen (false expiries, lost messages...), one line each.
    pub problems: Vec<String>,
    /// Extra tables (for example per room size), free-form.
    pub tables: Map<String, Value>,
    /// Extra line charts.
    pub lines: Vec<LinePlot>,
    /// Bar charts.
    pub bars: Vec<BarPlot>,
}

impl Report {
    /// A report for `tool`/`scenario`.
    pub fn new(tool: &str, scenario: &str) -> Report {
        Report {
            tool: tool.into(),
            scenario: scenario.into(),
            ..Report::default()
        }
    }

    /// Sets a figure.
    pub fn figure(&mut self, name: &str, v: f64) {
        self.figures.insert(name.into(), v);
    }

    /// Copies the primary series' percentiles and the floor ratios into the figures.
    pub fn finish(&mut self) {
        let floor = self.floor.reference_us();
        if let Some(f) = floor {
            self.figure("floor_us", f);
        }
        if let Some(h) = self.floor.engine_echo.as_ref().filter(|h| !h.is_empty()) {
            self.figure(
                "floor_engine_echo_us",
                h.value_at_quantile(0.5) as f64 / 1000.0,
            );
        }
        let Some(s) = self.series.first().filter(|s| !s.hist.is_empty()) else {
            return;
        };
        let mut add = Vec::new();
        for (k, q, _) in PERCENTILES {
            add.push((format!("{k}_us"), s.us(q)));
        }
        add.push(("max_us".into(), s.hist.max() as f64 / 1000.0));
        add.push(("mean_us".into(), s.hist.mean() / 1000.0));
        if let Some(f) = floor.filter(|f| *f > 0.0) {
            for (k, q, _) in PERCENTILES {
                add.push((format!("{k}_to_floor"), s.us(q) / f));
            }
        }
        for (k, v) in add {
            self.figures.insert(k, v);
        }
    }

    /// `summary.json`.
    pub fn to_json(&self) -> Value {
        let floor = self.floor.reference_us();
        let series: Map<String, Value> = self
            .series
            .iter()
            .map(|s| (s.name.clone(), s.to_json(floor)))
            .collect();
        let timeline: Vec<Value> = self
            .timeline
            .iter()
            .map(|s| {
                json!({
                    "t_s": s.t_s, "ops": s.ops,
                    "registry_rss_bytes": s.registry_rss_bytes,
                    "registry_cpu_s": s.registry_cpu_s,
                    "generator_cpu_s": s.generator_cpu_s,
                })
            })
            .collect();
        json!({
            "schema": SCHEMA,
            "tool": self.tool,
            "scenario": self.scenario,
            "command_line": std::env::args().collect::<Vec<_>>(),
            "git_commit": git_commit(),
            "started_unix_ms": unix_ms(),
            "machine": machine(),
            "params": self.params,
            "floor": self.floor.to_json(),
            "primary_series": self.series.first().map(|s| s.name.clone()),
            "series": series,
            "figures": self.figures,
            "registry": self.registry,
            "generator": self.generator,
            "timeline": timeline,
            "tables": self.tables,
            "problems": self.problems,
        })
    }

    /// The wrk2-style text summary.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "{}", self.headline);
        let floor = self.floor.reference_us();
        if let Some(h) = &self.floor.engine_echo {
            let _ = writeln!(
                o,
                "  Floor: engine echo p50 {}",
                fmt_us(h.value_at_quantile(0.5) as f64 / 1000.0)
            );
        }
        if let Some(h) = &self.floor.registry_ping {
            let _ = writeln!(
                o,
                "  Floor: registry ping p50 {} (ratios below are to this)",
                fmt_us(h.value_at_quantile(0.5) as f64 / 1000.0)
            );
        }
        for s in &self.series {
            if s.hist.is_empty() {
                let _ = writeln!(o, "  {} ({}): no samples", s.name, s.what);
                continue;
            }
            let _ = writeln!(o, "  Latency distribution: {} ({})", s.name, s.what);
            for (_, q, label) in PERCENTILES {
                let v = s.us(q);
                let ratio = floor.map_or(String::new(), |f| format!("  ({:.1}x floor)", v / f));
                let _ = writeln!(o, "   {label:>8} {:>12}{ratio}", fmt_us(v));
            }
            let _ = writeln!(
                o,
                "   {:>8} {:>12}\n   {} samples, mean {}",
                "100.000%",
                fmt_us(s.hist.max() as f64 / 1000.0),
                s.hist.len(),
                fmt_us(s.hist.mean() / 1000.0)
            );
        }
        let _ = writeln!(o, "  Figures:");
        for (k, v) in &self.figures {
            let _ = writeln!(o, "   {k:<36} {}", fmt_figure(*v));
        }
        for p in &self.problems {
            let _ = writeln!(o, "  PROBLEM: {p}");
        }
        o
    }

    /// Writes `summary.json`, one `.hgrm` per series and the SVG plots into `dir`.
    pub fn write_out(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files = Vec::new();
        let mut write = |name: &str, text: &str| -> anyhow::Result<()> {
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
            files.push(name.to_string());
            Ok(())
        };
        for s in &self.series {
            write(&format!("{}.hgrm", s.name), &hgrm::render(&s.hist))?;
        }
        let json = serde_json::to_string_pretty(&self.to_json())?;
        write("summary.json", &(json + "\n"))?;
        let with_samples: Vec<&Series> =
            self.series.iter().filter(|s| !s.hist.is_empty()).collect();
        if !with_samples.is_empty() {
            let p = dir.join("latency.svg");
            plot::latency_by_percentile(&p, &self.headline, &with_samples)?;
            files.push("latency.svg".into());
        }
        for s in with_samples.iter().filter(|s| s.cdf) {
            let name = format!("{}-cdf.svg", s.name);
            plot::cdf(&dir.join(&name), &format!("{}: CDF", s.what), &s.hist)?;
            files.push(name);
        }
        for l in self.timeline_plots().iter().chain(&self.lines) {
            plot::lines(&dir.join(&l.file), l)?;
            files.push(l.file.clone());
        }
        for b in &self.bars {
            plot::bars(&dir.join(&b.file), b)?;
            files.push(b.file.clone());
        }
        Ok(files)
    }

    fn timeline_plots(&self) -> Vec<LinePlot> {
        if self.timeline.len() < 2 {
            return Vec::new();
        }
        let mut tput = Vec::new();
        for w in self.timeline.windows(2) {
            let dt = w[1].t_s - w[0].t_s;
            if dt > 0.0 {
                tput.push((w[1].t_s, (w[1].ops - w[0].ops.min(w[1].ops)) as f64 / dt));
            }
        }
        let mut out = vec![LinePlot {
            file: "throughput.svg".into(),
            title: "Throughput over time".into(),
            x_label: "time (s)".into(),
            y_label: "operations/s".into(),
            lines: vec![("completed".into(), tput)],
        }];
        let rss: Vec<(f64, f64)> = self
            .timeline
            .iter()
            .filter_map(|s| Some((s.t_s, s.registry_rss_bytes? as f64 / (1024.0 * 1024.0))))
            .collect();
        if !rss.is_empty() {
            out.push(LinePlot {
                file: "rss.svg".into(),
                title: "Registry RSS over time".into(),
                x_label: "time (s)".into(),
                y_label: "RSS (MiB)".into(),
                lines: vec![("registry".into(), rss)],
            });
        }
        out
    }
}

/// `12.3us`, `4.56ms`, `1.23s`.
pub fn fmt_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1000.0 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.1}us")
    }
}

fn fmt_figure(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn unix_ms() -> u64 {
    // A report's timestamp: wall clock by design.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The commit of the source tree: `git rev-parse HEAD` in the working directory, else in the
/// tree this binary was built from; `unknown` without git.
pub fn git_commit() -> String {
    let try_in = |dir: &Path| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "HEAD"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    std::env::current_dir()
        .ok()
        .and_then(|d| try_in(&d))
        .or_else(|| try_in(Path::new(env!("CARGO_MANIFEST_DIR"))))
        .unwrap_or_else(|| "unknown".into())
}

/// The machine: CPUs, model, memory, kernel, load average at the start.
pub fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string());
    let mem_kib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    json!({
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu_model": model,
        "mem_total_bytes": mem_kib.map(|k| k * 1024),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "loadavg": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_report() -> Report {
        let mut r = Report::new("load", "steady");
        r.headline = "test".into();
        let mut s = Series::new("search", "search round trip");
        for v in [1000, 2000, 3000, 50_000] {
            s.hist.record(v).unwrap();
        }
        r.series.push(s);
        let mut ping = new_hist();
        ping.record(500).unwrap();
        r.floor.registry_ping = Some(ping);
        r.figure("throughput_per_s", 100.0);
        r.timeline = vec![
            Sample {
                t_s: 0.0,
                ops: 0,
                ..Sample::default()
            },
            Sample {
                t_s: 1.0,
                ops: 100,
                registry_rss_bytes: Some(1 << 20),
                ..Sample::default()
            },
        ];
        r.finish();
        r
    }

    /// The documented field names of summary.json (docs/performance.md). Changing one is a
    /// schema change: bump SCHEMA and the docs with it.
    #[test]
    fn summary_json_has_the_documented_fields() {
        let v = sample_report().to_json();
        let top: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = vec![
            "schema",
            "tool",
            "scenario",
            "command_line",
            "git_commit",
            "started_unix_ms",
            "machine",
            "params",
            "floor",
            "primary_series",
            "series",
            "figures",
            "registry",
            "generator",
            "timeline",
            "tables",
            "problems",
        ];
        want.sort();
        let mut got = top.clone();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(v["schema"], SCHEMA);
        for k in ["cpus", "cpu_model", "mem_total_bytes", "kernel", "loadavg"] {
            assert!(v["machine"].get(k).is_some(), "machine.{k}");
        }
        for k in ["engine_echo", "registry_ping", "reference_us"] {
            assert!(v["floor"].get(k).is_some(), "floor.{k}");
        }
        let s = &v["series"]["search"];
        for k in [
            "what",
            "count",
            "mean_us",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
            "p50_to_floor",
            "p90_to_floor",
            "p99_to_floor",
            "p999_to_floor",
        ] {
            assert!(s.get(k).is_some(), "series.search.{k}");
        }
        let f = &v["figures"];
        for k in [
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
            "mean_us",
            "p99_to_floor",
            "floor_us",
            "throughput_per_s",
        ] {
            assert!(f.get(k).is_some(), "figures.{k}");
        }
        for k in [
            "t_s",
            "ops",
            "registry_rss_bytes",
            "registry_cpu_s",
            "generator_cpu_s",
        ] {
            assert!(v["timeline"][0].get(k).is_some(), "timeline.{k}");
        }
        assert_eq!(v["primary_series"], "search");
        // p99 of 1,2,3,50 us is 50 us, 100x the 0.5 us floor.
        assert!((f["p99_to_floor"].as_f64().unwrap() - 100.0).abs() < 1.0);
    }

    #[test]
    fn write_out_writes_hgrm_json_and_svg() {
        let dir = tempfile::TempDir::new().unwrap();
        let files = sample_report().write_out(dir.path()).unwrap();
        for f in [
            "search.hgrm",
            "summary.json",
            "latency.svg",
            "throughput.svg",
            "rss.svg",
        ] {
            assert!(files.iter().any(|x| x == f), "{f} in {files:?}");
            let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(!text.is_empty());
        }
        let svg = std::fs::read_to_string(dir.path().join("latency.svg")).unwrap();
        assert!(svg.contains("<svg"));
        let back: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(back["scenario"], "steady");
    }
}
