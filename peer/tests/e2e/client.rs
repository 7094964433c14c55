//! The terminal client as a user meets it: interactive `p2pchat` processes on a pseudo-terminal
//! (the raw bytes they write to the terminal are checked), and line-mode ones, against the real
//! registry.

use super::*;

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

/// An interactive `p2pchat` on a pseudo-terminal: what it writes to the terminal arrives as raw
/// bytes; typed lines go in through the terminal as a user's keystrokes would.
struct Pty {
    name: String,
    /// The client's data directory (its history file), not the user's.
    _data: tempfile::TempDir,
    child: Child,
    input: File,
    chunks: Receiver<Vec<u8>>,
    /// Everything written to the terminal so far.
    out: Vec<u8>,
    /// How far [`Pty::expect`] has consumed `out`.
    pos: usize,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Pty {
    fn spawn(reg: &Registry, name: &str, extra: &[&str]) -> Pty {
        let (mut master, mut slave) = (0, 0);
        // Wide enough that no test line wraps.
        let size = libc::winsize {
            ws_row: 50,
            ws_col: 250,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors into the ints and reads the winsize; the name
        // and termios pointers may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_p2pchat"))
            .args([
                "--registry",
                &reg.tcp.to_string(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("TERM", "xterm-256color")
            .env("XDG_DATA_HOME", data.path())
            .env("XDG_CONFIG_HOME", data.path())
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let (tx, chunks) = mpsc::channel();
        let mut reader = master.try_clone().unwrap();
        let mut answer = master.try_clone().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child has exited and the terminal has no other user.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let chunk = buf[..n].to_vec();
                // The line editor asks where the cursor is; answer as a terminal would, at the
                // left margin, rather than let it wait for a reply.
                if chunk.windows(4).any(|w| w == b"\x1b[6n") {
                    let _ = answer.write_all(b"\x1b[1;1R");
                }
                if tx.send(chunk).is_err() {
                    break;
                }
            }
        });
        let mut pty = Pty {
            name: name.to_string(),
            _data: data,
            child,
            input: master,
            chunks,
            out: Vec::new(),
            pos: 0,
            stderr,
        };
        pty.expect("Connected to registry at ");
        pty
    }

    /// Registers and logs in as `self.name`.
    fn user(reg: &Registry, name: &str, extra: &[&str]) -> Pty {
        let mut p = Pty::spawn(reg, name, extra);
        p.type_line(&format!("/register {name} {PASSWORD}"));
        p.expect(&format!("Registered {name}"));
        p.type_line(&format!("/login {name} {PASSWORD}"));
        p.expect(&format!("Logged in as {name}"));
        p
    }

    /// Types a line and Enter.
    fn type_line(&mut self, line: &str) {
        self.input
            .write_all(format!("{line}\r").as_bytes())
            .unwrap_or_else(|e| panic!("{}: typing {line:?}: {e}", self.name));
    }

    /// Waits until the terminal output after the last match contains `needle`; consumes the
    /// output up to the end of it.
    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = find(&self.out[self.pos..], needle.as_bytes()) {
                self.pos += i + needle.len();
                return;
            }
            self.more(deadline, needle);
        }
    }

    /// Waits for `needle`, then returns the raw bytes after it up to the end of that line
    /// (the `\n`, excluded; a `\r` before it too).
    fn line_after(&mut self, needle: &str) -> Vec<u8> {
        self.expect(needle);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.out[self.pos..].iter().position(|&b| b == b'\n') {
                let mut line = self.out[self.pos..self.pos + i].to_vec();
                self.pos += i + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return line;
            }
            self.more(deadline, "the end of the line");
        }
    }

    /// Waits for `needle`, then returns the whole raw line it is on (without the line end).
    fn line_with(&mut self, needle: &str) -> Vec<u8> {
        self.expect(needle);
        let start = self.out[..self.pos]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let mut line = self.out[start..self.pos].to_vec();
        line.extend(self.line_after(""));
        line
    }

    /// Appends the next chunk of output; panics with what was seen at `deadline`.
    fn more(&mut self, deadline: Instant, what: &str) {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.chunks.recv_timeout(left) {
            Ok(chunk) => self.out.extend_from_slice(&chunk),
            Err(_) => panic!(
                "{}: no {what:?} on the terminal within {WAIT:?}\nterminal after the last \
                 match: {:?}\nstderr: {:#?}",
                self.name,
                String::from_utf8_lossy(&self.out[self.pos..]),
                self.stderr.lock().unwrap()
            ),
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A message meant to take over the reader's terminal: clear the screen, colour, a carriage
/// return that overwrites the line with a forged sender, a bell, a hyperlink whose text and
/// target differ, and a right-to-left override.
const EVIL: &str = "\x1b[2J\x1b[Hcleared \x1b[31mRED\x1b[0m fake\rMessage from carol at lab: \
                    I am carol\x07 \x1b]8;;https://evil.example\x1b\\https://good.example\
                    \x1b]8;;\x1b\\ \u{202E}txt.exe see https://real.example/x";

/// What every reader must see instead: each control shown visibly, nothing acted on.
const CLEANED: &str = "^[[2J^[[Hcleared ^[[31mRED^[[0m fake^MMessage from carol at lab: \
                       I am carol^G ^[]8;;https://evil.example^[\\https://good.example\
                       ^[]8;;^[\\ <U+202E>txt.exe see https://real.example/x";

/// The text of a message line as the terminal shows it, with the escapes our renderer may
/// write checked and removed: SGR styles (`ESC [ ... m`) and OSC 8 links whose target is the
/// text shown. Panics on any other control byte.
fn visible_text(raw: &[u8]) -> String {
    let s = String::from_utf8(raw.to_vec()).unwrap();
    let mut out = String::new();
    let mut rest = s.as_str();
    let mut link: Option<(String, usize)> = None;
    while let Some(c) = rest.chars().next() {
        if let Some(sgr) = rest.strip_prefix("\x1b[") {
            let end = sgr
                .find(|c: char| !(c.is_ascii_digit() || c == ';'))
                .unwrap();
            assert_eq!(&sgr[end..end + 1], "m", "a non-SGR CSI sequence in {s:?}");
            rest = &sgr[end + 1..];
            continue;
        }
        if let Some(osc) = rest.strip_prefix("\x1b]8;;") {
            let end = osc.find("\x1b\\").expect("OSC 8 terminated by ST");
            let target = &osc[..end];
            rest = &osc[end + 2..];
            match link.take() {
                None => {
                    assert!(
                        !target.is_empty(),
                        "an OSC 8 close without an open in {s:?}"
                    );
                    link = Some((target.to_string(), out.len()));
                }
                Some((open, start)) => {
                    assert!(target.is_empty(), "nested OSC 8 in {s:?}");
                    assert_eq!(out[start..], open, "a link shows its real target");
                }
            }
            continue;
        }
        assert!(
            !c.is_control(),
            "control character {c:?} reached the terminal in {s:?}"
        );
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    assert!(link.is_none(), "unclosed OSC 8 in {s:?}");
    out
}

#[test]
fn escapes_from_the_network_arrive_cleaned_in_every_mode() {
    let reg = Registry::start();
    let mut bob = reg.user("bob", &[]);
    let mut carol = reg.user("carol", &[]);
    let mut alice = Pty::user(&reg, "alice", &[]);
    let mut dave = Pty::user(&reg, "dave", &["--color", "never"]);

    bob.send("/create lab");
    bob.expect("Created room lab");
    carol.send("/join lab");
    carol.expect("Joined room lab");
    alice.type_line("/join lab");
    alice.expect("Joined room lab");
    dave.type_line("/join lab");
    dave.expect("Joined room lab");
    bob.send(&format!("/say lab {EVIL}"));

    carol.expect(&format!("Message from bob at lab: {CLEANED}"));
    let raw = alice.line_after("Message from bob at lab: ");
    assert_eq!(visible_text(&raw), CLEANED);
    assert!(
        find(&raw, b"\x1b]8;;https://real.example/x\x1b\\").is_some(),
        "the genuine link is a hyperlink in colour mode: {:?}",
        String::from_utf8_lossy(&raw)
    );
    let raw = dave.line_after("Message from bob at lab: ");
    assert_eq!(
        String::from_utf8_lossy(&raw),
        CLEANED,
        "--color never writes the cleaned text and not one escape"
    );

    // The same through private chats.
    bob.send("/chat carol");
    carol.expect("Chat request from bob");
    carol.send("/accept bob");
    bob.expect("Chat with carol started");
    bob.send(&format!("/msg carol {EVIL}"));
    carol.expect(&format!("Message from bob: {CLEANED}"));

    bob.send("/chat alice");
    alice.expect("Chat request from bob");
    alice.type_line("/accept bob");
    bob.expect("Chat with alice started");
    bob.send(&format!("/msg alice {EVIL}"));
    let mut raw = alice.line_after("Message from bob: ");
    // Our own bell for a private message ends the line; the one in the text must not ring.
    assert_eq!(
        raw.pop(),
        Some(b'\x07'),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(visible_text(&raw), CLEANED);
}

/// The README's quick start: every line of its `text alice` and `text bob` blocks, typed in
/// order into two line-mode clients, with the reply each line should bring awaited before the
/// next. A README step this harness does not know fails the test, so the README cannot drift
/// into something untested.
#[test]
fn readme_quick_start_typed_literally() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("## Quick start")
        .expect("a Quick start section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut block: Option<String> = None;
    for line in section.lines() {
        if let Some(info) = line.strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => Some(info.trim().to_string()),
            };
            continue;
        }
        if let Some(user) = block.as_deref().and_then(|b| b.strip_prefix("text ")) {
            steps.push((user.to_string(), line.to_string()));
        }
    }
    assert!(steps.len() >= 6, "too few quick start steps: {steps:?}");
    let sh =
        section.contains("--registry 127.0.0.1\n") || section.contains("--registry 127.0.0.1 ");
    assert!(
        sh,
        "the quick start starts the peers with --registry 127.0.0.1"
    );

    let reg = Registry::start();
    let mut alice = reg.peer("alice", &[]);
    let mut bob = reg.peer("bob", &[]);
    for (user, line) in &steps {
        let (me, other) = match user.as_str() {
            "alice" => (&mut alice, &mut bob),
            "bob" => (&mut bob, &mut alice),
            other => panic!("README step for unknown user {other}"),
        };
        let my_name = me.name.clone();
        me.send(line);
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["/register", name, _] => me.expect(&format!("Registered {name}")),
            ["/login", name, _] => me.expect(&format!("Logged in as {name}")),
            ["/chat", name] => {
                me.expect(&format!("Chat request sent to {name}, waiting..."));
                other.expect(&format!("Chat request from {my_name}"))
            }
            ["/accept", name] => {
                me.expect(&format!("Chat with {name} started"));
                other.expect(&format!("Chat with {my_name} started"))
            }
            ["/create", room] => me.expect(&format!("Created room {room}")),
            ["/join", room] => {
                me.expect(&format!("Joined room {room}"));
                other.expect(&format!("{my_name} joined {room}"))
            }
            [first, ..] if !first.starts_with('/') => {
                let from = format!("Message from {my_name}");
                let end = format!(": {line}");
                other.expect_with("the message", WAIT, |l| {
                    l.starts_with(&from) && l.ends_with(&end)
                })
            }
            _ => panic!("README step {line:?} is not one this test knows how to check"),
        };
    }
    let chatted = alice
        .seen
        .iter()
        .chain(&bob.seen)
        .filter(|l| l.starts_with("Message from "))
        .count();
    assert!(chatted >= 2, "a private and a room message were exchanged");
}

#[test]
fn chat_requests_say_so_are_listed_and_expire() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &["--chat-timeout", "1500ms"]);
    let mut bob = reg.user("bob", &[]);
    bob.send("/create lab");
    bob.expect("Created room lab");

    alice.send("/chat bob");
    alice.expect("Chat request sent to bob, waiting...");
    bob.expect("Chat request from alice");
    alice.send("/chats");
    alice.expect("Chats: none");
    alice.expect("Requests sent: bob");
    alice.expect("Requests received: none");
    alice.expect("Rooms: none");
    bob.send("/windows");
    bob.expect("Chats: none");
    bob.expect("Requests sent: none");
    bob.expect("Requests received: alice");
    bob.expect("Rooms: lab");
    bob.expect("Current: lab");

    alice.expect("Chat request to bob expired without an answer");
    bob.expect("Chat request from alice expired");
    bob.send("/accept alice");
    bob.expect("error: no chat request from alice");
    alice.send("/chats");
    alice.expect("Requests sent: none");
}

#[test]
fn irc_aliases_work() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    alice.send("/create lab");
    alice.expect("Created room lab");
    bob.send("/j lab");
    bob.expect("Joined room lab");
    alice.expect("bob joined lab");
    bob.send("/names lab");
    bob.expect("Members of lab: alice (admin, online), bob (online)");
    bob.send("/whois alice");
    bob.expect_prefix("alice is online at ");
    bob.send("/list");
    bob.expect("lab members=2 online=2");
    bob.send("/me waves");
    alice.expect("* bob waves (at lab)");
    bob.send("/help part");
    bob.expect("/leave [ROOM]: leave a chat room (without ROOM: the current one) (also /part)");
    bob.send("/names");
    bob.expect("Members of lab: alice (admin, online), bob (online)");
    bob.send("/part");
    bob.expect("Left room lab");
    alice.expect("bob left lab");

    bob.send("/query alice");
    alice.expect("Chat request from bob");
    alice.send("/accept bob");
    bob.expect("Chat with alice started");
    bob.send("/me is here");
    alice.expect("* bob is here");
    alice.send("/close");
    alice.expect("Chat with bob ended");
    bob.expect("Chat with alice ended");
    bob.send("/query alice");
    alice.expect("Chat request from bob");
    alice.send("/accept bob");
    bob.expect("Chat with alice started");
    alice.send("/away lunch");
    alice.expect("You are marked as away: lunch");
    bob.send("are you there?");
    alice.expect("Message from bob: are you there?");
    bob.expect("* alice is away: lunch");
    bob.send("/quit bye now");
    alice.expect("Message from bob: bye now");
    alice.expect("Chat with bob ended");
    assert!(bob.wait_exit(WAIT).success());
}

#[test]
fn prompt_shows_the_focus_and_falls_back() {
    let reg = Registry::start();
    let mut bob = reg.user("bob", &[]);
    let mut alice = Pty::user(&reg, "alice", &["--no-timestamps"]);
    alice.type_line("/create lab");
    alice.expect("Created room lab");
    alice.expect("[lab]> ");
    bob.send("/join lab");
    bob.expect("Joined room lab");

    // A room message that mentions alice is highlighted and rings; others do not.
    bob.send("/say lab no mention here");
    let plain = alice.line_with("no mention here");
    bob.send("/say lab hey Alice, look");
    let mention = alice.line_with("hey Alice, look");
    assert!(
        find(&mention, b"\x1b[7m").is_some() && mention.ends_with(b"\x07"),
        "highlighted and ringing: {:?}",
        String::from_utf8_lossy(&mention)
    );
    assert!(
        find(&plain, b"\x1b[7m").is_none() && !plain.contains(&b'\x07'),
        "{:?}",
        String::from_utf8_lossy(&plain)
    );

    bob.send("/chat alice");
    alice.expect("Chat request from bob");
    alice.type_line("/accept bob");
    alice.expect("Chat with bob started");
    alice.expect("[@bob]> ");
    alice.type_line("to bob");
    bob.expect("Message from alice: to bob");

    bob.send("/end alice");
    alice.expect("Chat with bob ended");
    alice.expect("Now talking to lab");
    // Redrawn at once under the notice (padded to the width of the line's first prompt when
    // that line was already being edited).
    alice.expect("[lab]> ");
    alice.type_line("back in the room");
    bob.expect("Message from alice at lab: back in the room");
    alice.expect("[lab]> ");

    // Ctrl-D on an empty line quits: logged out, bob sees alice go.
    alice.input.write_all(b"\x04").unwrap();
    alice.expect("Logged out");
    bob.send("/search alice");
    bob.expect("alice is offline");
}

#[test]
fn a_rename_reaches_chat_partners_and_rooms() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    let mut carol = reg.user("carol", &[]);
    bob.send("/create lab");
    bob.expect("Created room lab");
    alice.send("/join lab");
    alice.expect("Joined room lab");
    start_chat(&mut alice, &mut carol);

    alice.send("/nick alicia");
    alice.expect("Renamed to alicia");
    carol.expect("alice is now known as alicia");
    bob.expect("alice is now known as alicia");

    carol.send("/msg alicia still here?");
    alice.expect("Message from carol: still here?");
    alice.send("yes, under my new name");
    carol.expect("Message from alicia: yes, under my new name");
    alice.send("/say lab hello lab");
    bob.expect("Message from alicia at lab: hello lab");
    bob.send("/say lab hello alicia");
    alice.expect("Message from bob at lab: hello alicia");
    carol.send("/end alicia");
    alice.expect("Chat with carol ended");
}

#[test]
fn registry_requests_time_out_and_a_lost_session_says_log_in_again() {
    let mut reg = Registry::start();
    let mut alice = reg.user("alice", &["--registry-timeout", "1s"]);
    // A registry that is there but does not answer: stopped, its sockets still open.
    let pid = libc::pid_t::try_from(reg.proc.child.id()).unwrap();
    // SAFETY: a plain signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    alice.send("/users");
    alice.expect("error: the registry did not answer");

    // The registry comes back without its database: the session cannot be resumed. (Killed
    // and restarted at once: its ports are free in between, and another process could take
    // them.)
    reg.kill9();
    // The database goes; the registry's key stays (a registry with a new key is refused by
    // peers that pinned the old one), and so do the peers' pins (a directory).
    for entry in std::fs::read_dir(reg.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.extension() != Some("key".as_ref()) {
            std::fs::remove_file(path).unwrap();
        }
    }
    reg.restart();
    let line = alice.expect_with("the lost session", Duration::from_secs(20), |l| {
        l == "Logged out: log in again" || l == "Reconnected to registry"
    });
    assert_eq!(line, "Logged out: log in again");
    alice.send("/users");
    alice.expect("error: not logged in");
    alice.assert_no_line(|l| l == "Reconnected to registry");
    alice.send(&format!("/register alice {PASSWORD}"));
    alice.expect("Registered alice");
    alice.send(&format!("/login alice {PASSWORD}"));
    alice.expect("Logged in as alice");
}

#[test]
fn loose_commands_get_clear_answers() {
    let reg = Registry::start();
    let mut alice = reg.user("alice", &[]);
    let mut bob = reg.user("bob", &[]);
    alice.send("/create lab");
    alice.expect("Created room lab");
    bob.send("/join lab");
    bob.expect("Joined room lab");
    bob.send("/join lab");
    bob.expect("error: already in room lab");

    alice.send("/promote lab alice");
    alice.expect("error: alice is already admin of lab");
    alice.send("/promote lab bob");
    alice.expect("bob is now admin of lab");
    alice.send("/promote lab bob");
    alice.expect("error: bob is already admin of lab");

    alice.send("/mute alice");
    alice.expect("error: you cannot mute yourself");
    alice.send("/mute bob");
    alice.expect("Muted bob");
    alice.send("/mute bob");
    alice.expect("error: bob is already muted");
    alice.send("/unmute bob");
    alice.expect("Unmuted bob");
    alice.send("/unmute bob");
    alice.expect("error: bob is not muted");
    alice.send("/mute nobody");
    alice.expect("error: nobody not found");
    alice.send("/mute BOB");
    alice.expect("Muted bob");

    // A user named like a room: #lab is the room.
    let mut lab = reg.user("lab", &[]);
    start_chat(&mut alice, &mut lab);
    alice.send("/mute lab");
    alice.expect("error: lab is both a room and a user: use #lab for the room");
    alice.send("/mute #lab");
    alice.expect("Muted room lab");
    alice.send("/focus #lab");
    alice.expect("Now talking to lab");
    alice.send("/focus nobody");
    alice.expect("error: no chat with nobody");
}

#[test]
fn usernames_ignore_case_and_the_creator_cannot_be_kicked_by_a_co_admin() {
    let reg = Registry::start();
    let mut alice = reg.user("Alice", &[]);
    let mut bob = reg.user("bob", &[]);
    bob.send(&format!("/register ALICE {PASSWORD}"));
    bob.expect("error: username already taken");
    bob.send("/search alice");
    bob.expect_prefix("Alice is online at ");

    alice.send("/create lab");
    alice.expect("Created room lab");
    bob.send("/join lab");
    bob.expect("Joined room lab");
    alice.send("/promote lab bob");
    alice.expect("bob is now admin of lab");
    bob.expect("bob is now admin of lab");
    bob.send("/kick lab Alice");
    bob.expect("error: only a more senior admin can kick Alice");
    alice.send("/kick lab bob");
    alice.expect("bob was kicked from lab");
}

#[test]
fn interactive_editing_timestamps_completion_ctrl_c_and_history() {
    let reg = Registry::start();
    let mut alice = Pty::user(&reg, "alice", &["--color", "never"]);
    alice.type_line("/create lab");
    alice.expect("Created room lab");
    let before = &alice.out[..alice.pos - "Created room lab".len()];
    let stamp = &before[before.len() - 8..];
    assert!(
        stamp[0] == b'['
            && stamp[3] == b':'
            && stamp[6..] == *b"] "
            && [1, 2, 4, 5].iter().all(|&i| stamp[i].is_ascii_digit()),
        "a [HH:MM] time before the line: {:?}",
        String::from_utf8_lossy(before)
    );

    // Ctrl-C clears a half-typed line and does not quit.
    alice.expect("[lab]> ");
    alice.input.write_all(b"half typed").unwrap();
    alice.input.write_all(b"\x03").unwrap();
    alice.type_line("/chats");
    alice.expect("Current: lab");
    // Tab completes a command; a line that fails is still kept in the history.
    alice.input.write_all(b"/windo\t").unwrap();
    alice.type_line("");
    alice.expect("Current: lab");
    // ... and room names.
    alice.input.write_all(b"/focus la\t").unwrap();
    alice.type_line("");
    alice.expect("Now talking to lab");
    alice.type_line("/nosuchthing");
    alice.expect("unknown command /nosuchthing");
    // Ctrl-C on an empty line quits, logging out (once the editor is reading again: between
    // lines the terminal is not in raw mode, and Ctrl-C is a signal, which needs a controlling
    // terminal that this test does not set up).
    alice.expect("[lab]> ");
    alice.input.write_all(b"\x03").unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = alice.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "Ctrl-C on an empty line did not quit"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());

    let history = std::fs::read_to_string(alice._data.path().join("p2pchat/history")).unwrap();
    assert!(history.contains("/windows"), "{history}");
    assert!(history.contains("/nosuchthing"), "{history}");
    assert!(
        !history.contains(PASSWORD),
        "no password in the history: {history}"
    );
    assert!(!history.contains("half typed"), "{history}");
}

#[test]
fn after_a_login_plain_lines_go_to_the_last_room_shown() {
    let reg = Registry::start();
    let mut bob = reg.user("bob", &[]);
    let mut alice = reg.user("alice", &[]);
    for room in ["aa", "bb"] {
        alice.send(&format!("/create {room}"));
        alice.expect(&format!("Created room {room}"));
        bob.send(&format!("/join {room}"));
        bob.expect(&format!("Joined room {room}"));
    }
    alice.send("/quit");
    assert!(alice.wait_exit(WAIT).success());

    let mut alice = reg.peer("alice", &[]);
    alice.send(&format!("/login alice {PASSWORD}"));
    alice.expect("Logged in as alice");
    let first = alice.expect_prefix("Joined room ");
    let last = alice.expect_prefix("Joined room ");
    assert_ne!(first, last);
    let room = &last["Joined room ".len()..];
    alice.send("where does this go?");
    bob.expect(&format!(
        "Message from alice at {room}: where does this go?"
    ));
}
