//! The registry under test: started by the tool (temp database, cheap PBKDF2, no auth rate
//! limit) or one already running (`--registry ADDR [--registry-pid PID]`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// How to start the registry.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// The binary.
    pub bin: PathBuf,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `--max-clients`.
    pub max_clients: usize,
    /// `--heartbeat-timeout`.
    pub heartbeat_timeout: Duration,
}

/// A registry process, started or attached.
pub struct RegistryProc {
    child: Option<Child>,
    spawn: Option<Spawn>,
    /// TCP address.
    pub tcp: SocketAddr,
    /// UDP (heartbeat) address, when known.
    pub udp: Option<SocketAddr>,
    /// Process id, when known (for /proc figures).
    pub pid: Option<u32>,
    dir: Option<tempfile::TempDir>,
}

/// The registry binary next to this executable (`target/release/p2pchat-registry`).
pub fn default_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no directory for this executable")?;
    // Test binaries live one level down, in target/*/deps.
    for d in [dir, dir.parent().unwrap_or(dir)] {
        let p = d.join("p2pchat-registry");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "p2pchat-registry not found next to {} (build it: cargo build --release, or pass --registry-bin)",
        exe.display()
    )
}

impl RegistryProc {
    /// Starts a registry on 127.0.0.1 with ephemeral ports and a temp database.
    pub fn start(spawn: Spawn) -> anyhow::Result<RegistryProc> {
        let dir = tempfile::TempDir::new()?;
        let (child, tcp, udp) = launch(&spawn, &dir.path().join("bench.db"), None)?;
        Ok(RegistryProc {
            pid: Some(child.id()),
            child: Some(child),
            spawn: Some(spawn),
            tcp,
            udp: Some(udp),
            dir: Some(dir),
        })
    }

    /// A registry someone else runs.
    pub fn attach(tcp: SocketAddr, pid: Option<u32>) -> RegistryProc {
        RegistryProc {
            child: None,
            spawn: None,
            tcp,
            udp: None,
            pid,
            dir: None,
        }
    }

    /// Whether this tool started (and may restart) the registry.
    pub fn is_owned(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the registry (SIGKILL: a crash, no goodbye to clients).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let child = self
            .child
            .as_mut()
            .context("cannot kill a registry this tool did not start")?;
        child.kill()?;
        child.wait()?;
        self.child = None;
        Ok(())
    }

    /// Starts it again on the same ports and database.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let (spawn, dir) = match (&self.spawn, &self.dir) {
            (Some(s), Some(d)) => (s.clone(), d.path().join("bench.db")),
            _ => bail!("cannot restart a registry this tool did not start"),
        };
        let (child, tcp, udp) = launch(&spawn, &dir, Some((self.tcp, self.udp)))?;
        self.pid = Some(child.id());
        self.child = Some(child);
        self.tcp = tcp;
        self.udp = Some(udp);
        Ok(())
    }
}

impl Drop for RegistryProc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn launch(
    s: &Spawn,
    db: &Path,
    at: Option<(SocketAddr, Option<SocketAddr>)>,
) -> anyhow::Result<(Child, SocketAddr, SocketAddr)> {
    let tcp = at.map_or("127.0.0.1:0".to_string(), |a| a.0.to_string());
    let udp = at
        .and_then(|a| a.1)
        .map_or("127.0.0.1:0".to_string(), |a| a.to_string());
    let mut child = Command::new(&s.bin)
        .args(["--tcp", &tcp, "--udp", &udp, "--auth-rate", "1000000"])
        .args(["--resume-rate", "1000000"])
        .arg("--pbkdf2-iterations")
        .arg(s.iterations.to_string())
        .arg("--max-clients")
        .arg(s.max_clients.to_string())
        // Every synthetic peer comes from 127.0.0.1, and a storm has thousands of connections
        // between hello and login at once: the per-source and pre-login caps, meant for
        // strangers on a LAN, are lifted to the table size.
        .arg("--max-per-source")
        .arg(s.max_clients.to_string())
        .arg("--max-unauthenticated")
        .arg(s.max_clients.to_string())
        .arg("--heartbeat-timeout")
        .arg(format!("{}ms", s.heartbeat_timeout.as_millis()))
        .arg("--db")
        .arg(db)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", s.bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let field = |key: &str| -> anyhow::Result<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .with_context(|| {
                format!("registry printed {line:?}, expected `listening tcp=.. udp=..`")
            })?
            .parse()
            .context("bad address from the registry")
    };
    let (tcp, udp) = (field("tcp=")?, field("udp=")?);
    Ok((child, tcp, udp))
}
