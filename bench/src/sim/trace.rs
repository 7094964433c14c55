//! The simulation trace: a running hash of every delivery and event (always kept, cheap), and
//! optionally the text lines behind it, so a test can show where two runs diverged.

use std::time::Duration;

use super::Host;

/// FNV-1a, 64 bits: stable across builds and platforms, unlike `DefaultHasher`.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub(crate) struct Trace {
    hash: u64,
    lines: Option<Vec<String>>,
}

impl Trace {
    pub(crate) fn new(keep_lines: bool) -> Trace {
        Trace {
            hash: FNV_OFFSET,
            lines: keep_lines.then(Vec::new),
        }
    }

    fn mix(&mut self, x: u64) {
        for b in x.to_le_bytes() {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
    }

    /// Records one thing that happened at `at` to `host`: `tag` and `n` go into the hash, the
    /// `detail` text only into the lines (and is only built when they are kept).
    pub(crate) fn record(
        &mut self,
        at: Duration,
        host: Host,
        tag: &'static str,
        n: u64,
        detail: impl FnOnce() -> String,
    ) {
        self.mix(at.as_nanos() as u64);
        self.mix(match host {
            Host::Registry => u64::MAX,
            Host::Node(id) => id.0 as u64,
        });
        for b in tag.bytes() {
            self.mix(u64::from(b));
        }
        self.mix(n);
        if let Some(lines) = &mut self.lines {
            let who = match host {
                Host::Registry => "registry".to_string(),
                Host::Node(id) => format!("n{}", id.0),
            };
            lines.push(format!(
                "{:>12.6} {who:<9} {tag} {}",
                at.as_secs_f64(),
                detail()
            ));
        }
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    pub(crate) fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or(&[])
    }
}
