//! Reference-model property test: random sequences of account, presence and room operations,
//! with expiries on the virtual clock and restarts, applied both to the real [`Registry`] (with
//! the real SQLite store, through [`Harness`]) and to a plain model (maps and vectors), which
//! must agree step by step on every reply and on what can be observed.
//!
//! The model is deliberately naive: it says what the protocol promises (DESIGN §6-§7), not how
//! the registry does it. Only the abuse limits are switched off (rate limits and login backoff
//! would refuse the random sequences for reasons the model does not track); they have their own
//! tests. Clients that are not logged in are disconnected before the clock moves, so pre-login
//! deadlines never fire: only heartbeat expiry is modelled.

use std::collections::BTreeMap;
use std::time::Duration;

use p2pchat_protocol::{names, status, MemberInfo, Msg, Presence};
use proptest::prelude::*;

use super::{login as login_msg, Harness, LoggedIn};
use crate::io::{ConnId, Input};
use crate::{Config, Registry};

/// Names used for accounts and rooms: four valid ones and one invalid. Distinct in every case
/// fold, so the model need not know how names compare.
const NAMES: &[&str] = &["alice", "bob", "carol", "dave", "no way"];
const ROOMS: &[&str] = &["lobby", "dev", "bad room"];
const PASSWORD: &str = "password1";
/// A valid password that is not the one every account is registered with.
const WRONG: &str = "password2";
const CLIENTS: usize = 3;
const TIMEOUT_MS: u64 = 20_000;
/// Time moves in steps of 3 s, so no deadline (a multiple of 20 s after a step) is ever hit
/// exactly: the model need not know on which side of a tie the registry falls.
const STEP_MS: u64 = 3_000;

#[derive(Debug, Clone)]
enum Op {
    Register {
        c: usize,
        name: usize,
        good_password: bool,
    },
    Login {
        c: usize,
        name: usize,
        right_password: bool,
    },
    Logout {
        c: usize,
    },
    Rename {
        c: usize,
        name: usize,
    },
    Heartbeat {
        c: usize,
    },
    Advance {
        steps: u64,
    },
    Disconnect {
        c: usize,
    },
    Restart,
    Create {
        c: usize,
        room: usize,
    },
    Join {
        c: usize,
        room: usize,
    },
    Leave {
        c: usize,
        room: usize,
    },
    Kick {
        c: usize,
        room: usize,
        name: usize,
    },
    Promote {
        c: usize,
        room: usize,
        name: usize,
    },
    Members {
        c: usize,
        room: usize,
    },
    Search {
        c: usize,
        name: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CLIENTS;
    let n = 0..NAMES.len();
    let r = 0..ROOMS.len();
    prop_oneof![
        1 => (c.clone(), n.clone(), prop::bool::weighted(0.9))
            .prop_map(|(c, name, good_password)| Op::Register { c, name, good_password }),
        5 => (c.clone(), n.clone(), prop::bool::weighted(0.8))
            .prop_map(|(c, name, right_password)| Op::Login { c, name, right_password }),
        1 => c.clone().prop_map(|c| Op::Logout { c }),
        1 => (c.clone(), n.clone()).prop_map(|(c, name)| Op::Rename { c, name }),
        4 => c.clone().prop_map(|c| Op::Heartbeat { c }),
        1 => (1..=5u64).prop_map(|steps| Op::Advance { steps }),
        1 => c.clone().prop_map(|c| Op::Disconnect { c }),
        1 => Just(Op::Restart),
        2 => (c.clone(), r.clone()).prop_map(|(c, room)| Op::Create { c, room }),
        5 => (c.clone(), r.clone()).prop_map(|(c, room)| Op::Join { c, room }),
        2 => (c.clone(), r.clone()).prop_map(|(c, room)| Op::Leave { c, room }),
        2 => (c.clone(), r.clone(), n.clone()).prop_map(|(c, room, name)| Op::Kick { c, room, name }),
        2 => (c.clone(), r.clone(), n.clone())
            .prop_map(|(c, room, name)| Op::Promote { c, room, name }),
        2 => (c.clone(), r.clone()).prop_map(|(c, room)| Op::Members { c, room }),
        2 => (c, n).prop_map(|(c, name)| Op::Search { c, name }),
    ]
}

/// What a reply says, reduced to what the model predicts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Ok,
    Error(u16),
    LoggedIn,
    /// Online peers by name, in join order.
    Joined(Vec<String>),
    /// Members: name, admin, online; in join order.
    Members(Vec<(String, bool, bool)>),
    /// `Some(true)` online, `Some(false)` offline, `None` not found.
    Found(Option<bool>),
}

fn reduce(msg: &Msg) -> Reply {
    match msg {
        Msg::Ok => Reply::Ok,
        Msg::Error { code, .. } => Reply::Error(*code),
        Msg::LoggedIn { .. } => Reply::LoggedIn,
        Msg::RoomJoined { peers, .. } => {
            Reply::Joined(peers.iter().map(|p| p.name.clone()).collect())
        }
        Msg::MemberList { members, .. } => Reply::Members(
            members
                .iter()
                .map(
                    |MemberInfo {
                         name,
                         admin,
                         online,
                     }| (name.clone(), *admin, *online),
                )
                .collect(),
        ),
        Msg::SearchResult { presence, .. } => Reply::Found(match presence {
            Presence::Online(_) => Some(true),
            Presence::Offline => Some(false),
            Presence::NotFound => None,
        }),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[derive(Debug, Clone)]
struct Member {
    account: usize,
    admin: bool,
    seq: u64,
}

/// The plain model.
#[derive(Debug, Default)]
struct Model {
    /// Account names by account index (renames change them in place).
    accounts: Vec<String>,
    /// Online accounts: which client holds the session and when it expires.
    online: BTreeMap<usize, (usize, u64)>,
    /// Per client: connected, and logged in as which account.
    clients: [(bool, Option<usize>); CLIENTS],
    rooms: BTreeMap<String, Vec<Member>>,
    next_seq: u64,
    now_ms: u64,
}

impl Model {
    fn account(&self, name: &str) -> Option<usize> {
        self.accounts.iter().position(|a| a == name)
    }

    fn go_offline(&mut self, account: usize) {
        if let Some((c, _)) = self.online.remove(&account) {
            self.clients[c].1 = None;
        }
    }

    fn disconnect(&mut self, c: usize) {
        if let Some(account) = self.clients[c].1 {
            self.go_offline(account);
        }
        self.clients[c] = (false, None);
    }

    /// If a room has members but no admin, its oldest member becomes admin.
    fn ensure_admin(&mut self, room: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            if !members.iter().any(|m| m.admin) {
                if let Some(oldest) = members.iter_mut().min_by_key(|m| m.seq) {
                    oldest.admin = true;
                }
            }
        }
    }

    fn logged_in(&self, c: usize) -> Result<usize, Reply> {
        self.clients[c].1.ok_or(Reply::Error(status::NOT_LOGGED_IN))
    }

    fn room_of(&self, c: usize, room: &str) -> Result<usize, Reply> {
        let account = self.logged_in(c)?;
        if !self.rooms.contains_key(room) {
            return Err(Reply::Error(status::NO_SUCH_ROOM));
        }
        Ok(account)
    }

    /// Kick and promote share their checks: the target's account index.
    fn admin_action(&self, c: usize, room: &str, target: &str) -> Result<usize, Reply> {
        let account = self.room_of(c, room)?;
        let members = &self.rooms[room];
        let Some(me) = members.iter().find(|m| m.account == account) else {
            return Err(Reply::Error(status::NOT_A_MEMBER));
        };
        if !me.admin {
            return Err(Reply::Error(status::NOT_ADMIN));
        }
        self.account(target)
            .filter(|t| members.iter().any(|m| m.account == *t))
            .ok_or(Reply::Error(status::USER_NOT_IN_ROOM))
    }

    fn online_peers(&self, room: &str, except: usize) -> Vec<String> {
        let mut members = self.rooms[room].clone();
        members.sort_by_key(|m| m.seq);
        members
            .iter()
            .filter(|m| m.account != except && self.online.contains_key(&m.account))
            .map(|m| self.accounts[m.account].clone())
            .collect()
    }

    /// Applies a request from client `c` (connected) and says the reply.
    fn request(&mut self, c: usize, op: &Op) -> Reply {
        self.try_request(c, op).unwrap_or_else(|e| e)
    }

    fn try_request(&mut self, c: usize, op: &Op) -> Result<Reply, Reply> {
        Ok(match *op {
            Op::Register {
                name,
                good_password,
                ..
            } => {
                let name = NAMES[name];
                if !names::is_valid_name(name) {
                    return Err(Reply::Error(status::INVALID_NAME));
                }
                if !good_password {
                    return Err(Reply::Error(status::INVALID_PASSWORD));
                }
                if self.account(name).is_some() {
                    return Err(Reply::Error(status::NAME_TAKEN));
                }
                self.accounts.push(name.to_string());
                Reply::Ok
            }
            Op::Login {
                name,
                right_password,
                ..
            } => {
                if self.clients[c].1.is_some() {
                    return Err(Reply::Error(status::ALREADY_LOGGED_IN));
                }
                let account = self
                    .account(NAMES[name])
                    .filter(|_| right_password)
                    .ok_or(Reply::Error(status::BAD_CREDENTIALS))?;
                if self.online.contains_key(&account) {
                    return Err(Reply::Error(status::ALREADY_ONLINE));
                }
                self.online.insert(account, (c, self.now_ms + TIMEOUT_MS));
                self.clients[c].1 = Some(account);
                Reply::LoggedIn
            }
            Op::Logout { .. } => {
                let account = self.logged_in(c)?;
                self.go_offline(account);
                Reply::Ok
            }
            Op::Rename { name, .. } => {
                let account = self.logged_in(c)?;
                let name = NAMES[name];
                if !names::is_valid_name(name) {
                    return Err(Reply::Error(status::INVALID_NAME));
                }
                if self.accounts[account] == name {
                    return Ok(Reply::Ok);
                }
                if self.account(name).is_some() {
                    return Err(Reply::Error(status::NAME_TAKEN));
                }
                self.accounts[account] = name.to_string();
                Reply::Ok
            }
            Op::Create { room, .. } => {
                let account = self.logged_in(c)?;
                let room = ROOMS[room];
                if !names::is_valid_name(room) {
                    return Err(Reply::Error(status::INVALID_ROOM_NAME));
                }
                if self.rooms.contains_key(room) {
                    return Err(Reply::Error(status::ROOM_EXISTS));
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                self.rooms.insert(
                    room.to_string(),
                    vec![Member {
                        account,
                        admin: true,
                        seq,
                    }],
                );
                Reply::Ok
            }
            Op::Join { room, .. } => {
                let room = ROOMS[room];
                let account = self.room_of(c, room)?;
                let members = self.rooms.get_mut(room).expect("checked above");
                if !members.iter().any(|m| m.account == account) {
                    let admin = members.is_empty();
                    members.push(Member {
                        account,
                        admin,
                        seq: self.next_seq,
                    });
                    self.next_seq += 1;
                }
                Reply::Joined(self.online_peers(room, account))
            }
            Op::Leave { room, .. } => {
                let room = ROOMS[room];
                let account = self.room_of(c, room)?;
                let members = self.rooms.get_mut(room).expect("checked above");
                let before = members.len();
                members.retain(|m| m.account != account);
                if members.len() == before {
                    return Err(Reply::Error(status::NOT_A_MEMBER));
                }
                self.ensure_admin(room);
                Reply::Ok
            }
            Op::Kick { room, name, .. } => {
                let room = ROOMS[room];
                let target = self.admin_action(c, room, NAMES[name])?;
                if let Some(members) = self.rooms.get_mut(room) {
                    members.retain(|m| m.account != target);
                }
                self.ensure_admin(room);
                Reply::Ok
            }
            Op::Promote { room, name, .. } => {
                let room = ROOMS[room];
                let target = self.admin_action(c, room, NAMES[name])?;
                if let Some(m) = self
                    .rooms
                    .get_mut(room)
                    .and_then(|ms| ms.iter_mut().find(|m| m.account == target))
                {
                    m.admin = true;
                }
                Reply::Ok
            }
            Op::Members { room, .. } => {
                let room = ROOMS[room];
                self.room_of(c, room)?;
                let mut members = self.rooms[room].clone();
                members.sort_by_key(|m| m.seq);
                Reply::Members(
                    members
                        .iter()
                        .map(|m| {
                            (
                                self.accounts[m.account].clone(),
                                m.admin,
                                self.online.contains_key(&m.account),
                            )
                        })
                        .collect(),
                )
            }
            Op::Search { name, .. } => {
                self.logged_in(c)?;
                Reply::Found(
                    self.account(NAMES[name])
                        .map(|a| self.online.contains_key(&a)),
                )
            }
            _ => unreachable!("not a request: {op:?}"),
        })
    }
}

/// The real registry's side: the harness, and each client's connection and session.
struct Real {
    h: Harness,
    conns: [Option<ConnId>; CLIENTS],
    sessions: [Option<(LoggedIn, u64)>; CLIENTS],
    next_conn: u64,
    boots: u64,
}

fn config() -> Config {
    Config {
        pbkdf2_iterations: 10,
        auth_rate_per_min: 1_000_000,
        auth_burst: 1_000_000,
        backoff_after: 1_000_000,
        max_page: 100,
        ..Config::default()
    }
    .with_heartbeat_timeout(Duration::from_millis(TIMEOUT_MS))
}

impl Real {
    fn new() -> Real {
        Real {
            h: Harness::new(config()),
            conns: [None; CLIENTS],
            sessions: [None, None, None],
            next_conn: 1,
            boots: 0,
        }
    }

    /// The client's connection, opened (with its hello) if it has none.
    fn conn(&mut self, c: usize) -> ConnId {
        if let Some(conn) = self.conns[c] {
            if !self.h.closed.contains_key(&conn) {
                return conn;
            }
        }
        let conn = self.h.connect(self.next_conn);
        self.next_conn += 1;
        self.conns[c] = Some(conn);
        conn
    }

    fn disconnect(&mut self, c: usize) {
        if let Some(conn) = self.conns[c].take() {
            if !self.h.closed.contains_key(&conn) {
                self.h.input(Input::Closed { conn });
            }
        }
        self.sessions[c] = None;
    }

    fn request(&mut self, c: usize, op: &Op) -> Reply {
        let msg = match *op {
            Op::Register {
                name,
                good_password,
                ..
            } => Msg::Register {
                name: NAMES[name].into(),
                password: if good_password { PASSWORD } else { "short" }.into(),
            },
            Op::Login {
                name,
                right_password,
                ..
            } => login_msg(NAMES[name], if right_password { PASSWORD } else { WRONG }),
            Op::Logout { .. } => Msg::Logout,
            Op::Rename { name, .. } => Msg::Rename {
                name: NAMES[name].into(),
            },
            Op::Create { room, .. } => Msg::CreateRoom {
                room: ROOMS[room].into(),
            },
            Op::Join { room, .. } => Msg::JoinRoom {
                room: ROOMS[room].into(),
            },
            Op::Leave { room, .. } => Msg::LeaveRoom {
                room: ROOMS[room].into(),
            },
            Op::Kick { room, name, .. } => Msg::Kick {
                room: ROOMS[room].into(),
                name: NAMES[name].into(),
            },
            Op::Promote { room, name, .. } => Msg::Promote {
                room: ROOMS[room].into(),
                name: NAMES[name].into(),
            },
            Op::Members { room, .. } => Msg::ListMembers {
                room: ROOMS[room].into(),
            },
            Op::Search { name, .. } => Msg::Search {
                name: NAMES[name].into(),
            },
            _ => unreachable!("not a request: {op:?}"),
        };
        let conn = self.conn(c);
        let reply = self.h.request(conn, msg);
        match &reply {
            Msg::LoggedIn {
                session,
                heartbeat_key,
                resume_token,
                ..
            } => {
                let s = LoggedIn {
                    session: *session,
                    key: *heartbeat_key,
                    token: resume_token.clone(),
                };
                self.sessions[c] = Some((s, 0));
            }
            Msg::Ok if matches!(op, Op::Logout { .. }) => self.sessions[c] = None,
            _ => {}
        }
        reduce(&reply)
    }

    fn heartbeat(&mut self, c: usize) {
        if let Some((session, counter)) = &mut self.sessions[c] {
            *counter += 1;
            let (session, counter) = (
                LoggedIn {
                    session: session.session,
                    key: session.key,
                    token: Vec::new(),
                },
                *counter,
            );
            self.h.heartbeat(&session, counter);
        }
    }

    fn restart(&mut self) {
        let snapshot = self.h.store.read_snapshot().expect("read the store back");
        self.boots += 1;
        let now = self.h.now;
        self.h.reg = Registry::new(
            config(),
            &snapshot,
            100 + self.boots,
            now,
            1_700_000_000_000,
        );
        self.h.inbox.clear();
        self.h.closed.clear();
        self.h.decoders.clear();
        self.conns = [None; CLIENTS];
        self.sessions = [None, None, None];
    }

    /// Whether the client's connection was closed by the registry (an expiry).
    fn closed(&self, c: usize) -> bool {
        self.conns[c].is_some_and(|conn| self.h.closed.contains_key(&conn))
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut real = Real::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Heartbeat { c } => {
                if let Some(account) = model.clients[c].1 {
                    if let Some(o) = model.online.get_mut(&account) {
                        o.1 = model.now_ms + TIMEOUT_MS;
                    }
                }
                real.heartbeat(c);
            }
            Op::Advance { steps } => {
                // Clients that are not logged in leave first: pre-login deadlines are not
                // modelled.
                for c in 0..CLIENTS {
                    if model.clients[c].1.is_none() {
                        model.disconnect(c);
                        real.disconnect(c);
                    }
                }
                model.now_ms += steps * STEP_MS;
                let now = model.now_ms;
                let expired: Vec<usize> = model
                    .online
                    .iter()
                    .filter(|(_, (_, deadline))| *deadline <= now)
                    .map(|(a, _)| *a)
                    .collect();
                for account in expired {
                    let (c, _) = model.online[&account];
                    model.disconnect(c);
                }
                let t = real.h.at(now);
                real.h.advance_to(t);
                for c in 0..CLIENTS {
                    prop_assert_eq!(
                        real.closed(c),
                        !model.clients[c].0 && real.conns[c].is_some(),
                        "step {}: client {} expiry differs",
                        step,
                        c
                    );
                    if real.closed(c) {
                        real.conns[c] = None;
                        real.sessions[c] = None;
                    }
                }
            }
            Op::Disconnect { c } => {
                model.disconnect(c);
                real.disconnect(c);
            }
            Op::Restart => {
                for c in 0..CLIENTS {
                    model.clients[c] = (false, None);
                }
                model.online.clear();
                real.restart();
            }
            Op::Register { c, .. }
            | Op::Login { c, .. }
            | Op::Logout { c }
            | Op::Rename { c, .. }
            | Op::Create { c, .. }
            | Op::Join { c, .. }
            | Op::Leave { c, .. }
            | Op::Kick { c, .. }
            | Op::Promote { c, .. }
            | Op::Members { c, .. }
            | Op::Search { c, .. } => {
                model.clients[c].0 = true;
                let expected = model.request(c, op);
                let got = real.request(c, op);
                prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            }
        }
        // Observable state after every step.
        prop_assert_eq!(
            real.h.reg.account_count(),
            model.accounts.len(),
            "step {}",
            step
        );
        prop_assert_eq!(
            real.h.reg.online_count(),
            model.online.len(),
            "step {}",
            step
        );
        prop_assert_eq!(real.h.reg.room_count(), model.rooms.len(), "step {}", step);
        for (i, name) in model.accounts.iter().enumerate() {
            prop_assert_eq!(
                real.h.reg.is_online(name),
                model.online.contains_key(&i),
                "step {}: is_online({})",
                step,
                name
            );
        }
        // No request is left unanswered and no job hangs.
        prop_assert_eq!(real.h.reg.pending_jobs(), 0);
    }
    Ok(())
}

/// Registers alice, bob and carol, logs client `i` in as the `i`th of them, and alice creates
/// the lobby.
fn prelude() -> Vec<Op> {
    let mut ops: Vec<Op> = (0..CLIENTS)
        .map(|c| Op::Register {
            c,
            name: c,
            good_password: true,
        })
        .collect();
    ops.extend((0..CLIENTS).map(|c| Op::Login {
        c,
        name: c,
        right_password: true,
    }));
    ops.push(Op::Create { c: 0, room: 0 });
    ops
}

proptest! {
    // Each case runs a real SQLite store (fsync per commit): keep the count modest so the test
    // stays within a few seconds in CI.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn registry_agrees_with_the_model(ops in prop::collection::vec(op(), 1..60)) {
        // Start from three users logged in, so the random steps mostly exercise logged-in
        // paths rather than "not logged in".
        let mut all = prelude();
        all.extend(ops);
        run(&all)?;
    }
}

/// A fixed sequence through every operation, so the model's agreement on the interesting paths
/// (succession, expiry, restart) does not depend on what the random cases happen to draw.
#[test]
fn registry_agrees_with_the_model_on_a_fixed_story() {
    let ops = vec![
        Op::Register {
            c: 0,
            name: 0,
            good_password: true,
        },
        Op::Register {
            c: 1,
            name: 1,
            good_password: true,
        },
        Op::Register {
            c: 2,
            name: 2,
            good_password: true,
        },
        Op::Register {
            c: 2,
            name: 4,
            good_password: true,
        },
        Op::Register {
            c: 2,
            name: 3,
            good_password: false,
        },
        Op::Login {
            c: 0,
            name: 0,
            right_password: true,
        },
        Op::Login {
            c: 1,
            name: 1,
            right_password: false,
        },
        Op::Login {
            c: 1,
            name: 1,
            right_password: true,
        },
        Op::Login {
            c: 2,
            name: 0,
            right_password: true,
        },
        Op::Create { c: 0, room: 0 },
        Op::Create { c: 1, room: 0 },
        Op::Create { c: 1, room: 2 },
        Op::Join { c: 1, room: 0 },
        Op::Members { c: 1, room: 0 },
        Op::Kick {
            c: 1,
            room: 0,
            name: 0,
        },
        Op::Promote {
            c: 0,
            room: 0,
            name: 1,
        },
        Op::Leave { c: 0, room: 0 },
        Op::Members { c: 1, room: 0 },
        Op::Rename { c: 1, name: 3 },
        Op::Search { c: 0, name: 3 },
        Op::Heartbeat { c: 0 },
        Op::Advance { steps: 4 },
        Op::Heartbeat { c: 0 },
        Op::Advance { steps: 4 },
        Op::Search { c: 0, name: 3 },
        // Expiry edges: 18 s after a heartbeat a session lives, 21 s after it is gone.
        Op::Login {
            c: 1,
            name: 3,
            right_password: true,
        },
        Op::Heartbeat { c: 0 },
        Op::Heartbeat { c: 1 },
        Op::Advance { steps: 3 },
        Op::Heartbeat { c: 0 },
        Op::Advance { steps: 3 },
        Op::Search { c: 0, name: 3 },
        Op::Advance { steps: 1 },
        Op::Search { c: 0, name: 3 },
        Op::Restart,
        Op::Login {
            c: 2,
            name: 3,
            right_password: true,
        },
        Op::Members { c: 2, room: 0 },
        Op::Join { c: 2, room: 1 },
        Op::Logout { c: 2 },
        Op::Logout { c: 2 },
    ];
    if let Err(e) = run(&ops) {
        panic!("{e}");
    }
}

/// Registers and logs in alice, who creates and joins a room.
fn short_story(h: &mut Harness) {
    let conn = h.connect(1);
    h.register(conn, "alice");
    h.login(conn, "alice");
    let reply = h.request(
        conn,
        Msg::CreateRoom {
            room: "lobby".into(),
        },
    );
    assert_eq!(reply, Msg::Ok);
}

/// `SqliteStore::clear` (which the `registry_session` fuzz target uses to get a fresh store per
/// input cheaply) leaves a store that behaves exactly like a new one: ids and the join counter
/// start again, so the same story writes the same rows.
#[test]
fn a_cleared_store_is_a_new_store() {
    let mut fresh = Harness::new(Harness::config());
    short_story(&mut fresh);
    let expected = fresh.store.read_snapshot().unwrap();

    let mut reused = Harness::new(Harness::config());
    short_story(&mut reused);
    short_story_extra(&mut reused);
    reused.store.clear().unwrap();
    assert_eq!(
        reused.store.read_snapshot().unwrap(),
        crate::store::Snapshot::default()
    );
    reused.reg = Registry::new(
        Harness::config(),
        &crate::store::Snapshot::default(),
        7,
        reused.t0,
        1_700_000_000_000,
    );
    reused.inbox.clear();
    reused.closed.clear();
    reused.decoders.clear();
    short_story(&mut reused);
    assert_eq!(reused.store.read_snapshot().unwrap(), expected);
}

/// More rows, so that the cleared store had ids and join numbers to forget.
fn short_story_extra(h: &mut Harness) {
    let conn = h.connect(2);
    h.register(conn, "bob");
    h.login(conn, "bob");
    let reply = h.request(
        conn,
        Msg::JoinRoom {
            room: "lobby".into(),
        },
    );
    assert!(matches!(reply, Msg::RoomJoined { .. }));
}
