//! End to end: the real `p2pchat-registry` binary and real `p2pchat` processes in line mode,
//! over 127.0.0.1 with ephemeral ports and a temporary database.
//!
//! Every wait is on an event (a line on a child's stdout, a socket closing) with a timeout;
//! there are no fixed sleeps. Children are killed when their handle drops.

// These tests run real processes against the real clock: timeouts need `Instant::now`.
#![allow(clippy::disallowed_methods)]

/// Rooms: overlays, flooding, membership and roles, persistence.
#[path = "e2e/rooms.rs"]
mod rooms;

/// The terminal client: interactive mode on a pseudo-terminal, cleaning, focus, aliases.
#[path = "e2e/client.rs"]
mod client;

/// Secure links as a user meets them: the registry's key pinned, a changed key refused.
#[path = "e2e/secure.rs"]
mod secure;

/// Signed room messages: a relaying member cannot forge or alter another's message.
#[path = "e2e/signed_rooms.rs"]
mod signed_rooms;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "password1";

#[path = "../../registry/tests/support/registry_binary.rs"]
mod registry_binary;
use registry_binary::registry_binary;

/// A child process whose stdout lines arrive on a channel.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        Proc {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Types a line.
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}")
            .unwrap_or_else(|e| panic!("{}: writing {line:?}: {e}", self.name));
        stdin.flush().unwrap();
    }

    /// Waits for a line matching `pred`, skipping others; panics with the history on timeout.
    fn expect_with(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: no line {what} within {timeout:?}\nstdout so far: {:#?}\nstderr: {:#?}",
                        self.name,
                        self.seen,
                        self.stderr.0.lock().unwrap()
                    );
                }
            }
        }
    }

    /// Waits for exactly this line.
    fn expect(&mut self, line: &str) -> String {
        self.expect_with(&format!("{line:?}"), WAIT, |l| l == line)
    }

    /// Waits for a line starting with `prefix`.
    fn expect_prefix(&mut self, prefix: &str) -> String {
        self.expect_with(&format!("starting {prefix:?}"), WAIT, |l| {
            l.starts_with(prefix)
        })
    }

    /// Asserts that no line matching `pred` is already waiting (without blocking).
    fn assert_no_line(&mut self, pred: impl Fn(&str) -> bool) {
        while let Ok(line) = self.lines.try_recv() {
            assert!(!pred(&line), "{}: unexpected line {line:?}", self.name);
            self.seen.push(line);
        }
    }

    /// The lines of its stderr that contain `needle`, once there are at least `count` of them:
    /// a line the process wrote before an event the test saw may still be on its way through
    /// the reader thread. Fails after `timeout`.
    fn wait_stderr_lines(&self, needle: &str, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let (lines, arrived) = &*self.stderr;
        let mut err = lines.lock().unwrap();
        loop {
            let found: Vec<String> = err.iter().filter(|l| l.contains(needle)).cloned().collect();
            if found.len() >= count {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: {count} stderr line(s) with {needle:?} not seen within {timeout:?}; stderr: {:#?}",
                self.name,
                *err
            );
            err = arrived.wait_timeout(err, left).unwrap().0;
        }
    }

    /// Waits for the process to exit.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: did not exit in {timeout:?}",
                self.name
            );
            // Polling the exit status: a wait with a timeout, not a sleep standing in for an
            // event.
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running registry and its temp database.
struct Registry {
    proc: Proc,
    tcp: SocketAddr,
    udp: SocketAddr,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let (proc, tcp, udp) = Registry::spawn(&dir, "127.0.0.1:0", "127.0.0.1:0");
        Registry {
            proc,
            tcp,
            udp,
            dir,
        }
    }

    /// A registry started with these extra flags.
    fn start_with(extra: &[&str]) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let (proc, tcp, udp) = Registry::spawn_with(&dir, "127.0.0.1:0", "127.0.0.1:0", extra);
        Registry {
            proc,
            tcp,
            udp,
            dir,
        }
    }

    fn spawn(dir: &tempfile::TempDir, tcp: &str, udp: &str) -> (Proc, SocketAddr, SocketAddr) {
        Registry::spawn_with(dir, tcp, udp, &[])
    }

    fn spawn_with(
        dir: &tempfile::TempDir,
        tcp: &str,
        udp: &str,
        extra: &[&str],
    ) -> (Proc, SocketAddr, SocketAddr) {
        let db = dir.path().join("db");
        let mut proc = Proc::spawn(
            "registry",
            Command::new(registry_binary())
                .args(["--tcp", tcp, "--udp", udp, "--pbkdf2-iterations", "1000"])
                .args(extra)
                .arg("--db")
                .arg(&db),
        );
        let line = proc.expect_prefix("listening ");
        let field = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("bad listening line {line:?}"))
        };
        (proc, field("tcp="), field("udp="))
    }

    /// kill -9, then start again on the same ports with the same database.
    fn kill9(&mut self) {
        self.proc.kill9();
    }

    fn restart(&mut self) {
        let (proc, tcp, udp) =
            Registry::spawn(&self.dir, &self.tcp.to_string(), &self.udp.to_string());
        assert_eq!((tcp, udp), (self.tcp, self.udp));
        self.proc = proc;
    }

    fn peer(&self, name: &str, extra: &[&str]) -> Proc {
        self.peer_logging(name, extra, None)
    }

    /// A peer with `RUST_LOG` set to `log` (none when `None`); its stderr is kept in the
    /// [`Proc`] for failure reports.
    fn peer_logging(&self, name: &str, extra: &[&str], log: Option<&str>) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2pchat"));
        cmd.args([
            "--registry",
            &self.tcp.to_string(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        // Registry keys are pinned per fixture, never in the user's own config.
        .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
        .env_remove("NO_COLOR");
        match log {
            Some(filter) => cmd.env("RUST_LOG", filter),
            None => cmd.env_remove("RUST_LOG"),
        };
        let mut p = Proc::spawn(name, &mut cmd);
        p.expect_with("connected to the registry", WAIT, |l| {
            l.contains("Connected to registry at ")
        });
        p
    }

    /// A peer registered and logged in as `name`.
    fn user(&self, name: &str, extra: &[&str]) -> Proc {
        self.user_logging(name, extra, None)
    }

    /// [`Registry::user`] with `RUST_LOG` set as in [`Registry::peer_logging`].
    fn user_logging(&self, name: &str, extra: &[&str], log: Option<&str>) -> Proc {
        let mut p = self.peer_logging(name, extra, log);
        p.send(&format!("/register {name} {PASSWORD}"));
        p.expect(&format!("Registered {name}"));
        p.send(&format!("/login {name} {PASSWORD}"));
        p.expect(&format!("Logged in as {name}"));
        p
    }
}

/// `a` asks `b` for a chat and `b` accepts.
fn start_chat(a: &mut Proc, b: &mut Proc) {
    let (an, bn) = (a.name.clone(), b.name.clone());
    a.send(&format!("/chat {bn}"));
    b.expect(&format!("Chat request from {an}"));
    b.send(&format!("/accept {an}"));
    b.expect(&format!("Chat with {an} started"));
    a.expect(&format!("Chat with {bn} started"));
}

/// Where `searcher` sees `name` online.
fn address_of(searcher: &mut Proc, name: &str) -> SocketAddr {
    searcher.send(&format!("/search {name}"));
    let prefix = format!("{name} is online at ");
    let line = searcher.expect_prefix(&prefix);
    line[prefix.len()..].parse().unwrap()
}

#[test]
fn register_login_search_and_users() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);

    let addr = address_of(&mut alice, "bob");
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_ne!(addr.port(), 0);
    alice.send("/search nobody");
    alice.expect("nobody not found");
    alice.send("/users");
    alice.expect("Online: alice bob");

    bob.send("/logout");
    bob.expect("Logged out");
    alice.send("/search bob");
    alice.expect("bob is offline");

    // Wrong password and a taken name show the registry's message.
    bob.send("/login bob wrongpassword");
    bob.expect_prefix("error: ");
    bob.send(&format!("/register alice {PASSWORD}"));
    bob.expect_prefix("error: ");
    bob.send(&format!("/login bob {PASSWORD}"));
    bob.expect("Logged in as bob");
}

#[test]
fn chat_accepted_messages_both_ways_and_end() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    start_chat(&mut alice, &mut bob);

    alice.send("hello bob");
    bob.expect("Message from alice: hello bob");
    bob.send("/msg alice hi *alice*, see https://example.org");
    alice.expect("Message from bob: hi *alice*, see https://example.org");
    bob.send("plain line to the focused chat");
    alice.expect("Message from bob: plain line to the focused chat");

    alice.send("/end bob");
    alice.expect("Chat with bob ended");
    bob.expect("Chat with alice ended");
    bob.send("anyone?");
    bob.expect_prefix("error: no current chat");
}

#[test]
fn reject_and_busy() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    let mut carol = reg.user("carol", &["--max-chats", "1"]);

    start_chat(&mut alice, &mut carol);
    bob.send("/chat carol");
    bob.expect("carol is busy");
    carol.assert_no_line(|l| l.contains("bob"));

    alice.send("/end carol");
    carol.expect("Chat with alice ended");
    bob.send("/chat carol");
    carol.expect("Chat request from bob");
    carol.send("/reject bob");
    bob.expect("carol rejected the chat request");
}

#[test]
fn killed_peer_is_reported_lost() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    start_chat(&mut alice, &mut bob);
    bob.kill9();
    alice.expect("Chat with bob lost");
    alice.send("still there?");
    alice.expect_prefix("error: no current chat");
}

#[test]
fn registry_restart_while_chatting() {
    let mut reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    start_chat(&mut alice, &mut bob);

    reg.kill9();
    alice.expect("Disconnected from registry");
    bob.expect("Disconnected from registry");
    // The chat does not need the registry.
    alice.send("during the outage");
    bob.expect("Message from alice: during the outage");
    bob.send("/msg alice still here");
    alice.expect("Message from bob: still here");

    reg.restart();
    let reconnect = Duration::from_secs(20);
    alice.expect_with("Reconnected to registry", reconnect, |l| {
        l == "Reconnected to registry"
    });
    bob.expect_with("Reconnected to registry", reconnect, |l| {
        l == "Reconnected to registry"
    });
    address_of(&mut alice, "bob");
    address_of(&mut bob, "alice");
    alice.send("after the restart");
    bob.expect("Message from alice: after the restart");
}

#[test]
fn strangers_are_closed_while_a_chat_continues() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    start_chat(&mut alice, &mut bob);
    let addr = address_of(&mut bob, "alice");

    let mut garbage = TcpStream::connect(addr).unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_closed(&mut garbage, Duration::from_secs(5));

    bob.send("between strangers");
    alice.expect("Message from bob: between strangers");

    // The silent one is closed at the handshake deadline (10 s).
    assert_closed(&mut silent, Duration::from_secs(15));
    alice.send("after strangers");
    bob.expect("Message from alice: after strangers");
}

/// Waits until the other end closes `s` (end of stream or reset).
fn assert_closed(s: &mut TcpStream, within: Duration) {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    let started = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // an error frame before the close is fine
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("not closed within {within:?} ({:?})", started.elapsed())
            }
            Err(_) => return, // reset
        }
    }
}

#[test]
fn invalid_commands_print_one_error_and_keep_running() {
    let reg = Registry::start();
    let mut alice = reg.peer("alice", &[]);
    let cases = [
        ("/foo", "error: unknown command /foo (try /help)"),
        ("/msg bob", "error: usage: /msg NAME TEXT"),
        ("/chat", "error: usage: /chat NAME"),
        ("/login", "error: usage: /login NAME PASSWORD"),
        ("/login alice", "error: usage: /login NAME PASSWORD"),
        ("/search", "error: usage: /search NAME"),
        ("/search bob", "error: not logged in"),
        (
            "/chat b@d",
            "error: invalid username b@d: use 1-32 characters of A-Z a-z 0-9 _ . -",
        ),
        (
            "hello?",
            "error: no current chat or room: use /chat NAME, /join ROOM or /focus",
        ),
        ("/join lobby", "error: not logged in"),
        ("/say lobby hi", "error: not logged in"),
        ("/kick lobby", "error: usage: /kick ROOM NAME"),
        (
            "/create r#1",
            "error: invalid room name r#1: use 1-32 characters of A-Z a-z 0-9 _ . -",
        ),
    ];
    for (line, want) in cases {
        alice.send(line);
        let got = alice.expect_prefix("error: ");
        assert_eq!(got, want, "for {line:?}");
    }
    alice.send("/help");
    alice.expect("Commands:");
    alice.expect_prefix("  /register NAME PASSWORD");
    alice.send(&format!("/register alice {PASSWORD}"));
    alice.expect("Registered alice");
}

#[test]
fn eof_logs_out_and_exits_zero() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    start_chat(&mut alice, &mut bob);
    drop(alice.stdin.take());
    alice.expect("Chat with bob ended");
    alice.expect("Logged out");
    assert!(alice.wait_exit(WAIT).success());
    bob.expect("Chat with alice ended");
    bob.send("/search alice");
    bob.expect("alice is offline");

    bob.send("/quit");
    bob.expect("Logged out");
    assert!(bob.wait_exit(WAIT).success());
}

#[test]
fn json_events() {
    let reg = Registry::start();
    let mut p = reg.peer("json", &["--json"]);
    p.send(&format!("/register jo {PASSWORD}"));
    let line = p.expect_prefix("{\"type\":\"registered\"");
    assert!(line.contains("\"text\":\"Registered jo\""), "{line}");
    p.send("/nope");
    let line = p.expect_prefix("{\"type\":\"error\"");
    assert!(line.contains("unknown command /nope"), "{line}");
}

#[test]
fn flags_help_version_and_usage_errors() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_p2pchat"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--registry ",
        "--registry-udp",
        "--listen",
        "--degree",
        "--json",
        "--color",
        "--max-chats",
        "--chat-timeout",
        "--registry-timeout",
        "--no-timestamps",
        "--version",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    assert!(
        text.starts_with("p2pchat: chat in the terminal"),
        "--help says what the program is for a user:\n{text}"
    );
    let version = run(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("p2pchat "));
    assert_eq!(run(&["--bogus"]).status.code(), Some(2));
    assert_eq!(run(&["--color", "sometimes"]).status.code(), Some(2));
    assert_eq!(run(&["--listen", "not-an-addr"]).status.code(), Some(2));
    let bad = run(&["--registry", "no-such-host.invalid:1"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{err}"
    );
}

/// The registry closes a connection that does not log in within its pre-login deadline (no
/// frame, not even a ping, extends it). A client left at its prompt before logging in must not
/// see that as news: no "Disconnected from registry", no error; its link comes back by itself
/// and a login afterwards works as usual.
#[test]
fn a_pre_login_deadline_close_is_quiet_and_login_still_works() {
    let reg = Registry::start_with(&["--login-timeout", "2s"]);
    let mut p = reg.peer_logging("idle", &[], Some("p2pchat_peer=debug"));
    // The registry closes the idle connection and the peer logs it.
    p.wait_stderr_lines("idle pre-login connection", 1, WAIT);
    // Registered on the next connection as soon as it is up, well inside its deadline (a
    // command sent while the peer reconnects could reach the registry late in it).
    p.wait_stderr_lines("registry link up", 2, WAIT);
    p.send(&format!("/register idle {PASSWORD}"));
    p.expect("Registered idle");
    p.send(&format!("/login idle {PASSWORD}"));
    p.expect("Logged in as idle");
    let noisy: Vec<&String> = p
        .seen
        .iter()
        .filter(|l| l.contains("registry") && !l.starts_with("Connected to registry at "))
        .chain(p.seen.iter().filter(|l| l.starts_with("error:")))
        .collect();
    assert!(noisy.is_empty(), "unexpected lines: {noisy:?}");
}
