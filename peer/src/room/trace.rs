//! A bounded trace of the rooms' overlay and message events, off unless the node's config asks
//! for it (`Config::room_trace`): what a load run that lost a delivery needs to tell why (which
//! room links a member had, which frames came and went, which sends found no link). Only the
//! newest lines are kept, so a long run costs a fixed amount of memory per peer.

use std::collections::VecDeque;
use std::time::Instant;

use p2pchat_protocol::Msg;

/// The newest `cap` trace lines of one node, with when each happened.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    cap: usize,
    lines: VecDeque<(Instant, String)>,
}

impl Trace {
    /// Keeps the newest `cap` lines (0: off, nothing is formatted).
    pub(crate) fn new(cap: usize) -> Trace {
        Trace {
            cap,
            lines: VecDeque::new(),
        }
    }

    /// Whether lines are kept.
    pub(crate) fn is_on(&self) -> bool {
        self.cap > 0
    }

    /// Adds a line; `line` is only called when the trace is on.
    pub(crate) fn add(&mut self, now: Instant, line: impl FnOnce() -> String) {
        if self.cap == 0 {
            return;
        }
        if self.lines.len() >= self.cap {
            self.lines.pop_front();
        }
        self.lines.push_back((now, line()));
    }

    /// The lines kept, oldest first.
    pub(crate) fn lines(&self) -> impl Iterator<Item = &(Instant, String)> {
        self.lines.iter()
    }
}

/// A room frame in a few words, for the trace: its kind and the message ids it names.
pub(crate) fn describe(msg: &Msg) -> String {
    let ids = |ids: &[p2pchat_protocol::RoomMsgId]| {
        ids.iter()
            .map(|id| format!("{}/{}", id.origin, id.seq))
            .collect::<Vec<_>>()
            .join(",")
    };
    match msg {
        Msg::RoomLink { .. } => "room-link".to_string(),
        Msg::RoomUnlink { .. } => "room-unlink".to_string(),
        Msg::RoomMessage {
            origin, seq, hops, ..
        } => format!("room-message {origin}/{seq} hops {hops}"),
        Msg::RoomIhave { ids: i, .. } => format!("room-ihave [{}]", ids(i)),
        Msg::RoomGraft { ids: i, .. } => format!("room-graft [{}]", ids(i)),
        Msg::RoomPrune { .. } => "room-prune".to_string(),
        other => other.kind_name().to_string(),
    }
}

/// The room a room frame is about ("" for any other frame).
pub(crate) fn room_of(msg: &Msg) -> &str {
    match msg {
        Msg::RoomLink { room }
        | Msg::RoomUnlink { room }
        | Msg::RoomMessage { room, .. }
        | Msg::RoomIhave { room, .. }
        | Msg::RoomGraft { room, .. }
        | Msg::RoomPrune { room } => room,
        _ => "",
    }
}
