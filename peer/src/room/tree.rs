//! How room messages spread over one room's overlay, as a sans-IO state machine: dedup,
//! flooding, and the epidemic broadcast tree (Plumtree: Leitão, Pereira and Rodrigues, "Epidemic
//! Broadcast Trees", SRDS 2007).
//!
//! [`Broadcast`] knows the confirmed neighbours of one room and how each is pushed to:
//!
//! - **eager**: full `room-message` frames. In flood mode every neighbour is eager.
//! - **lazy** (tree mode): only the ids of new messages, batched into one `room-ihave` per
//!   neighbour per tick ([`IHAVE_TICK`]).
//! - **legacy**: a neighbour whose link runs peer version 1 knows no tree frames; it always gets
//!   full messages (it floods, we flood to it), so it gets every message.
//!
//! In tree mode every new neighbour starts lazy and the tree grows by grafts: a member with no
//! eager link grafts the first announcer at once, and only that one, so the links made eager
//! this way form a tree. An id announced by a lazy neighbour that does not arrive within
//! [`GRAFT_TIMEOUT`] is asked for (`room-graft` to the first announcer, which also makes that
//! link eager again: the tree heals around a lost link), then from the next announcer every
//! [`GRAFT_RETRY`]. A full message from a lazy neighbour makes it eager too (it pushes to us,
//! so the link is on the tree), unless we pruned that link less than [`PRUNE_CROSSING`] ago:
//! then the message crossed our prune, and taking the link back would undo the cut.
//!
//! Cycles of eager links (two members grafted into the tree at once, a graft around a slow
//! path) are cut in *shaping rounds*: only the duplicates of one message per round prune (its
//! links become lazy, `room-prune`), the earliest sent at least [`SHAPE_GAP_MS`] after the last
//! round's message, decided [`SHAPE_DECIDE`] after its first candidate arrived. Every member
//! picks the same message, so each cycle is cut once. Pruning on every duplicate, as the paper
//! does, cuts a cycle at several places when messages of several origins are in flight at
//! once, and the tree falls apart into pieces patched by grafts (docs/architecture.md). A
//! duplicate on a lazy link (the sender missed our prune) and one of a message we grafted (the
//! graft replaced that path) prune at once. The rounds live in `room/shape.rs`.
//!
//! The overlay keeps links on the tree ([`Broadcast::is_on_tree`]) when it re-balances a view:
//! each tree link it dropped cut the tree, and the members cut off grafted back in on their
//! own, which made the cycles that most duplicates came from (docs/performance.md).
//!
//! Everything is bounded: the messages kept to answer grafts ([`MAX_CACHE`], [`CACHE_TTL`]), the
//! ids queued for announcement ([`MAX_IHAVE_BATCH`] per neighbour, sent early when full), the
//! missing ids waiting for a graft ([`MAX_MISSING`], [`MAX_ANNOUNCERS`] each, [`MAX_GRAFTS`]
//! attempts) and the ids read from one frame ([`MAX_IDS`]).
//!
//! Input: the neighbour set ([`Broadcast::add_peer`], [`Broadcast::remove_peer`]), frames
//! ([`Broadcast::receive`], [`Broadcast::on_ihave`], [`Broadcast::on_graft`],
//! [`Broadcast::on_prune`]), our own messages ([`Broadcast::originate`]) and time
//! ([`Broadcast::on_timeout`]). Output: [`Action`]s, and [`Broadcast::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use p2pchat_protocol::{Msg, RoomAuth, RoomMsgId};

use super::dedup::{Dedup, MAX_ORIGINS};
use super::shape::Shaping;
pub use super::shape::{
    MAX_SHAPE_DUPS, REROOT_DECIDE, REROOT_EVERY_MS, SHAPE_DECIDE, SHAPE_GAP_MS, SHAPE_RESET,
};
use super::{RoomMode, RoomStats};

/// Hops a room message may travel. Overlays with the default degree have a diameter far
/// below this (flooding reaches 10,000 members in 12), but a broadcast tree is deeper: at
/// 10,000 members its paths reached 43 hops, and a copy that runs out of hops reaches nobody
/// further, not even by announcement (32 lost a message there, docs/performance.md). Beyond
/// that it only stops a message circulating if dedup state were lost.
pub const HOP_LIMIT: u8 = 64;
/// Ids for lazy neighbours are collected this long and sent as one `room-ihave`.
pub const IHAVE_TICK: Duration = Duration::from_millis(50);
/// An announced message that has not arrived this long after the first announcement is grafted.
pub const GRAFT_TIMEOUT: Duration = Duration::from_millis(400);
/// After a graft, the next announcer is asked this long later if the message is still missing.
pub const GRAFT_RETRY: Duration = Duration::from_millis(250);
/// Messages kept to answer grafts.
pub const MAX_CACHE: usize = 1024;
/// A message is kept to answer grafts at most this long.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Ids queued for one lazy neighbour before they are sent without waiting for the tick.
pub const MAX_IHAVE_BATCH: usize = 256;
/// Missing ids tracked at once; announcements of further ones are ignored until some arrive.
pub const MAX_MISSING: usize = 1024;
/// Announcers remembered per missing id.
pub const MAX_ANNOUNCERS: usize = 8;
/// Grafts sent for one missing id before it is given up.
pub const MAX_GRAFTS: u8 = 4;
/// Ids read from one `room-ihave` or `room-graft`; the rest are ignored.
pub const MAX_IDS: usize = 1024;
/// Messages sent back for one `room-graft`: a small frame must not make us send megabytes.
pub const MAX_GRAFT_SERVE: usize = 256;
/// A new link is told the ids of the messages of this long before it came up (see
/// [`Broadcast::catch_up`]).
pub const CATCH_UP: Duration = Duration::from_secs(10);
/// Messages remembered as grafted (see `Broadcast::grafted`).
pub const MAX_GRAFTED: usize = 256;
/// A full message that arrives this soon after we pruned its link was most likely sent before
/// our `room-prune` arrived (it crossed the prune): it leaves the link lazy. A round trip in
/// the simulator is 10-50 ms; on real links it can be longer, and then some crossings make the
/// link eager again, as before this rule (the next shaping round prunes it).
pub const PRUNE_CROSSING: Duration = Duration::from_millis(200);

/// How we push to one neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Full messages.
    Eager,
    /// Ids only (tree mode).
    Lazy,
    /// Full messages always: the link runs peer version 1 (no tree frames).
    Legacy,
}

/// Something for the owner of a [`Broadcast`] to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `msg` to each of `to` (encode it once).
    Send {
        /// Neighbours, sorted.
        to: Vec<String>,
        /// The frame's message.
        msg: Msg,
    },
    /// A message seen for the first time: show it.
    Deliver {
        /// Its origin.
        origin: String,
        /// Its text.
        text: String,
    },
}

#[derive(Debug)]
struct Cached {
    /// The hops to send it on with (already decremented for the next hop).
    hops: u8,
    sent_ms: u64,
    text: String,
    /// The origin's proof, sent on unchanged.
    auth: Option<RoomAuth>,
}

#[derive(Debug)]
struct Missing {
    deadline: Instant,
    announcers: VecDeque<String>,
    grafts: u8,
}

/// Dissemination state of one room (see the module docs).
#[derive(Debug)]
pub struct Broadcast {
    room: String,
    mode: RoomMode,
    peers: BTreeMap<String, Push>,
    dedup: Dedup,
    cache: HashMap<RoomMsgId, Cached>,
    /// Cached ids in arrival order, with when and their arrival number.
    cache_order: VecDeque<(Instant, u64, RoomMsgId)>,
    /// Messages cached so far (the next arrival number).
    arrivals: u64,
    announce: BTreeMap<String, Vec<RoomMsgId>>,
    flush_at: Option<Instant>,
    missing: HashMap<RoomMsgId, Missing>,
    timers: BTreeSet<(Instant, RoomMsgId)>,
    /// Recent messages we had to graft: a later eager copy of one is a duplicate from a path
    /// our graft has replaced.
    grafted: VecDeque<RoomMsgId>,
    /// Which duplicates prune (tree mode).
    shaping: Shaping,
    /// When we last pruned each neighbour's link (see [`PRUNE_CROSSING`]); at most one entry
    /// per neighbour.
    pruned_at: HashMap<String, Instant>,
    stats: RoomStats,
}

impl Broadcast {
    /// No neighbours yet.
    pub fn new(room: &str, mode: RoomMode) -> Broadcast {
        Broadcast {
            room: room.to_string(),
            mode,
            peers: BTreeMap::new(),
            dedup: Dedup::new(MAX_ORIGINS),
            cache: HashMap::new(),
            cache_order: VecDeque::new(),
            arrivals: 0,
            announce: BTreeMap::new(),
            flush_at: None,
            missing: HashMap::new(),
            timers: BTreeSet::new(),
            grafted: VecDeque::new(),
            shaping: Shaping::default(),
            pruned_at: HashMap::new(),
            stats: RoomStats::default(),
        }
    }

    /// Takes the seen-message set of an earlier stay in the room, so that what was shown then
    /// is not shown again (a catch-up announces recent ids to a member that re-joins).
    pub fn restore_seen(&mut self, dedup: Dedup) {
        self.dedup = dedup;
    }

    /// The seen-message set, when the room is left (see `restore_seen`).
    pub fn into_seen(self) -> Dedup {
        self.dedup
    }

    /// Counters so far.
    pub fn stats(&self) -> RoomStats {
        self.stats
    }

    /// Whether a neighbour pushes full messages to us (as far as we know). If none does, no
    /// full copy can come, so an announcement is grafted at once.
    fn has_eager(&self) -> bool {
        self.peers.values().any(|p| *p != Push::Lazy)
    }

    /// A message seen for the first time: a candidate for the shaping round (tree mode). True
    /// if it re-roots the tree (it goes to every neighbour as a full copy).
    fn shape_candidate(&mut self, now: Instant, sent_ms: u64, id: &RoomMsgId) -> bool {
        self.mode == RoomMode::Tree && self.shaping.candidate(now, sent_ms, id)
    }

    /// Makes the link to `to` lazy and tells it (`room-prune`).
    fn prune(&mut self, now: Instant, to: &str, out: &mut Vec<Action>) {
        self.peers.insert(to.to_string(), Push::Lazy);
        self.pruned_at.insert(to.to_string(), now);
        self.stats.prunes_sent += 1;
        out.push(Action::Send {
            to: vec![to.to_string()],
            msg: Msg::RoomPrune {
                room: self.room.clone(),
            },
        });
    }

    /// How `name` is pushed to, if it is a neighbour.
    pub fn push_of(&self, name: &str) -> Option<Push> {
        self.peers.get(name).copied()
    }

    /// Whether the link to `name` is on the broadcast tree: tree mode, and we push full
    /// messages to it (a link the overlay would drop to re-balance is kept while it is).
    pub fn is_on_tree(&self, name: &str) -> bool {
        self.mode == RoomMode::Tree && self.peers.get(name) == Some(&Push::Eager)
    }

    /// Neighbours pushed to eagerly (legacy ones included), sorted.
    pub fn eager(&self) -> impl Iterator<Item = &str> {
        self.peers
            .iter()
            .filter(|(_, p)| **p != Push::Lazy)
            .map(|(n, _)| n.as_str())
    }

    /// `name` became a confirmed neighbour; `tree` says whether its link speaks the tree frames
    /// (peer version 2 or later). A neighbour already known keeps its state.
    pub fn add_peer(&mut self, name: &str, tree: bool) {
        let push = match (tree, self.mode) {
            (false, _) => Push::Legacy,
            (true, RoomMode::Flood) => Push::Eager,
            // The tree grows by grafts: a member without an eager link grafts the first
            // announcer at once (see `on_ihave`), so links made eager form a tree, while
            // links that all started eager would have to be pruned back to one, and
            // concurrent messages from several origins prune too many of them.
            (true, RoomMode::Tree) => Push::Lazy,
        };
        self.peers.entry(name.to_string()).or_insert(push);
    }

    /// `name` is no longer a neighbour.
    pub fn remove_peer(&mut self, name: &str) {
        self.peers.remove(name);
        self.announce.remove(name);
        self.pruned_at.remove(name);
        // Missing ids keep `name` among their announcers; it is skipped when its turn comes.
    }

    /// A neighbour renamed.
    pub fn rename_peer(&mut self, old: &str, new: &str) {
        if let Some(p) = self.peers.remove(old) {
            self.peers.insert(new.to_string(), p);
        }
        if let Some(q) = self.announce.remove(old) {
            self.announce.insert(new.to_string(), q);
        }
        if let Some(t) = self.pruned_at.remove(old) {
            self.pruned_at.insert(new.to_string(), t);
        }
    }

    /// We send an unsigned message (no identity): [`Broadcast::originate_signed`] without proof.
    pub fn originate(
        &mut self,
        now: Instant,
        me: &str,
        seq: u64,
        sent_ms: u64,
        text: String,
        out: &mut Vec<Action>,
    ) {
        self.originate_signed(now, me, seq, sent_ms, text, None, out);
    }

    /// We send a message: it is recorded as seen and pushed to every neighbour, with `auth`
    /// (our ticket and signature, docs/security.md layer 4).
    #[allow(clippy::too_many_arguments)]
    pub fn originate_signed(
        &mut self,
        now: Instant,
        me: &str,
        seq: u64,
        sent_ms: u64,
        text: String,
        auth: Option<RoomAuth>,
        out: &mut Vec<Action>,
    ) {
        self.dedup.first_sight(me, seq);
        self.stats.originated += 1;
        let id = RoomMsgId {
            origin: me.to_string(),
            seq,
        };
        let flood = self.shape_candidate(now, sent_ms, &id);
        self.push(now, None, id, HOP_LIMIT, sent_ms, text, auth, flood, out);
    }

    /// An unsigned full message: [`Broadcast::receive_signed`] without proof.
    #[allow(clippy::too_many_arguments)]
    pub fn receive(
        &mut self,
        now: Instant,
        me: &str,
        from: &str,
        origin: String,
        seq: u64,
        hops: u8,
        sent_ms: u64,
        text: String,
        out: &mut Vec<Action>,
    ) {
        self.receive_signed(now, me, from, origin, seq, hops, sent_ms, text, None, out);
    }

    /// A full message from the neighbour `from`. `me` is our own name. `auth` (already
    /// checked by the caller, if it checks) is kept and passed on unchanged.
    #[allow(clippy::too_many_arguments)]
    pub fn receive_signed(
        &mut self,
        now: Instant,
        me: &str,
        from: &str,
        origin: String,
        seq: u64,
        hops: u8,
        sent_ms: u64,
        text: String,
        auth: Option<RoomAuth>,
        out: &mut Vec<Action>,
    ) {
        let Some(push) = self.peers.get(from).copied() else {
            return;
        };
        // Every message of ours is in the dedup set from the moment we send it, so one with our
        // name that is new to us was forged (or sent before a restart): never show it as ours,
        // nor spread it.
        if origin == me || !self.dedup.first_sight(&origin, seq) {
            self.stats.duplicates += 1;
            if self.mode != RoomMode::Tree {
                return;
            }
            match push {
                // The sender still takes the link for eager (our prune crossed its message,
                // or was lost): tell it again. This changes nothing in our view of the tree.
                Push::Lazy => {
                    let id = RoomMsgId { origin, seq };
                    if self.shaping.rerooting(sent_ms, &id) {
                        // Sent on purpose: a re-rooting message goes on every link. Pruned
                        // with the round if the link is eager by then.
                        self.shaping.duplicate(from, sent_ms, &id);
                    } else {
                        self.prune(now, from, out);
                    }
                }
                // Two eager paths brought it: a cycle of eager links. Only the duplicates of
                // one message per round prune (at the round's deadline): duplicates of several
                // messages in flight at once, from different origins, would prune a cycle at
                // several places and cut the tree.
                Push::Eager => {
                    let id = RoomMsgId { origin, seq };
                    if self.grafted.contains(&id) {
                        // We grafted it, so the link we grafted now brings what this one
                        // brought later: the graft took its place (one link in, one out).
                        self.prune(now, from, out);
                    } else {
                        self.shaping.duplicate(from, sent_ms, &id);
                    }
                }
                Push::Legacy => {}
            }
            return;
        }
        self.stats.delivered += 1;
        let id = RoomMsgId { origin, seq };
        if let Some(m) = self.missing.remove(&id) {
            self.timers.remove(&(m.deadline, id.clone()));
            if m.grafts > 0 {
                if self.grafted.len() >= MAX_GRAFTED {
                    self.grafted.pop_front();
                }
                self.grafted.push_back(id.clone());
            }
        }
        let flood = self.shape_candidate(now, sent_ms, &id);
        if push == Push::Lazy && flood {
            // A re-rooting message comes on lazy links too, so the sender may not push to us;
            // its link is now our way in: eager here, and an empty graft makes it eager there.
            self.peers.insert(from.to_string(), Push::Eager);
            self.stats.grafts_sent += 1;
            out.push(Action::Send {
                to: vec![from.to_string()],
                msg: Msg::RoomGraft {
                    room: self.room.clone(),
                    ids: Vec::new(),
                },
            });
        } else if push == Push::Lazy && !self.crossed_prune(now, from) {
            // It pushes to us (it grafted us): the link carries the tree's messages, so it is
            // eager both ways. A cycle this leaves is pruned by the next shaping round.
            self.peers.insert(from.to_string(), Push::Eager);
        }
        let origin = id.origin.clone();
        if hops > 1 {
            // The sender's word: 0 (no correct peer sends it) must not underflow.
            self.push(
                now,
                Some(from),
                id,
                hops - 1,
                sent_ms,
                text.clone(),
                auth,
                flood,
                out,
            );
        }
        out.push(Action::Deliver { origin, text });
    }

    /// Whether a full message from the lazy neighbour `from` may have been sent before our
    /// prune reached it: we pruned its link less than [`PRUNE_CROSSING`] ago. Such a message
    /// was first only because it raced the copy of the path we keep; taking the link eager
    /// again for it would bring back the cycle the prune cut (docs/performance.md, "Where the
    /// tree's extra frames come from"). If the link is in fact needed (the tree was cut
    /// elsewhere), the announcements that follow graft it.
    fn crossed_prune(&mut self, now: Instant, from: &str) -> bool {
        match self.pruned_at.get(from) {
            Some(at) if now < *at + PRUNE_CROSSING => true,
            Some(_) => {
                self.pruned_at.remove(from);
                false
            }
            None => false,
        }
    }

    /// Full copies to the eager (and legacy) neighbours but `from` (to every neighbour but
    /// `from` if `flood`), the id queued for the lazy ones; kept for grafts in tree mode.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        now: Instant,
        from: Option<&str>,
        id: RoomMsgId,
        hops: u8,
        sent_ms: u64,
        text: String,
        auth: Option<RoomAuth>,
        flood: bool,
        out: &mut Vec<Action>,
    ) {
        let mut full = Vec::new();
        for (n, p) in &self.peers {
            if Some(n.as_str()) == from {
                continue;
            }
            if *p == Push::Lazy && self.mode == RoomMode::Tree && !flood {
                let q = self.announce.entry(n.clone()).or_default();
                q.push(id.clone());
                if q.len() >= MAX_IHAVE_BATCH {
                    let ids = std::mem::take(q);
                    self.stats.ihaves_sent += 1;
                    self.stats.ids_announced += ids.len() as u64;
                    out.push(Action::Send {
                        to: vec![n.clone()],
                        msg: Msg::RoomIhave {
                            room: self.room.clone(),
                            ids,
                        },
                    });
                } else if self.flush_at.is_none() {
                    self.flush_at = Some(now + IHAVE_TICK);
                }
            } else {
                full.push(n.clone());
            }
        }
        self.stats.frames_sent += full.len() as u64;
        if !full.is_empty() {
            out.push(Action::Send {
                to: full,
                msg: Msg::RoomMessage {
                    room: self.room.clone(),
                    origin: id.origin.clone(),
                    seq: id.seq,
                    hops,
                    sent_ms,
                    text: text.clone(),
                    auth: auth.clone(),
                },
            });
        }
        // Kept in both modes: grafts after a catch-up announcement are answered from here.
        self.remember(now, id, hops, sent_ms, text, auth);
    }

    /// A mark of "now" in the message history, for [`Broadcast::catch_up`].
    pub fn mark(&self) -> u64 {
        self.arrivals
    }

    /// A new link to `name` is up: announce the messages we got in the last [`CATCH_UP`], and
    /// since `since` (a [`Broadcast::mark`] taken when the registry said it joined or came
    /// online, so that a member is not shown what was said before it came). A member whose
    /// links were still forming grafts what it missed; one that has them ignores the
    /// announcement. Nothing for a version-1 link (it knows no announcements).
    pub fn catch_up(&mut self, now: Instant, name: &str, since: Option<u64>) {
        if self.peers.get(name).is_none_or(|p| *p == Push::Legacy) {
            return;
        }
        self.expire_cache(now);
        let from = now.checked_sub(CATCH_UP);
        let mut ids: Vec<RoomMsgId> = self
            .cache_order
            .iter()
            .rev()
            .take_while(|(at, n, _)| from.is_none_or(|f| *at >= f) && since.is_none_or(|s| *n >= s))
            .take(MAX_IHAVE_BATCH)
            .map(|(_, _, id)| id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        ids.reverse();
        let q = self.announce.entry(name.to_string()).or_default();
        q.extend(ids);
        q.truncate(MAX_IHAVE_BATCH);
        if self.flush_at.is_none() {
            self.flush_at = Some(now + IHAVE_TICK);
        }
    }

    fn remember(
        &mut self,
        now: Instant,
        id: RoomMsgId,
        hops: u8,
        sent_ms: u64,
        text: String,
        auth: Option<RoomAuth>,
    ) {
        self.expire_cache(now);
        while self.cache.len() >= MAX_CACHE {
            let Some((_, _, old)) = self.cache_order.pop_front() else {
                break;
            };
            self.cache.remove(&old);
        }
        self.cache_order.push_back((now, self.arrivals, id.clone()));
        self.arrivals += 1;
        self.cache.insert(
            id,
            Cached {
                hops,
                sent_ms,
                text,
                auth,
            },
        );
    }

    fn expire_cache(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.cache_order.front() {
            if now.saturating_duration_since(*at) < CACHE_TTL {
                break;
            }
            if let Some((_, _, id)) = self.cache_order.pop_front() {
                self.cache.remove(&id);
            }
        }
    }

    /// Whether a full message `(origin, seq)` would be new to us (so worth checking its
    /// signature): not ours, not seen, not too old.
    pub fn is_new(&self, me: &str, origin: &str, seq: u64) -> bool {
        origin != me && !self.dedup.seen(origin, seq)
    }

    /// A new message was refused (layer 4): counted, nothing else changes.
    pub fn refused(&mut self) {
        self.stats.refused += 1;
    }

    /// Whether `(origin, seq)` was seen (or is too old to be news), without recording it.
    fn seen(&self, id: &RoomMsgId) -> bool {
        self.dedup.seen(&id.origin, id.seq)
    }

    /// `room-ihave` from `from`: the ids we lack start (or join) a graft timer.
    pub fn on_ihave(&mut self, now: Instant, me: &str, from: &str, ids: Vec<RoomMsgId>) {
        if !self.peers.contains_key(from) {
            return;
        }
        for id in ids.into_iter().take(MAX_IDS) {
            if id.origin == me || self.seen(&id) {
                continue;
            }
            if let Some(m) = self.missing.get_mut(&id) {
                if m.announcers.len() < MAX_ANNOUNCERS && !m.announcers.iter().any(|a| a == from) {
                    m.announcers.push_back(from.to_string());
                }
                continue;
            }
            if self.missing.len() >= MAX_MISSING {
                continue;
            }
            let deadline = if self.has_eager() {
                now + GRAFT_TIMEOUT
            } else {
                // No full copy can come: this announcer becomes our way in now (one link, so
                // that the links grafted this way form a tree).
                self.peers.insert(from.to_string(), Push::Eager);
                now
            };
            self.timers.insert((deadline, id.clone()));
            self.missing.insert(
                id,
                Missing {
                    deadline,
                    announcers: VecDeque::from([from.to_string()]),
                    grafts: 0,
                },
            );
        }
    }

    /// `room-graft` from `from`: the link becomes eager and the messages asked for that we still
    /// hold are sent.
    pub fn on_graft(
        &mut self,
        now: Instant,
        from: &str,
        ids: Vec<RoomMsgId>,
        out: &mut Vec<Action>,
    ) {
        let Some(push) = self.peers.get_mut(from) else {
            return;
        };
        if *push == Push::Lazy {
            *push = Push::Eager;
        }
        self.expire_cache(now);
        let mut served = 0;
        for id in ids.into_iter().take(MAX_IDS) {
            if served >= MAX_GRAFT_SERVE {
                break;
            }
            let Some(c) = self.cache.get(&id) else {
                continue;
            };
            if c.hops == 0 {
                continue;
            }
            served += 1;
            self.stats.frames_sent += 1;
            out.push(Action::Send {
                to: vec![from.to_string()],
                msg: Msg::RoomMessage {
                    room: self.room.clone(),
                    origin: id.origin,
                    seq: id.seq,
                    hops: c.hops,
                    sent_ms: c.sent_ms,
                    text: c.text.clone(),
                    auth: c.auth.clone(),
                },
            });
        }
    }

    /// `room-prune` from `from`: full messages no longer go that way (tree mode; a flooding
    /// peer keeps pushing to everyone).
    pub fn on_prune(&mut self, from: &str) {
        if self.mode != RoomMode::Tree {
            return;
        }
        if let Some(p) = self.peers.get_mut(from) {
            if *p == Push::Eager {
                *p = Push::Lazy;
            }
        }
    }

    /// Sends due grafts and the announcement batch, and forgets messages too old to graft.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.expire_cache(now);
        if let Some(dups) = self.shaping.poll_decided(now) {
            for d in dups {
                if self.peers.get(&d) == Some(&Push::Eager) {
                    self.prune(now, &d, out);
                }
            }
        }
        let mut grafts: BTreeMap<String, Vec<RoomMsgId>> = BTreeMap::new();
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let Some((_, id)) = self.timers.pop_first() else {
                break;
            };
            let Some(m) = self.missing.get_mut(&id) else {
                continue;
            };
            // The next announcer that is still a neighbour, rotated to the back for a retry.
            let mut pick = None;
            for _ in 0..m.announcers.len() {
                let Some(a) = m.announcers.pop_front() else {
                    break;
                };
                if self.peers.contains_key(&a) {
                    m.announcers.push_back(a.clone());
                    pick = Some(a);
                    break;
                }
            }
            let Some(to) = pick else {
                self.missing.remove(&id);
                continue;
            };
            m.grafts += 1;
            if m.grafts >= MAX_GRAFTS {
                self.missing.remove(&id);
            } else {
                m.deadline = now + GRAFT_RETRY;
                self.timers.insert((m.deadline, id.clone()));
            }
            grafts.entry(to).or_default().push(id);
        }
        for (to, ids) in grafts {
            if let Some(p) = self.peers.get_mut(&to) {
                if *p == Push::Lazy {
                    *p = Push::Eager;
                }
            }
            self.stats.grafts_sent += 1;
            out.push(Action::Send {
                to: vec![to],
                msg: Msg::RoomGraft {
                    room: self.room.clone(),
                    ids,
                },
            });
        }
        if self.flush_at.is_some_and(|t| t <= now) {
            self.flush_at = None;
            for (to, ids) in std::mem::take(&mut self.announce) {
                if ids.is_empty() || !self.peers.contains_key(&to) {
                    continue;
                }
                self.stats.ihaves_sent += 1;
                self.stats.ids_announced += ids.len() as u64;
                out.push(Action::Send {
                    to: vec![to],
                    msg: Msg::RoomIhave {
                        room: self.room.clone(),
                        ids,
                    },
                });
            }
        }
    }

    /// When [`Broadcast::on_timeout`] has work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let graft = self.timers.first().map(|(t, _)| *t);
        let shape = self.shaping.poll_timeout();
        [graft, self.flush_at, shape].into_iter().flatten().min()
    }

    /// Sets how `name` is pushed to (tests start from a formed tree).
    #[cfg(test)]
    pub(crate) fn set_push(&mut self, name: &str, push: Push) {
        self.peers.insert(name.to_string(), push);
    }

    /// As if the last shaping round's message was sent at `sent_ms` and decided at `at`.
    #[cfg(test)]
    pub(crate) fn set_last_round(&mut self, sent_ms: u64, at: Instant) {
        self.shaping.set_last(sent_ms, at);
    }

    /// Missing ids tracked now (for tests of the bounds).
    #[cfg(test)]
    pub(crate) fn missing_len(&self) -> usize {
        self.missing.len()
    }

    /// Messages held for grafts now (for tests of the bounds).
    #[cfg(test)]
    pub(crate) fn cache_len(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
