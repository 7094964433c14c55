//! Paged answers from the registry (`p2pchat_protocol::paging`): the leading parts of a
//! room-joined or member-list answer are kept here until its final frame arrives, which then
//! carries the whole list, so nothing past the link knows the answer was paged.

use p2pchat_protocol::{MemberInfo, Msg, PeerInfo};

/// More entries than a room has: a registry that sends more is broken, and the excess is
/// dropped rather than held.
const MAX_ENTRIES: usize = 1 << 20;

/// The answer being assembled. The registry sends one answer's parts back to back, so one
/// answer at a time is enough; a part for another answer starts over.
#[derive(Debug, Default)]
pub(super) struct Parts {
    /// Request id (0 for a pushed room-joined) and room of the answer being assembled.
    key: Option<(u32, String)>,
    peers: Vec<PeerInfo>,
    members: Vec<MemberInfo>,
}

impl Parts {
    /// Keeps a leading part (and returns `None`), or gives back any other message, with the
    /// parts before it prepended when it is the final frame they belong to.
    pub(super) fn absorb(&mut self, id: u32, msg: Msg) -> Option<Msg> {
        match msg {
            Msg::RoomJoinedPart { room, peers } => {
                self.start(id, room);
                let room_left = MAX_ENTRIES.saturating_sub(self.peers.len());
                self.peers.extend(peers.into_iter().take(room_left));
                None
            }
            Msg::MemberListPart { room, members } => {
                self.start(id, room);
                let room_left = MAX_ENTRIES.saturating_sub(self.members.len());
                self.members.extend(members.into_iter().take(room_left));
                None
            }
            Msg::RoomJoined { room, peers } => {
                let peers = self.finish(id, &room, |p| &mut p.peers, peers);
                Some(Msg::RoomJoined { room, peers })
            }
            Msg::MemberList { room, members } => {
                let members = self.finish(id, &room, |p| &mut p.members, members);
                Some(Msg::MemberList { room, members })
            }
            other => Some(other),
        }
    }

    /// Forgets a half-assembled answer (the connection is gone).
    pub(super) fn clear(&mut self) {
        *self = Parts::default();
    }

    fn start(&mut self, id: u32, room: String) {
        if self.key.as_ref() != Some(&(id, room.clone())) {
            self.clear();
            self.key = Some((id, room));
        }
    }

    fn finish<T>(
        &mut self,
        id: u32,
        room: &str,
        list: impl Fn(&mut Parts) -> &mut Vec<T>,
        last: Vec<T>,
    ) -> Vec<T> {
        let ours = matches!(&self.key, Some((i, r)) if *i == id && r == room);
        let mut all = if ours {
            std::mem::take(list(self))
        } else {
            Vec::new()
        };
        self.clear();
        all.extend(last);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_protocol::paging;
    use std::net::SocketAddr;

    fn peers(n: usize) -> Vec<PeerInfo> {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        (0..n)
            .map(|i| PeerInfo {
                name: format!("user{i:05}"),
                addr,
            })
            .collect()
    }

    #[test]
    fn parts_and_final_frame_give_back_the_whole_list() {
        let all = peers(3_000);
        let msgs = paging::room_joined("lobby".into(), all.clone(), 4096);
        assert!(msgs.len() > 2);
        let mut parts = Parts::default();
        let mut out: Vec<Msg> = msgs
            .into_iter()
            .filter_map(|m| parts.absorb(5, m))
            .collect();
        assert_eq!(out.len(), 1);
        let room = "lobby".to_string();
        assert_eq!(out.pop(), Some(Msg::RoomJoined { room, peers: all }));
        assert!(parts.key.is_none() && parts.peers.is_empty());
    }

    #[test]
    fn parts_of_another_answer_are_not_mixed_in() {
        let mut parts = Parts::default();
        let stray = Msg::RoomJoinedPart {
            room: "other".into(),
            peers: peers(2),
        };
        assert_eq!(parts.absorb(0, stray), None);
        let last = Msg::RoomJoined {
            room: "lobby".into(),
            peers: peers(1),
        };
        assert_eq!(parts.absorb(0, last.clone()), Some(last));
        // A member-list part for request 3, then the final frame of request 4: not ours.
        let part = Msg::MemberListPart {
            room: "lobby".into(),
            members: vec![MemberInfo {
                name: "x".into(),
                admin: false,
                online: true,
            }],
        };
        assert_eq!(parts.absorb(3, part), None);
        let last = Msg::MemberList {
            room: "lobby".into(),
            members: Vec::new(),
        };
        assert_eq!(parts.absorb(4, last.clone()), Some(last));
    }
}
