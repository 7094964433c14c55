//! Fixtures of the end-to-end tests: the registry process ([`Registry`]), a blocking protocol
//! client over `std::net::TcpStream` ([`Client`]) and a heartbeat sender ([`Heartbeats`]).
//!
//! Everything waits on events with a deadline (socket read timeouts, a child's exit, polling a
//! condition); nothing sleeps to let a condition come true.

// Shared by several test binaries, each of which uses only part of it.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p2pchat_protocol::secure::{Fingerprint, SecureStream};
use p2pchat_protocol::{
    Frame, FrameDecoder, Heartbeat, HeartbeatKey, Msg, Presence, Role, DEFAULT_MAX_FRAME,
    HEARTBEAT_LEN, VERSION,
};
use p2pchat_registry::secure::client_handshake;
use tempfile::TempDir;

/// How long a reply, a close or a start-up may take before the test fails. Generous: the
/// tests run in parallel on small machines; a healthy registry answers in milliseconds.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often conditions are polled by [`wait_until`].
const POLL_EVERY: Duration = Duration::from_millis(20);

/// The password every test account uses.
pub const PW: &str = "correct horse";

/// A running `p2pchat-registry` process on 127.0.0.1, with its own database in a temp dir.
/// Killed on drop; its stderr is collected and printed if the test fails.
pub struct Registry {
    child: Option<Child>,
    /// TCP address from the `listening` line.
    pub tcp: SocketAddr,
    /// UDP address from the `listening` line.
    pub udp: SocketAddr,
    dir: TempDir,
    flags: Vec<String>,
    /// Every stderr line of every run, prefixed with the run number.
    log: Arc<Mutex<String>>,
    /// Every stdout line of the current run.
    stdout: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    runs: usize,
}

impl Registry {
    /// Starts a registry on ephemeral ports with `--pbkdf2-iterations 1000` (unless `flags`
    /// set it) and `flags`.
    pub fn start(flags: &[&str]) -> Registry {
        Registry::start_in(tempfile::tempdir().expect("temp dir"), flags)
    }

    /// As [`Registry::start`], with the database in `dir` (a test may mount a small file
    /// system there first).
    pub fn start_in(dir: TempDir, flags: &[&str]) -> Registry {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut reg = Registry {
            child: None,
            tcp: any,
            udp: any,
            dir,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            log: Arc::new(Mutex::new(String::new())),
            stdout: Arc::new(Mutex::new(Vec::new())),
            readers: Vec::new(),
            runs: 0,
        };
        reg.launch(any, any);
        reg
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("reg.db")
    }

    /// The registry key file (beside the database).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("reg.key")
    }

    /// The key fingerprint of the current run, from its `listening` line.
    pub fn key(&self) -> Fingerprint {
        let lines = self.stdout_lines();
        let line = lines.first().expect("a listening line");
        line.split(' ')
            .find_map(|w| w.strip_prefix("key="))
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| panic!("no key in {line:?}"))
    }

    fn launch(&mut self, tcp: SocketAddr, udp: SocketAddr) {
        if let Err(e) = self.try_launch(tcp, udp) {
            panic!("{e}");
        }
    }

    /// Starts the process; an error if it printed no `listening` line (it is reaped then).
    fn try_launch(&mut self, tcp: SocketAddr, udp: SocketAddr) -> Result<(), String> {
        assert!(self.child.is_none(), "the registry is already running");
        self.runs += 1;
        let run = self.runs;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2pchat-registry"));
        cmd.arg("--tcp")
            .arg(tcp.to_string())
            .arg("--udp")
            .arg(udp.to_string())
            .arg("--db")
            .arg(self.db());
        if !self.flags.iter().any(|f| f == "--pbkdf2-iterations") {
            cmd.args(["--pbkdf2-iterations", "1000"]);
        }
        cmd.args(&self.flags)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn p2pchat-registry");

        let stderr = child.stderr.take().unwrap();
        let log = Arc::clone(&self.log);
        self.readers.push(thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.push_str(&format!("[run {run}] {line}\n"));
            }
        }));

        let stdout = child.stdout.take().unwrap();
        self.stdout.lock().unwrap().clear();
        let lines = Arc::clone(&self.stdout);
        let (first_tx, first_rx) = mpsc::channel();
        self.readers.push(thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line.clone());
                let _ = first_tx.send(line);
            }
        }));
        self.child = Some(child);

        let line = match first_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let status = self.child.as_mut().unwrap().try_wait();
                if matches!(status, Ok(Some(_))) {
                    self.child = None;
                    self.join_readers();
                }
                return Err(format!(
                    "no `listening` line from the registry ({e:?}); exit status {status:?}"
                ));
            }
        };
        let (tcp, udp) = parse_listening(&line);
        self.tcp = tcp;
        self.udp = udp;
        Ok(())
    }

    /// Kills the process with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_readers();
    }

    /// Kills the registry if it runs, then starts it again on the same database, on new
    /// ephemeral ports.
    pub fn restart(&mut self) {
        self.kill9();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        self.launch(any, any);
    }

    /// As [`Registry::restart`], on the same TCP and UDP ports as before.
    ///
    /// Tests run in parallel, and between the kill and the restart another test's connection
    /// can take the freed TCP port as its ephemeral local port: the restart then fails with
    /// "Address already in use". It is tried again once the port can be bound (bounded).
    pub fn restart_same_ports(&mut self) {
        self.kill9();
        let (tcp, udp) = (self.tcp, self.udp);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let Err(e) = self.try_launch(tcp, udp) else {
                return;
            };
            let in_use = self.log.lock().unwrap().contains("Address already in use");
            assert!(
                in_use && self.child.is_none() && Instant::now() < deadline,
                "{e}"
            );
            // Waits for the other connection to end (polls the port, bounded).
            while std::net::TcpListener::bind(tcp).is_err() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self
            .child
            .as_ref()
            .expect("the registry is not running")
            .id();
        // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("the registry is not running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                self.join_readers();
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_EVERY);
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// The stdout lines of the current (or last) run.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// A new connection that has completed the handshake.
    pub fn client(&self) -> Client {
        let mut c = Client::connect(self.tcp);
        match c.hello() {
            Msg::Welcome { version, .. } => assert_eq!(version, VERSION),
            other => panic!("expected Welcome, got {other:?}"),
        }
        c
    }

    /// A new connection on which `name` registers and logs in, listening on `listen`.
    pub fn user(&self, name: &str, listen: &str) -> (Client, Session) {
        let mut c = self.client();
        c.must_register(name);
        let s = c.must_login(name, PW, listen);
        (c, s)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            let log = self.log.lock().unwrap();
            eprintln!("---- p2pchat-registry stderr ----\n{log}---- end of registry stderr ----");
        }
    }
}

fn parse_listening(line: &str) -> (SocketAddr, SocketAddr) {
    let parts: Vec<&str> = line.split(' ').collect();
    let parsed = match parts.as_slice() {
        ["listening", tcp, udp, key] if key.starts_with("key=sha256:") => tcp
            .strip_prefix("tcp=")
            .zip(udp.strip_prefix("udp="))
            .and_then(|(t, u)| Some((t.parse().ok()?, u.parse().ok()?))),
        _ => None,
    };
    parsed.unwrap_or_else(|| panic!("bad listening line: {line:?}"))
}

/// What a client read next.
#[derive(Debug)]
pub enum Next {
    /// A whole frame.
    Frame(Frame),
    /// The registry closed the connection (EOF or reset).
    Closed,
    /// Nothing before the deadline.
    TimedOut,
}

/// A blocking protocol client.
pub struct Client {
    stream: TcpStream,
    decoder: FrameDecoder,
    next_id: u32,
    buf: Vec<u8>,
    /// Frames read while waiting for something else (events, other replies).
    pub events: Vec<Frame>,
    /// The secure link, once [`Client::write`] (or `send`, `hello`) opened it.
    secure: Option<SecureStream>,
    /// The registry key to insist on (none: accept whichever the registry proves).
    pub pin: Option<Fingerprint>,
}

impl Client {
    /// Connects without a handshake.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::from_stream(stream)
    }

    /// Connects from `source` (another loopback address such as 127.0.0.2 stands for another
    /// machine), without a handshake.
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Client {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .unwrap_or_else(|e| panic!("bind {source}: {e}"));
        socket
            .connect_timeout(&addr.into(), REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr} from {source}: {e}"));
        Client::from_stream(socket.into())
    }

    fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        Client {
            stream,
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME),
            next_id: 1,
            buf: vec![0; 64 * 1024],
            events: Vec::new(),
            secure: None,
            pin: None,
        }
    }

    /// The socket, for tests that need to shape their traffic.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends a client hello and returns the first frame's message (a `Welcome`, normally).
    pub fn hello(&mut self) -> Msg {
        self.send(&Frame::event(hello(VERSION, Role::Client)));
        match self.next(Instant::now() + REPLY_TIMEOUT) {
            Next::Frame(f) => f.msg,
            other => panic!("no answer to hello: {other:?}"),
        }
    }

    /// Sends one frame on the secure link (opening it first if need be).
    pub fn send(&mut self, frame: &Frame) {
        self.write(&frame.to_bytes())
            .expect("write to the registry");
    }

    /// Sends raw bytes of the frame stream: sealed once the secure link is open, in the clear
    /// before (for tests of what the registry does with bytes before any handshake).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        match self.secure {
            Some(_) => self.write(bytes).expect("write to the registry"),
            None => self.stream.write_all(bytes).expect("write to the registry"),
        }
    }

    /// Writes bytes of the frame stream on the secure link; the first write opens it (a
    /// handshake, these bytes going out as soon as the keys exist). A refused handshake is an
    /// error.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.secure {
            Some(secure) => {
                secure.send(bytes).map_err(io::Error::other)?;
                let out = secure.take_outgoing();
                self.stream.write_all(&out)
            }
            None => {
                let secure = client_handshake(&mut self.stream, self.pin, bytes, REPLY_TIMEOUT)
                    .map_err(io::Error::other)?;
                self.secure = Some(secure);
                Ok(())
            }
        }
    }

    /// The secure link, once open.
    pub fn secure(&self) -> Option<&SecureStream> {
        self.secure.as_ref()
    }

    /// The next frame, EOF, or nothing before `deadline`.
    pub fn next(&mut self, deadline: Instant) -> Next {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => return Next::Frame(frame),
                Ok(None) => {}
                Err(e) => panic!("the registry sent bytes that do not decode: {e}"),
            }
            let now = Instant::now();
            if now >= deadline {
                return Next::TimedOut;
            }
            self.stream.set_read_timeout(Some(deadline - now)).unwrap();
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Next::Closed,
                Ok(n) => match &mut self.secure {
                    Some(secure) => {
                        if let Err(e) = secure.receive(&self.buf[..n]) {
                            panic!("the registry's secure link failed: {e}");
                        }
                        self.decoder.push(&secure.take_plaintext());
                    }
                    None => self.decoder.push(&self.buf[..n]),
                },
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                        return Next::Closed
                    }
                    _ => panic!("read from the registry: {e}"),
                },
            }
        }
    }

    /// Sends a request with a fresh id and returns the id, without waiting.
    pub fn send_request(&mut self, msg: Msg) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Frame::new(id, msg));
        id
    }

    /// Waits for the reply to request `id`; frames for other ids are kept in `events`. Fails
    /// the test on a connection-level error, a close or a timeout.
    pub fn wait_reply(&mut self, id: u32, timeout: Duration) -> Msg {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline) {
                Next::Frame(f) if f.id == id => return f.msg,
                Next::Frame(Frame {
                    id: 0,
                    msg: Msg::Error { code, message },
                }) => panic!("connection-level error {code} ({message}) awaiting reply #{id}"),
                Next::Frame(f) => self.events.push(f),
                Next::Closed => panic!("connection closed awaiting reply #{id}"),
                Next::TimedOut => panic!("no reply #{id} within {timeout:?}"),
            }
        }
    }

    /// Sends a request and waits for its reply.
    pub fn request(&mut self, msg: Msg) -> Msg {
        let id = self.send_request(msg);
        self.wait_reply(id, REPLY_TIMEOUT)
    }

    /// Reads until the registry closes the connection, and returns the first connection-level
    /// error (id 0) seen before the close. Fails the test if it stays open for
    /// [`REPLY_TIMEOUT`].
    pub fn expect_closed(&mut self) -> Option<(u16, String)> {
        self.expect_closed_within(REPLY_TIMEOUT)
    }

    /// As [`Client::expect_closed`], with a deadline of `timeout`.
    pub fn expect_closed_within(&mut self, timeout: Duration) -> Option<(u16, String)> {
        let deadline = Instant::now() + timeout;
        let mut error = None;
        loop {
            match self.next(deadline) {
                Next::Frame(Frame {
                    id: 0,
                    msg: Msg::Error { code, message },
                }) if error.is_none() => error = Some((code, message)),
                Next::Frame(f) => self.events.push(f),
                Next::Closed => return error,
                Next::TimedOut => {
                    panic!("connection still open after {timeout:?} (error seen: {error:?})")
                }
            }
        }
    }

    // ----- account helpers -----

    /// `Register` with the given password.
    pub fn register_with(&mut self, name: &str, password: &str) -> Msg {
        self.request(Msg::Register {
            name: name.into(),
            password: password.into(),
        })
    }

    /// `Register` with [`PW`], which must succeed.
    pub fn must_register(&mut self, name: &str) {
        assert_eq!(self.register_with(name, PW), Msg::Ok, "register {name}");
    }

    /// `Login`.
    pub fn login(&mut self, name: &str, password: &str, listen: &str) -> Msg {
        self.request(Msg::Login {
            name: name.into(),
            password: password.into(),
            listen: listen.parse().unwrap(),
        })
    }

    /// `Login`, which must succeed.
    pub fn must_login(&mut self, name: &str, password: &str, listen: &str) -> Session {
        let reply = self.login(name, password, listen);
        Session::from_msg(&reply).unwrap_or_else(|| panic!("login {name}: {reply:?}"))
    }

    /// `Resume`.
    pub fn resume(&mut self, name: &str, token: &[u8], listen: &str) -> Msg {
        self.request(Msg::Resume {
            name: name.into(),
            token: token.to_vec(),
            listen: listen.parse().unwrap(),
        })
    }

    /// `Resume`, which must succeed.
    pub fn must_resume(&mut self, name: &str, token: &[u8], listen: &str) -> Session {
        let reply = self.resume(name, token, listen);
        Session::from_msg(&reply).unwrap_or_else(|| panic!("resume {name}: {reply:?}"))
    }

    /// `Search`, which must be answered with a `SearchResult` for `name`.
    pub fn search(&mut self, name: &str) -> Presence {
        match self.request(Msg::Search { name: name.into() }) {
            Msg::SearchResult { name: n, presence } => {
                assert_eq!(n, name);
                presence
            }
            other => panic!("search {name}: {other:?}"),
        }
    }

    /// One page of the online list.
    pub fn list_online(&mut self, after: &str, limit: u16) -> (Vec<String>, bool) {
        match self.request(Msg::ListOnline {
            after: after.into(),
            limit,
        }) {
            Msg::OnlineList { names, more } => (names, more),
            other => panic!("list online: {other:?}"),
        }
    }
}

/// A hello frame's message.
pub fn hello(version: u16, role: Role) -> Msg {
    Msg::Hello {
        version,
        role,
        name: String::new(),
        ticket: vec![],
    }
}

/// Asserts `reply` is an error with `code` and returns its message.
#[track_caller]
pub fn expect_error(reply: Msg, code: u16) -> String {
    match reply {
        Msg::Error { code: c, message } if c == code => {
            assert!(!message.is_empty(), "error {code} without a message");
            message
        }
        other => panic!("expected error {code}, got {other:?}"),
    }
}

/// What a `LoggedIn` carries.
#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    pub session: u64,
    pub key: [u8; 32],
    pub interval_ms: u32,
    pub timeout_ms: u32,
    pub token: Vec<u8>,
    pub udp_port: u16,
    pub advertised: SocketAddr,
}

impl Session {
    fn from_msg(msg: &Msg) -> Option<Session> {
        match msg {
            Msg::LoggedIn {
                name,
                session,
                heartbeat_key,
                heartbeat_interval_ms,
                heartbeat_timeout_ms,
                resume_token,
                udp_port,
                advertised,
            } => Some(Session {
                name: name.clone(),
                session: *session,
                key: *heartbeat_key,
                interval_ms: *heartbeat_interval_ms,
                timeout_ms: *heartbeat_timeout_ms,
                token: resume_token.clone(),
                udp_port: *udp_port,
                advertised: *advertised,
            }),
            _ => None,
        }
    }
}

/// A signed heartbeat datagram.
pub fn heartbeat(key: &[u8; 32], session: u64, counter: u64) -> [u8; HEARTBEAT_LEN] {
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Heartbeat::sign(&HeartbeatKey::new(key), session, counter, wall_ms).encode()
}

/// Valid heartbeats for one session, sent from a thread at a fixed pace until dropped.
pub struct Heartbeats {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<u64>>,
}

impl Heartbeats {
    /// Starts sending heartbeats of `s` to `to` every `every`, the first one at once.
    pub fn start(to: SocketAddr, s: &Session, every: Duration) -> Heartbeats {
        let (stop, stopped) = mpsc::channel::<()>();
        let (key, session) = (s.key, s.session);
        let thread = thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
            let mut counter = 0;
            loop {
                counter += 1;
                sock.send_to(&heartbeat(&key, session, counter), to)
                    .expect("send heartbeat");
                // Paces the sender; a message (or the sender's drop) stops it.
                match stopped.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return counter,
                }
            }
        });
        Heartbeats {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `cond` until it holds, and returns when it was first seen to hold. Fails the test if
/// it still does not hold at `deadline`.
#[track_caller]
pub fn wait_until(what: &str, deadline: Instant, mut cond: impl FnMut() -> bool) -> Instant {
    loop {
        if cond() {
            return Instant::now();
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for: {what}");
        }
        thread::sleep(POLL_EVERY);
    }
}

/// Runs the binary with `args` (nothing else) and returns its exit status, stdout and stderr.
/// Fails the test if it is still running after [`START_TIMEOUT`].
pub fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_p2pchat-registry"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn p2pchat-registry");
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("p2pchat-registry {args:?} still running after {START_TIMEOUT:?}");
        }
        thread::sleep(POLL_EVERY);
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, out, err)
}
