//! The one real registry of a simulation: the [`Registry`] state machine over a real SQLite
//! store in a temporary directory. Password hashes run inline (the bench config uses one
//! PBKDF2 iteration); store writes are queued and committed together after
//! [`SimConfig::store_delay`](super::SimConfig::store_delay), the way the store thread's group
//! commit batches them.

use std::time::Instant;

use p2pchat_protocol::Msg;
use p2pchat_registry::hasher::{run_hash, HashDone};
use p2pchat_registry::store::{SqliteStore, StoreJob};
use p2pchat_registry::{ConnId, Event, Input, Registry};

use super::NodeId;

/// A registry event with the virtual time it happened at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEvent {
    /// Virtual time since the start of the simulation.
    pub at: std::time::Duration,
    /// What happened.
    pub event: Event,
}

/// A frame the registry sent to a node, recorded when the tap is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tapped {
    /// Virtual time since the start of the simulation.
    pub at: std::time::Duration,
    /// The node it was sent to.
    pub to: NodeId,
    /// The message.
    pub msg: Msg,
}

pub(crate) struct RegistryHost {
    pub(crate) registry: Registry,
    store: SqliteStore,
    _dir: tempfile::TempDir,
    /// Store jobs waiting for the next group commit.
    pub(crate) queued: Vec<StoreJob>,
    pub(crate) commit_scheduled: bool,
    /// Registry connection id -> network connection.
    pub(crate) conns: super::SeqMap<ConnId, u64>,
    next_conn: u64,
    pub(crate) events: Vec<RegistryEvent>,
    pub(crate) tap: Option<Vec<Tapped>>,
    pub(crate) wake: Option<Instant>,
    pub(crate) commits: u64,
}

impl RegistryHost {
    pub(crate) fn new(
        config: p2pchat_registry::Config,
        seed: u64,
        epoch: Instant,
        wall_ms: i64,
    ) -> RegistryHost {
        // NOTE(unwrap): a simulator needs a temp dir and a fresh database; nothing to recover.
        let dir = tempfile::TempDir::new().expect("temp dir for the simulated registry");
        let (store, snapshot) =
            SqliteStore::open(&dir.path().join("sim.db")).expect("registry database");
        RegistryHost {
            registry: Registry::new(config, &snapshot, seed, epoch, wall_ms),
            store,
            _dir: dir,
            queued: Vec::new(),
            commit_scheduled: false,
            conns: super::SeqMap::default(),
            next_conn: 1,
            events: Vec::new(),
            tap: None,
            wake: None,
            commits: 0,
        }
    }

    /// A fresh connection id (never reused, as the engine guarantees).
    pub(crate) fn next_conn(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    /// Runs a hash job inline and feeds its result.
    pub(crate) fn hash(&mut self, now: Instant, job: p2pchat_registry::hasher::HashJob) {
        let result = run_hash(&job.request);
        self.registry
            .handle_input(now, Input::HashDone(HashDone { id: job.id, result }));
    }

    /// Commits every queued job in one transaction and feeds the answers.
    pub(crate) fn commit(&mut self, now: Instant) {
        self.commit_scheduled = false;
        let jobs = std::mem::take(&mut self.queued);
        if jobs.is_empty() {
            return;
        }
        self.commits += 1;
        for done in self.store.apply(jobs) {
            self.registry.handle_input(now, Input::StoreDone(done));
        }
    }
}
