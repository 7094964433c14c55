//! `p2pchat`: the p2pchat terminal client. A thin driver: it parses flags, owns the sockets
//! (a `p2pchat_engine::Reactor`), the clock and the terminal, and runs a `p2pchat_peer::Node`
//! by the run loop in that crate's docs. Everything about chat lives in the library.

#[path = "p2pchat/term.rs"]
mod term;

use std::collections::{BTreeSet, HashMap};
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use clap::{Parser, ValueEnum};
use log::{debug, info, warn};
use p2pchat_engine::{ConnId, NetEvent, Reactor, Signal, UdpId};
use p2pchat_peer::render::{self, Mode, Style, Tone};
use p2pchat_peer::{Command, Config, Input, LinkId, Node, NodeEvent, Output, RoomMode};
use p2pchat_protocol::parse_duration;
use rand::rngs::StdRng;
use rand::SeedableRng;

use term::{Printer, PromptSync, TermGuard, UiInput};

/// How long to keep flushing connections after the node is done.
const EXIT_LINGER: Duration = Duration::from_secs(2);

/// The registry's TCP port when `--registry` names only a host.
const REGISTRY_PORT: u16 = 15600;

/// p2pchat: chat in the terminal, peer to peer. Private chats go straight to the other peer;
/// rooms are flooded among their members. Type /help once running.
#[derive(Debug, Parser)]
#[command(name = "p2pchat", version, long_about = None)]
struct Args {
    /// The registry's TCP address (the port defaults to 15600).
    #[arg(long, value_name = "HOST[:PORT]", default_value = "127.0.0.1:15600")]
    registry: String,
    /// The registry's UDP (heartbeat) address [default: the registry host and the port it
    /// announces at login].
    #[arg(long, value_name = "HOST:PORT")]
    registry_udp: Option<String>,
    /// An unanswered chat request expires after this long (e.g. 500ms, 20s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    chat_timeout: Duration,
    /// A registry request unanswered this long fails with "the registry did not answer".
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    registry_timeout: Duration,
    /// No `[14:03]` times before lines in interactive mode.
    #[arg(long)]
    no_timestamps: bool,
    /// Where to listen for other peers.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Neighbours per room in the room overlay.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..))]
    degree: u16,
    /// How room messages spread: `flood` (to every neighbour) or `tree` (along a broadcast
    /// tree, announcing ids on the other links).
    #[arg(long, value_name = "MODE", default_value = "flood")]
    room_mode: RoomModeArg,
    /// Concurrent private chats before new requests are answered "busy".
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..))]
    max_chats: u16,
    /// Print every event as one JSON object per line.
    #[arg(long)]
    json: bool,
    /// When to use colour (auto: on a terminal, unless NO_COLOR is set).
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    color: ColorWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoomModeArg {
    Flood,
    Tree,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        // Log messages quote the network too (a peer's error text, a bad name): cleaned like
        // everything else that reaches the terminal. Otherwise env_logger's usual layout.
        .format(|buf, record| {
            use std::io::Write as _;
            let message = record.args().to_string();
            writeln!(
                buf,
                "[{} {:<5} {}] {}",
                buf.timestamp(),
                record.level(),
                record.target(),
                render::clean(&message)
            )
        })
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `s` with `:port` added when it names only a host (`127.0.0.1`, `example.org`, `::1`,
/// `[::1]`).
fn with_default_port(s: &str, port: u16) -> String {
    if s.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        return format!("[{s}]:{port}");
    }
    let has_port = s.rsplit_once(':').is_some_and(|(host, p)| {
        p.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
    });
    if has_port {
        s.to_string()
    } else {
        format!("{s}:{port}")
    }
}

/// Resolves `HOST:PORT`, preferring IPv4.
fn resolve(what: &str, s: &str) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .with_context(|| format!("invalid {what} address {s:?}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| anyhow!("{what} address {s:?} resolves to nothing"))
}

/// What the terminal shows and how.
struct Ui {
    printer: Printer,
    mode: Mode,
    /// Colour for line mode (only with `--color always`).
    paint_lines: bool,
    bell: bool,
    /// `[14:03]` before each line (interactive mode).
    timestamps: bool,
    /// Our name, for highlighting mentions in rooms.
    me: Option<String>,
    /// User and room names seen, for Tab completion.
    names: Arc<Mutex<BTreeSet<String>>>,
    /// Where the line editor reads its prompt.
    prompt: Arc<PromptSync>,
}

/// Whether `text` mentions `name` as a word (any case).
fn mentions(text: &str, name: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
        .any(|w| w.trim_end_matches('.').eq_ignore_ascii_case(name))
}

/// Local `HH:MM` now.
fn clock() -> String {
    // The binary owns the clock (clippy.toml keeps the libraries off it).
    #[allow(clippy::disallowed_methods)]
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t = libc::time_t::try_from(secs).unwrap_or(0);
    // SAFETY: tm is plain data; localtime_r fills it from t and touches nothing else.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    if ok {
        format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
    } else {
        format!("{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60)
    }
}

/// The prompt for where plain lines go.
fn prompt_for(node: &Node) -> String {
    node.target()
        .map_or_else(|| "> ".to_string(), |t| format!("[{}]> ", t.label()))
}

impl Ui {
    /// Publishes the node's current prompt, before the events of an input are printed: the
    /// editor redraws its prompt after each printed line and must see the new focus then.
    fn publish_prompt(&self, node: &Node) {
        self.prompt.update(&prompt_for(node), None);
    }

    /// Remembers names for completion and who we are.
    fn learn(&mut self, event: &NodeEvent) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let mut add = |n: &str| {
            if names.len() < 10_000 && !n.is_empty() {
                names.insert(n.to_string());
            }
        };
        match event {
            NodeEvent::LoggedIn { name, .. } | NodeEvent::Renamed { name } => {
                self.me = Some(name.clone());
            }
            NodeEvent::LoggedOut => self.me = None,
            NodeEvent::OnlineUsers { names: list } => list.iter().for_each(|n| add(n)),
            NodeEvent::UserOnline { name, .. }
            | NodeEvent::ChatRequest { from: name }
            | NodeEvent::ChatStarted { with: name }
            | NodeEvent::RoomJoined { room: name }
            | NodeEvent::RoomCreated { room: name } => add(name),
            NodeEvent::RoomMessage { room, from, .. }
            | NodeEvent::MemberJoined { room, name: from } => {
                add(room);
                add(from);
            }
            NodeEvent::RoomList { rooms } => rooms.iter().for_each(|r| add(&r.name)),
            NodeEvent::MemberList { room, members } => {
                add(room);
                members.iter().for_each(|m| add(&m.name));
            }
            _ => {}
        }
    }

    fn show(&mut self, event: &NodeEvent) {
        self.learn(event);
        let Some(mut text) = render::render(event, self.mode) else {
            return;
        };
        let interactive = matches!(self.mode, Mode::Interactive(_));
        let mention = interactive
            && match (event, &self.me) {
                (NodeEvent::RoomMessage { from, text, .. }, Some(me)) => {
                    from != me && mentions(text, me)
                }
                _ => false,
            };
        if mention && matches!(self.mode, Mode::Interactive(s) if s.color) {
            // Reverse video over the whole line; the line's own styles end with their resets.
            text = format!("\x1b[7m{text}\x1b[27m");
        }
        if interactive && self.timestamps {
            text = format!("[{}] {text}", clock());
        }
        if self.paint_lines {
            text = match render::tone(event) {
                Tone::Error => format!("\x1b[31m{text}\x1b[39m"),
                Tone::Message => format!("\x1b[32m{text}\x1b[39m"),
                Tone::Own => format!("\x1b[36m{text}\x1b[39m"),
                Tone::Notice => format!("\x1b[33m{text}\x1b[39m"),
            };
        }
        if self.bell && (mention || render::wants_bell(event)) {
            text.push('\x07');
        }
        self.printer.print(&text);
    }
}

/// The sockets, and the map between the node's link ids and the engine's connection ids.
struct Net {
    reactor: Reactor,
    udp: UdpId,
    conns: HashMap<LinkId, ConnId>,
    links: HashMap<ConnId, LinkId>,
    next_accepted: u64,
    /// Inputs produced while carrying out outputs (a connect that failed at once).
    feedback: Vec<Input>,
}

impl Net {
    /// Feeds one input to the node and carries out what it asks for, including the inputs that
    /// causes (a connect that fails at once). Returns true once the node said `Exit`.
    fn feed(&mut self, node: &mut Node, ui: &mut Ui, now: Instant, input: Input) -> bool {
        node.handle_input(now, input);
        ui.publish_prompt(node);
        let mut exit = self.drain(node, ui);
        while let Some(input) = self.feedback.pop() {
            node.handle_input(now, input);
            ui.publish_prompt(node);
            exit |= self.drain(node, ui);
        }
        exit
    }

    /// Carries out everything the node asks for; returns true on `Exit`.
    fn drain(&mut self, node: &mut Node, ui: &mut Ui) -> bool {
        let mut exit = false;
        while let Some(out) = node.poll_output() {
            match out {
                Output::Connect { link, addr } => match self.reactor.connect(addr) {
                    Ok(conn) => {
                        self.conns.insert(link, conn);
                        self.links.insert(conn, link);
                    }
                    Err(e) => {
                        info!("connect to {addr} failed: {e}");
                        self.feedback.push(Input::Closed { link });
                    }
                },
                Output::Send { link, bytes } => {
                    if let Some(&conn) = self.conns.get(&link) {
                        self.reactor.send(conn, &bytes);
                    }
                }
                Output::Close { link, reason } => {
                    debug!("closing {link:?}: {reason}");
                    if let Some(conn) = self.conns.remove(&link) {
                        self.reactor.close(conn);
                    }
                }
                Output::SendTo { to, bytes } => {
                    if !self.reactor.send_to(self.udp, to, &bytes) {
                        debug!("heartbeat to {to} dropped");
                    }
                }
                Output::Event(event) => ui.show(&event),
                Output::Exit => exit = true,
            }
        }
        exit
    }

    /// The node's input for an engine event, if it has one.
    fn input(&mut self, event: NetEvent) -> Option<Input> {
        match event {
            NetEvent::Accepted { conn, remote, .. } => {
                self.next_accepted += 1;
                let link = LinkId::Accepted(self.next_accepted);
                self.conns.insert(link, conn);
                self.links.insert(conn, link);
                Some(Input::Accepted { link, remote })
            }
            NetEvent::Connected { conn } => {
                let link = *self.links.get(&conn)?;
                Some(Input::Connected { link })
            }
            NetEvent::Received { conn, bytes } => {
                let link = *self.links.get(&conn)?;
                Some(Input::Received { link, bytes })
            }
            NetEvent::Closed { conn, reason } => {
                let link = self.links.remove(&conn)?;
                debug!("{link:?} closed: {reason}");
                if self.conns.get(&link) == Some(&conn) {
                    self.conns.remove(&link);
                }
                Some(Input::Closed { link })
            }
            NetEvent::Datagram { from, .. } => {
                debug!("ignoring a datagram from {from}");
                None
            }
            NetEvent::Woken | NetEvent::Signal(_) => None,
        }
    }
}

fn run(args: Args) -> Result<()> {
    let registry = resolve(
        "registry",
        &with_default_port(&args.registry, REGISTRY_PORT),
    )?;
    let registry_udp = match &args.registry_udp {
        Some(s) => Some(resolve("registry UDP", s)?),
        None => None,
    };

    let mut reactor = Reactor::new(p2pchat_engine::Config::default()).context("starting")?;
    let listener = reactor
        .listen(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let listen = reactor
        .listener_addr(listener)
        .ok_or_else(|| anyhow!("listener has no address"))?;
    let udp_bind: SocketAddr = if registry.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let udp = reactor
        .bind_udp(udp_bind)
        .context("cannot bind a UDP socket")?;
    reactor.enable_signals().context("cannot handle signals")?;
    info!("listening for peers on {listen}");

    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let color = match args.color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => interactive && !no_color,
    };
    let _term_guard = TermGuard::save();
    let (tx, rx) = mpsc::channel();
    let waker = reactor.waker();
    let names = Arc::new(Mutex::new(BTreeSet::new()));
    let prompt = Arc::new(PromptSync::default());
    prompt.update("> ", None);
    let mut ui = if interactive {
        let mut rl = term::editor(Arc::clone(&names), Arc::clone(&prompt))
            .context("cannot start the line editor")?;
        let printer = rl
            .create_external_printer()
            .context("cannot start the line editor")?;
        term::spawn_editor(rl, tx, waker, Arc::clone(&prompt));
        // Bold, italic and OSC 8 links are terminal escapes too: `--color never` (or
        // NO_COLOR) turns them off with the colours.
        let style = Style {
            color,
            markup: color,
        };
        Ui {
            printer: Printer::External(Box::new(printer)),
            mode: if args.json {
                Mode::Json
            } else {
                Mode::Interactive(style)
            },
            paint_lines: false,
            bell: !args.json,
            timestamps: !args.no_timestamps && !args.json,
            me: None,
            names,
            prompt: Arc::clone(&prompt),
        }
    } else {
        term::spawn_line_reader(tx, waker);
        Ui {
            printer: Printer::Stdout,
            mode: if args.json { Mode::Json } else { Mode::Line },
            paint_lines: color && !args.json,
            bell: false,
            timestamps: false,
            me: None,
            names,
            prompt: Arc::clone(&prompt),
        }
    };

    let mut config = Config::new(registry, listen);
    config.registry_udp = registry_udp;
    config.degree = usize::from(args.degree);
    config.room_mode = match args.room_mode {
        RoomModeArg::Flood => RoomMode::Flood,
        RoomModeArg::Tree => RoomMode::Tree,
    };
    config.max_chats = usize::from(args.max_chats);
    config.chat_request_timeout = args.chat_timeout;
    config.registry_timeout = args.registry_timeout;

    // The clock is read here and in the loop below, nowhere else (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    let (start, wall) = (Instant::now(), SystemTime::now());
    let wall_ms = wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut node = Node::new(config, start, wall_ms, StdRng::from_os_rng());
    let mut net = Net {
        reactor,
        udp,
        conns: HashMap::new(),
        links: HashMap::new(),
        next_accepted: 0,
        feedback: Vec::new(),
    };
    let mut exit_by: Option<Instant> = None;
    let mut quit_requested = false;
    // Lines from the user acted on so far, for the editor's prompt (see `PromptSync`).
    let mut lines_done = 0u64;
    let mut events = Vec::new();
    let mut done = net.feed(&mut node, &mut ui, start, Input::Timeout);

    loop {
        if done && exit_by.is_none() {
            net.reactor.close_listeners();
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            exit_by = Some(now + EXIT_LINGER);
        }
        if let Some(by) = exit_by {
            if net.reactor.connection_count() == 0 {
                break;
            }
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            if now >= by {
                warn!("exiting with unflushed connections");
                break;
            }
        }
        let deadline = exit_by.or_else(|| node.poll_timeout());
        net.reactor
            .turn(deadline, &mut events)
            .context("event loop")?;
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        for event in events.drain(..) {
            if done {
                // Flushing before exit: refuse newcomers, let the rest close.
                if let NetEvent::Accepted { conn, .. } = event {
                    net.reactor.abort(conn);
                }
                continue;
            }
            match event {
                NetEvent::Woken => {
                    while let Ok(msg) = rx.try_recv() {
                        if let UiInput::Line(_) = msg {
                            lines_done += 1;
                        }
                        let command = match msg {
                            UiInput::Line(Ok(Some(command))) => command,
                            UiInput::Line(Ok(None)) => continue,
                            UiInput::Line(Err(e)) => {
                                ui.show(&NodeEvent::error(e.to_string()));
                                continue;
                            }
                            UiInput::Eof => Command::Quit(None),
                        };
                        quit_requested |= matches!(command, Command::Quit(_));
                        done |= net.feed(&mut node, &mut ui, now, Input::Command(command));
                    }
                }
                NetEvent::Signal(signal) => {
                    if quit_requested && signal != Signal::Hangup {
                        info!("second signal: exiting at once");
                        return Ok(());
                    }
                    quit_requested = true;
                    let quit = Input::Command(Command::Quit(None));
                    done |= net.feed(&mut node, &mut ui, now, quit);
                }
                other => {
                    if let Some(input) = net.input(other) {
                        done |= net.feed(&mut node, &mut ui, now, input);
                    }
                }
            }
        }
        if !done {
            done = net.feed(&mut node, &mut ui, now, Input::Timeout);
        }
        let settled = (!node.is_waiting_for_registry()).then_some(lines_done);
        prompt.update(&prompt_for(&node), settled);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_without_a_port_gets_15600() {
        assert_eq!(with_default_port("127.0.0.1", 15600), "127.0.0.1:15600");
        assert_eq!(with_default_port("127.0.0.1:9", 15600), "127.0.0.1:9");
        assert_eq!(with_default_port("example.org", 15600), "example.org:15600");
        assert_eq!(with_default_port("example.org:80", 15600), "example.org:80");
        assert_eq!(with_default_port("::1", 15600), "[::1]:15600");
        assert_eq!(with_default_port("[::1]:7", 15600), "[::1]:7");
        assert_eq!(with_default_port("[::1]", 15600), "[::1]:15600");
    }

    #[test]
    fn mentions_are_whole_words() {
        assert!(mentions("hey alice, look", "alice"));
        assert!(mentions("ALICE!", "alice"));
        assert!(!mentions("malice aforethought", "alice"));
        assert!(!mentions("alice_b", "alice"));
    }
}
