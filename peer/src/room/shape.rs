//! Shaping rounds of the broadcast tree ([`super::tree::Broadcast`]): which duplicates may
//! prune an eager link.
//!
//! Two eager paths to one member (a cycle of eager links) show as duplicates. Pruning the link
//! of every duplicate cuts a cycle at several places when messages of several origins are in
//! flight at once (each message meets itself at another link of the cycle), and the tree falls
//! apart into pieces patched by grafts. So only the duplicates of one message per round prune:
//! the earliest sent at least [`SHAPE_GAP_MS`] after the last round's message, decided
//! [`SHAPE_DECIDE`] after its first candidate arrived. Every member picks the same message, and
//! pruning the links that brought duplicates of one message leaves exactly the links its first
//! copies came on: a spanning tree of the eager links, each cycle cut once.
//!
//! Grafts keep the tree whole but not shallow: a member cut off re-attaches wherever its first
//! announcer is, and after a while paths are long (up to the hop limit). So a round now and
//! then *re-roots* it: its message goes as a full copy on every link, lazy ones too, so each
//! member's first copy comes the shortest way from the origin, and the round's prunes (the
//! duplicates of that message, on any link) leave exactly the links of those first copies: a
//! shallow spanning tree again. A member's first round does it (a new room starts with the
//! shortest-path tree of its first message, as Plumtree's first flood), and then one round in
//! each [`REROOT_EVERY_MS`] of `sent_ms`, the same one for every member. It costs about one
//! flooded message and the messages of [`REROOT_DECIDE`] on two trees (docs/performance.md).
//!
//! No I/O, no clock: the caller passes the time.

use std::time::{Duration, Instant};

use p2pchat_protocol::RoomMsgId;

/// Tree shaping: only the duplicates of one message at a time prune links, and the next such
/// message is the first one sent (by its `sent_ms`) at least this long after the last one.
pub const SHAPE_GAP_MS: u64 = 1_000;
/// A shaping round's prunes are made this long after its first candidate arrived: by then the
/// earliest candidate, and its duplicates, have come (paths differ by far less than this), and
/// they are made before the next round's messages are sent (`SHAPE_GAP_MS` later).
pub const SHAPE_DECIDE: Duration = Duration::from_millis(500);
/// After this long without a round, any message starts one (a forged `sent_ms` far ahead
/// cannot stop the shaping for longer).
pub const SHAPE_RESET: Duration = Duration::from_secs(30);
/// Neighbours remembered as duplicate senders for one shaping message.
pub const MAX_SHAPE_DUPS: usize = 64;
/// A round whose message was sent in a later period of this length than the last round's (and
/// a member's first round) *re-roots* the tree: see the module docs.
pub const REROOT_EVERY_MS: u64 = 30_000;
/// A re-rooting round is decided sooner than others: until then messages travel both the old
/// tree and the new one. Its message reaches every member by flooding, in about 100 ms in a
/// room of 10,000 (docs/performance.md).
pub const REROOT_DECIDE: Duration = Duration::from_millis(200);

/// One shaping round: the candidate chosen so far and who sent us duplicates of it.
#[derive(Debug)]
struct Round {
    /// The earliest candidate seen: `(sent_ms, id)`, compared as a whole so that every member
    /// chooses the same one.
    best: (u64, RoomMsgId),
    /// Neighbours that sent a duplicate of `best` (eager ones; any, in a re-rooting round).
    dups: Vec<String>,
    deadline: Instant,
    /// `best` re-roots the tree.
    reroot: bool,
}

/// The shaping state of one room (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Shaping {
    /// The round under way.
    round: Option<Round>,
    /// The `sent_ms` of the last round's message, and when that round was decided.
    last: (u64, Option<Instant>),
}

impl Shaping {
    /// A message seen for the first time: it can shape the tree if it was sent
    /// [`SHAPE_GAP_MS`] after the last round's message; the earliest such one wins (every member
    /// makes the same choice, so the duplicates that prune are all of one message).
    ///
    /// True if it is now the round's message and the round re-roots the tree: then it goes to
    /// every neighbour as a full copy.
    pub(super) fn candidate(&mut self, now: Instant, sent_ms: u64, id: &RoomMsgId) -> bool {
        let (last_ms, last_at) = self.last;
        let stale = last_at.is_none_or(|t| now >= t + SHAPE_RESET);
        if sent_ms < last_ms.saturating_add(SHAPE_GAP_MS) && !stale {
            return false;
        }
        let reroot = last_at.is_none() || sent_ms / REROOT_EVERY_MS > last_ms / REROOT_EVERY_MS;
        let key = (sent_ms, id.clone());
        match &mut self.round {
            Some(round) => {
                if key >= round.best {
                    return false;
                }
                round.best = key;
                round.dups.clear();
                round.reroot = reroot;
            }
            None => {
                let wait = if reroot { REROOT_DECIDE } else { SHAPE_DECIDE };
                self.round = Some(Round {
                    best: key,
                    dups: Vec::new(),
                    deadline: now + wait,
                    reroot,
                })
            }
        }
        reroot
    }

    /// Whether `id` is the message of a re-rooting round under way.
    pub(super) fn rerooting(&self, sent_ms: u64, id: &RoomMsgId) -> bool {
        self.round
            .as_ref()
            .is_some_and(|r| r.reroot && r.best.0 == sent_ms && r.best.1 == *id)
    }

    /// A duplicate of `id` from the neighbour `from` (an eager one, or any in a re-rooting
    /// round): remembered if `id` is the round's message.
    pub(super) fn duplicate(&mut self, from: &str, sent_ms: u64, id: &RoomMsgId) {
        let Some(round) = &mut self.round else {
            return;
        };
        if round.best.0 == sent_ms
            && round.best.1 == *id
            && round.dups.len() < MAX_SHAPE_DUPS
            && !round.dups.iter().any(|d| d == from)
        {
            round.dups.push(from.to_string());
        }
    }

    /// The round is decided if its deadline has come: the neighbours whose links to prune.
    pub(super) fn poll_decided(&mut self, now: Instant) -> Option<Vec<String>> {
        let round = self.round.take_if(|r| r.deadline <= now)?;
        self.last = (round.best.0, Some(now));
        Some(round.dups)
    }

    /// As if the last round's message was sent at `sent_ms` and decided at `at` (tests start
    /// from a room with rounds behind it).
    #[cfg(test)]
    pub(super) fn set_last(&mut self, sent_ms: u64, at: Instant) {
        self.last = (sent_ms, Some(at));
    }

    /// When the round under way is decided.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.round.as_ref().map(|r| r.deadline)
    }
}
