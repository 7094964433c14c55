//! Scenario tests of [`Node`] with a virtual clock (quinn's `src/tests` style).
//!
//! [`World`] wires real `Node`s together in memory: a `Connect` to another node's listen address
//! becomes an `Accepted` there and a `Connected` here, `Send` on one end becomes `Received` on
//! the other, `Close` becomes `Closed` on both. The registry side of each node's registry link
//! is a small script ([`World::registry_reply`]) that answers like the registry does, so the
//! tests can also play it by hand (drop it, refuse a resume) when they need to.

mod chat;
mod registry;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2pchat_protocol::{Frame, FrameDecoder, Msg, Presence, VERSION};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::command::{parse, Command};
use crate::{CloseReason, Config, Input, LinkId, Node, NodeEvent, Output};

pub(crate) const REGISTRY: &str = "10.0.0.1:15600";
pub(crate) const WALL_MS: u64 = 1_700_000_000_000;

pub(crate) fn registry_addr() -> SocketAddr {
    REGISTRY.parse().unwrap()
}

/// The bytes of one frame.
pub(crate) fn bytes(id: u32, msg: Msg) -> Bytes {
    Frame::new(id, msg).to_bytes()
}

/// Decodes every whole frame in a chunk of stream bytes.
pub(crate) fn frames(chunk: &[u8]) -> Vec<Frame> {
    let mut d = FrameDecoder::new(1 << 20);
    d.push(chunk);
    let mut out = Vec::new();
    while let Some(f) = d.next_frame().unwrap() {
        out.push(f);
    }
    out
}

/// The heartbeat key the scripted registry hands to node `i` in session generation `gen`.
pub(crate) fn key_of(i: usize, gen: u8) -> [u8; 32] {
    [i as u8 * 16 + gen; 32]
}

/// One node and what it produced.
pub(crate) struct Peer {
    pub(crate) node: Node,
    pub(crate) listen: SocketAddr,
    pub(crate) events: Vec<NodeEvent>,
    pub(crate) datagrams: Vec<(Instant, SocketAddr, Bytes)>,
    pub(crate) closes: Vec<(LinkId, CloseReason)>,
    pub(crate) registry_link: Option<LinkId>,
    /// Session generation at the scripted registry (bumped at every login/resume).
    pub(crate) gen: u8,
    pub(crate) last_resume: Option<Msg>,
    pub(crate) exited: bool,
    pub(crate) dead: bool,
}

impl Peer {
    /// Takes the events seen so far.
    pub(crate) fn take_events(&mut self) -> Vec<NodeEvent> {
        std::mem::take(&mut self.events)
    }
}

/// Real nodes, an in-memory network between them, a scripted registry, and a virtual clock.
pub(crate) struct World {
    pub(crate) t0: Instant,
    pub(crate) now: Instant,
    pub(crate) peers: Vec<Peer>,
    /// (node, link) -> (node, link) for every open peer link, both directions.
    pipes: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    next_accept: u64,
    queue: VecDeque<(usize, Input)>,
    /// Online users at the scripted registry.
    pub(crate) online: HashMap<String, usize>,
    pub(crate) registry_up: bool,
    /// When set, the scripted registry leaves resumes unanswered.
    pub(crate) hold_resume: bool,
    /// When set, the scripted registry refuses resumes with 109.
    pub(crate) refuse_resume: bool,
    /// When set, the scripted registry answers nothing at all.
    pub(crate) registry_silent: bool,
    /// Accounts at the scripted registry.
    pub(crate) registered: BTreeSet<String>,
    /// Raw frames the scripted registry received, per node.
    pub(crate) registry_seen: Vec<Vec<Frame>>,
}

impl World {
    pub(crate) fn new() -> World {
        // The test's one clock read; everything after is t0 + Duration.
        #[allow(clippy::disallowed_methods)]
        // The test's one clock read; everything after is t0 + Duration.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        World {
            t0,
            now: t0,
            peers: Vec::new(),
            pipes: BTreeMap::new(),
            next_accept: 0,
            queue: VecDeque::new(),
            online: HashMap::new(),
            registry_up: true,
            hold_resume: false,
            refuse_resume: false,
            registry_silent: false,
            registered: BTreeSet::new(),
            registry_seen: Vec::new(),
        }
    }

    pub(crate) fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Adds a node (listening on 10.0.0.(i+2):4000) and lets it reach the registry.
    pub(crate) fn add(&mut self, tweak: impl FnOnce(&mut Config)) -> usize {
        let i = self.peers.len();
        let listen: SocketAddr = format!("10.0.0.{}:4000", i + 2).parse().unwrap();
        let mut config = Config::new(registry_addr(), listen);
        tweak(&mut config);
        let rng = StdRng::seed_from_u64(i as u64);
        let node = Node::new(config, self.now, WALL_MS, rng);
        self.peers.push(Peer {
            node,
            listen,
            events: Vec::new(),
            datagrams: Vec::new(),
            closes: Vec::new(),
            registry_link: None,
            gen: 0,
            last_resume: None,
            exited: false,
            dead: false,
        });
        self.registry_seen.push(Vec::new());
        self.input(i, Input::Timeout);
        i
    }

    /// Adds a node and logs it in as `name`.
    pub(crate) fn add_user(&mut self, name: &str, tweak: impl FnOnce(&mut Config)) -> usize {
        let i = self.add(tweak);
        self.registered.insert(name.to_string());
        self.line(i, &format!("/login {name} password1"));
        let events = self.peers[i].take_events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, NodeEvent::LoggedIn { .. })),
            "{events:?}"
        );
        i
    }

    /// Types a line on node `i`.
    pub(crate) fn line(&mut self, i: usize, line: &str) {
        let command: Command = parse(line).unwrap().unwrap();
        self.input(i, Input::Command(command));
    }

    /// Feeds one input to node `i`, then runs the network until it is quiet.
    pub(crate) fn input(&mut self, i: usize, input: Input) {
        self.queue.push_back((i, input));
        self.pump();
    }

    /// Moves the clock to `t` and fires every node's timers.
    pub(crate) fn advance_to(&mut self, t: Instant) {
        assert!(t >= self.now);
        self.now = t;
        for i in 0..self.peers.len() {
            self.queue.push_back((i, Input::Timeout));
        }
        self.pump();
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        self.advance_to(self.now + d);
    }

    /// Steps from deadline to deadline of all nodes until `limit`.
    pub(crate) fn run_until(&mut self, limit: Instant) {
        loop {
            let next = self
                .peers
                .iter()
                .filter(|p| !p.dead)
                .filter_map(|p| p.node.poll_timeout())
                .min();
            match next {
                Some(t) if t <= limit => self.advance_to(t.max(self.now)),
                _ => break,
            }
        }
        self.advance_to(limit);
    }

    pub(crate) fn pump(&mut self) {
        let mut guard = 0;
        while let Some((i, input)) = self.queue.pop_front() {
            guard += 1;
            assert!(guard < 100_000, "network never quiets down");
            if self.peers[i].dead {
                continue;
            }
            let now = self.now;
            self.peers[i].node.handle_input(now, input);
            while let Some(out) = self.peers[i].node.poll_output() {
                self.carry_out(i, out);
            }
        }
    }

    fn carry_out(&mut self, i: usize, out: Output) {
        match out {
            Output::Connect { link, addr } => {
                if addr == registry_addr() {
                    if self.registry_up {
                        self.peers[i].registry_link = Some(link);
                        self.queue.push_back((i, Input::Connected { link }));
                    } else {
                        self.queue.push_back((i, Input::Closed { link }));
                    }
                    return;
                }
                let target = self.peers.iter().position(|p| p.listen == addr && !p.dead);
                let Some(j) = target else {
                    self.queue.push_back((i, Input::Closed { link }));
                    return;
                };
                self.next_accept += 1;
                let acc = LinkId::Accepted(self.next_accept);
                self.pipes.insert((i, link), (j, acc));
                self.pipes.insert((j, acc), (i, link));
                let remote = self.peers[i].listen;
                self.queue
                    .push_back((j, Input::Accepted { link: acc, remote }));
                self.queue.push_back((i, Input::Connected { link }));
            }
            Output::Send { link, bytes } => {
                if Some(link) == self.peers[i].registry_link {
                    self.registry_reply(i, link, &bytes);
                } else if let Some(&(j, other)) = self.pipes.get(&(i, link)) {
                    self.queue
                        .push_back((j, Input::Received { link: other, bytes }));
                }
            }
            Output::Close { link, reason } => {
                self.peers[i].closes.push((link, reason));
                if Some(link) == self.peers[i].registry_link {
                    self.peers[i].registry_link = None;
                } else if let Some((j, other)) = self.pipes.remove(&(i, link)) {
                    self.pipes.remove(&(j, other));
                    self.queue.push_back((j, Input::Closed { link: other }));
                }
                self.queue.push_back((i, Input::Closed { link }));
            }
            Output::SendTo { to, bytes } => self.peers[i].datagrams.push((self.now, to, bytes)),
            Output::Event(e) => self.peers[i].events.push(e),
            Output::Exit => self.peers[i].exited = true,
        }
    }

    /// Connects a stranger to node `i`'s listener; returns the link as node `i` knows it.
    pub(crate) fn stranger_connects(&mut self, i: usize) -> LinkId {
        self.next_accept += 1;
        let link = LinkId::Accepted(self.next_accept);
        let remote: SocketAddr = "10.9.9.9:5555".parse().unwrap();
        self.input(i, Input::Accepted { link, remote });
        link
    }

    /// The peer link node `i` has open to node `j`, if any.
    pub(crate) fn pipe(&self, i: usize, j: usize) -> Option<LinkId> {
        self.pipes
            .iter()
            .find(|((a, _), (b, _))| *a == i && *b == j)
            .map(|((_, l), _)| *l)
    }

    pub(crate) fn pipe_count(&self) -> usize {
        self.pipes.len() / 2
    }

    /// Node `i` dies without a word (kill -9): its connections close under the others.
    pub(crate) fn kill(&mut self, i: usize) {
        self.peers[i].dead = true;
        let gone: Vec<_> = self
            .pipes
            .iter()
            .filter(|((a, _), _)| *a == i)
            .map(|(k, v)| (*k, *v))
            .collect();
        for (k, (j, other)) in gone {
            self.pipes.remove(&k);
            self.pipes.remove(&(j, other));
            self.queue.push_back((j, Input::Closed { link: other }));
        }
        self.online.retain(|_, v| *v != i);
        self.pump();
    }

    /// The registry dies: every registry link closes, and connects fail until `registry_up`.
    pub(crate) fn kill_registry(&mut self) {
        self.registry_up = false;
        self.online.clear();
        for i in 0..self.peers.len() {
            if let Some(link) = self.peers[i].registry_link.take() {
                self.queue.push_back((i, Input::Closed { link }));
            }
        }
        self.pump();
    }

    /// The scripted registry's answers to node `i`.
    fn registry_reply(&mut self, i: usize, link: LinkId, chunk: &[u8]) {
        for frame in frames(chunk) {
            self.registry_seen[i].push(frame.clone());
            if self.registry_silent {
                continue;
            }
            let reply = match frame.msg {
                Msg::Hello { .. } => Some(Msg::Welcome {
                    version: VERSION,
                    name: "test-registry".into(),
                }),
                Msg::Register { name, .. } => Some(if self.registered.insert(name) {
                    Msg::Ok
                } else {
                    error(101, "username already taken")
                }),
                Msg::Login { password, .. } if password == "wrongpass" => {
                    Some(error(104, "invalid username or password"))
                }
                Msg::Login { name, .. } => Some(self.logged_in(i, name)),
                ref resume @ Msg::Resume { ref name, .. } => {
                    self.peers[i].last_resume = Some(resume.clone());
                    if self.refuse_resume {
                        Some(error(109, "resume token invalid or expired"))
                    } else if self.hold_resume {
                        None
                    } else {
                        Some(self.logged_in(i, name.clone()))
                    }
                }
                Msg::Search { name } => {
                    let presence = match self.online.get(&name) {
                        Some(&j) => Presence::Online(self.peers[j].listen),
                        None if self.registered.contains(&name) => Presence::Offline,
                        None => Presence::NotFound,
                    };
                    Some(Msg::SearchResult { name, presence })
                }
                Msg::Logout => {
                    self.online.retain(|_, v| *v != i);
                    Some(Msg::Ok)
                }
                Msg::Ping => Some(Msg::Pong),
                Msg::ListOnline { after, .. } => {
                    // Pages of two, to exercise paging.
                    let mut names: Vec<String> = self.online.keys().cloned().collect();
                    names.sort();
                    let rest: Vec<String> = names.into_iter().filter(|n| *n > after).collect();
                    Some(Msg::OnlineList {
                        more: rest.len() > 2,
                        names: rest.into_iter().take(2).collect(),
                    })
                }
                _ => None,
            };
            if let Some(msg) = reply {
                let id = frame.id;
                self.queue.push_back((
                    i,
                    Input::Received {
                        link,
                        bytes: bytes(id, msg),
                    },
                ));
            }
        }
    }

    fn logged_in(&mut self, i: usize, name: String) -> Msg {
        self.peers[i].gen += 1;
        let gen = self.peers[i].gen;
        self.online.insert(name.clone(), i);
        Msg::LoggedIn {
            name,
            session: (i as u64) << 8 | u64::from(gen),
            heartbeat_key: key_of(i, gen),
            heartbeat_interval_ms: 5_000,
            heartbeat_timeout_ms: 15_000,
            resume_token: vec![i as u8, gen],
            udp_port: 15_500,
            advertised: self.peers[i].listen,
        }
    }
}

fn error(code: u16, message: &str) -> Msg {
    Msg::Error {
        code,
        message: message.into(),
    }
}
