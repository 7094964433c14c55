//! The p2pchat evaluation toolkit: drivers that run the real state machines without sockets,
//! for criterion benches and (later) the deterministic simulator.
//!
//! # Brief overview
//!
//! - [`RegistryDriver`] runs a real [`Registry`] over a real SQLite store in a temporary
//!   directory, completing hash jobs inline and store jobs in batches (group commit, as the
//!   store thread does). Time is whatever `now` the caller passes: nothing here reads a clock.
//! - [`sim`] is the deterministic discrete-event simulator: one real registry and many real peer
//!   nodes on a virtual clock and a simulated network (latency, jitter, loss, kills).
//! - [`load`] drives the real binaries over loopback: synthetic peers (real `peer::Node`s
//!   multiplexed on engine reactors), open-loop schedules, the registry's /proc figures and the
//!   machine floor.
//! - [`report`] turns a run into a wrk2-style summary, `summary.json`, `.hgrm` files and SVG
//!   plots; checks `--threshold`s and compares two runs.
#![warn(missing_docs)]

pub mod load;
pub mod report;
pub mod sim;

use std::net::SocketAddr;
use std::time::Instant;

use p2pchat_protocol::{Frame, FrameDecoder, Heartbeat, HeartbeatKey, Msg, Role, VERSION};
use p2pchat_registry::hasher::{run_hash, HashDone};
use p2pchat_registry::store::{SqliteStore, StoreJob};
use p2pchat_registry::{Config, ConnId, Input, Output, Registry};

/// A logged-in synthetic client.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its connection.
    pub conn: ConnId,
    /// Session id for heartbeats.
    pub session: u64,
    /// Heartbeat key.
    pub key: [u8; 32],
}

/// A registry with its real store, driven in memory.
pub struct RegistryDriver {
    /// The state machine.
    pub registry: Registry,
    store: SqliteStore,
    _dir: tempfile::TempDir,
    decoder_scratch: Vec<(ConnId, Frame)>,
    next_conn: u64,
}

impl RegistryDriver {
    /// A registry with an empty database under `config`, its clock anchored at `epoch`.
    pub fn new(config: Config, epoch: Instant) -> RegistryDriver {
        // NOTE(unwrap): benches and tests only; a temp dir and a fresh database must work.
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (store, snapshot) = SqliteStore::open(&dir.path().join("bench.db")).expect("db");
        RegistryDriver {
            registry: Registry::new(config, &snapshot, 1, epoch, 1_700_000_000_000),
            store,
            _dir: dir,
            decoder_scratch: Vec::new(),
            next_conn: 1,
        }
    }

    /// Feeds one input and carries out every output until the registry is quiet. Frames sent
    /// to clients are kept for [`RegistryDriver::take_frames`].
    pub fn feed(&mut self, now: Instant, input: Input<'_>) {
        self.registry.handle_input(now, input);
        self.drain(now);
    }

    fn drain(&mut self, now: Instant) {
        loop {
            let mut jobs: Vec<StoreJob> = Vec::new();
            while let Some(out) = self.registry.poll_output() {
                match out {
                    Output::Send { conn, bytes } => {
                        let mut d = FrameDecoder::new(1 << 20);
                        d.push(&bytes);
                        while let Ok(Some(f)) = d.next_frame() {
                            self.decoder_scratch.push((conn, f));
                        }
                    }
                    Output::Hash(job) => {
                        let result = run_hash(&job.request);
                        self.registry
                            .handle_input(now, Input::HashDone(HashDone { id: job.id, result }));
                    }
                    Output::Store(job) => jobs.push(job),
                    Output::Close { .. } | Output::Event(_) => {}
                }
            }
            if jobs.is_empty() {
                return;
            }
            for done in self.store.apply(jobs) {
                self.registry.handle_input(now, Input::StoreDone(done));
            }
        }
    }

    /// Frames sent to clients since the last call.
    pub fn take_frames(&mut self) -> Vec<(ConnId, Frame)> {
        std::mem::take(&mut self.decoder_scratch)
    }

    /// Connects `n` clients, registers and logs in `user{i}` on each, all at `now`, batching
    /// the store writes as the store thread would. Returns the sessions.
    pub fn login_many(&mut self, now: Instant, n: usize) -> Vec<Session> {
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let conn = ConnId(self.next_conn);
            self.next_conn += 1;
            // Spread sources over many addresses so the per-source auth limit is not what
            // is measured.
            let remote = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5000));
            self.registry
                .handle_input(now, Input::Connected { conn, remote });
            let hello = Frame::event(Msg::Hello {
                version: VERSION,
                role: Role::Client,
                name: String::new(),
                ticket: vec![],
            });
            let name = format!("user{i}");
            let reg = Frame::new(
                1,
                Msg::Register {
                    name: name.clone(),
                    password: "password1".into(),
                },
            );
            let login = Frame::new(
                2,
                Msg::Login {
                    name,
                    password: "password1".into(),
                    listen: SocketAddr::from(([0, 0, 0, 0], 4000)),
                },
            );
            for f in [hello, reg] {
                let bytes = f.to_bytes();
                self.registry.handle_input(
                    now,
                    Input::Received {
                        conn,
                        bytes: &bytes,
                    },
                );
            }
            conns.push((conn, login));
        }
        self.drain(now);
        for (conn, login) in &conns {
            let bytes = login.to_bytes();
            self.registry.handle_input(
                now,
                Input::Received {
                    conn: *conn,
                    bytes: &bytes,
                },
            );
        }
        self.drain(now);
        self.take_frames()
            .into_iter()
            .filter_map(|(conn, f)| match f.msg {
                Msg::LoggedIn {
                    session,
                    heartbeat_key,
                    ..
                } => Some(Session {
                    conn,
                    session,
                    key: heartbeat_key,
                }),
                _ => None,
            })
            .collect()
    }

    /// A signed heartbeat datagram for `s`.
    pub fn heartbeat(s: &Session, counter: u64) -> [u8; p2pchat_protocol::HEARTBEAT_LEN] {
        Heartbeat::sign(&HeartbeatKey::new(&s.key), s.session, counter, 0).encode()
    }
}

/// A registry config for benches: cheap hashing and no source limits.
pub fn bench_config() -> Config {
    Config {
        pbkdf2_iterations: 1,
        auth_rate_per_min: 1_000_000,
        auth_burst: 1_000_000,
        max_pending_hashes: usize::MAX,
        max_pending_stores: usize::MAX,
        max_clients: usize::MAX,
        ..Config::default()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one real anchor for a virtual clock
mod tests {
    use super::*;

    #[test]
    fn login_many_logs_everyone_in() {
        let t0 = Instant::now();
        let mut d = RegistryDriver::new(bench_config(), t0);
        let sessions = d.login_many(t0, 300);
        assert_eq!(sessions.len(), 300);
        assert_eq!(d.registry.online_count(), 300);
        let hb = RegistryDriver::heartbeat(&sessions[0], 1);
        d.feed(
            t0,
            Input::Datagram {
                from: "10.0.0.1:1".parse().unwrap(),
                bytes: &hb,
            },
        );
        assert_eq!(d.registry.stats().heartbeats, 1);
    }
}
