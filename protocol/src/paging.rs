//! Lists too long for one frame. A `RoomJoined` or `MemberList` of a room with thousands of
//! members does not fit in the 64 KiB a receiver accepts (a 10,000-member room's peer list is
//! about 220 KB), so the sender splits it: zero or more leading parts (`RoomJoinedPart`,
//! `MemberListPart`) with the same request id and room, then the final frame of the usual kind
//! with the rest. The receiver appends the parts' entries, in order, before the final frame's.
//! A list that fits is sent exactly as before, as one frame.

use crate::frame::BODY_HEADER;
use crate::msg::{MemberInfo, Msg, PeerInfo};
use crate::wire::{addr_len, str_len};

/// The frames that carry the answer to a join of `room` (leading parts, then one `RoomJoined`),
/// each body at most `max_body` bytes.
pub fn room_joined(room: String, peers: Vec<PeerInfo>, max_body: usize) -> Vec<Msg> {
    let budget = list_budget(&room, max_body);
    let pages = split(peers, budget, |p| str_len(&p.name) + addr_len(&p.addr));
    assemble(
        room,
        pages,
        |room, peers| Msg::RoomJoinedPart { room, peers },
        |room, peers| Msg::RoomJoined { room, peers },
    )
}

/// The frames that carry a member list of `room` (leading parts, then one `MemberList`), each
/// body at most `max_body` bytes.
pub fn member_list(room: String, members: Vec<MemberInfo>, max_body: usize) -> Vec<Msg> {
    let budget = list_budget(&room, max_body);
    let pages = split(members, budget, |m| str_len(&m.name) + 2);
    assemble(
        room,
        pages,
        |room, members| Msg::MemberListPart { room, members },
        |room, members| Msg::MemberList { room, members },
    )
}

/// Bytes left for list entries in a body: the body header, the room name and the count go
/// first.
fn list_budget(room: &str, max_body: usize) -> usize {
    max_body.saturating_sub(BODY_HEADER + str_len(room) + 2)
}

/// Splits `items` into pages of at most `budget` bytes and at most `u16::MAX` entries (the
/// count is a u16). Never returns zero pages, and never an empty page but for an empty list; an
/// entry larger than the whole budget still gets a page of its own, so the split always ends.
fn split<T>(items: Vec<T>, budget: usize, len: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut pages = Vec::new();
    let mut page = Vec::new();
    let mut used = 0;
    for item in items {
        let n = len(&item);
        if !page.is_empty() && (used + n > budget || page.len() == u16::MAX as usize) {
            pages.push(std::mem::take(&mut page));
            used = 0;
        }
        used += n;
        page.push(item);
    }
    pages.push(page);
    pages
}

fn assemble<T>(
    room: String,
    mut pages: Vec<Vec<T>>,
    part: impl Fn(String, Vec<T>) -> Msg,
    last: impl Fn(String, Vec<T>) -> Msg,
) -> Vec<Msg> {
    let final_page = pages.pop().unwrap_or_default();
    let mut out: Vec<Msg> = pages.into_iter().map(|p| part(room.clone(), p)).collect();
    out.push(last(room, final_page));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::DEFAULT_MAX_FRAME;
    use crate::Frame;
    use proptest::prelude::*;
    use std::net::{Ipv6Addr, SocketAddr};

    fn peer(i: usize) -> PeerInfo {
        PeerInfo {
            // The longest names there are: every entry as large as it gets.
            name: format!("{i:0>32}"),
            addr: SocketAddr::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, i as u16).into(), 9),
        }
    }

    /// Encodes each message, checks its size, decodes it back and joins the lists.
    fn roundtrip(msgs: &[Msg], max_body: usize) -> Vec<PeerInfo> {
        let mut all = Vec::new();
        for (i, msg) in msgs.iter().enumerate() {
            let frame = Frame {
                id: 7,
                msg: msg.clone(),
            };
            assert!(
                frame.body_len() <= max_body,
                "part {i}: {}",
                frame.body_len()
            );
            let bytes = frame.to_bytes();
            let back = Frame::decode(&bytes[4..]).expect("decodes");
            match (i + 1 == msgs.len(), back.msg) {
                (false, Msg::RoomJoinedPart { room, peers })
                | (true, Msg::RoomJoined { room, peers }) => {
                    assert_eq!(room, "lobby");
                    assert!(!peers.is_empty() || msgs.len() == 1);
                    all.extend(peers);
                }
                (last, other) => panic!("part {i} (last: {last}) is {}", other.kind_name()),
            }
        }
        all
    }

    #[test]
    fn a_list_that_fits_is_one_unchanged_frame() {
        let peers: Vec<PeerInfo> = (0..3).map(peer).collect();
        let msgs = room_joined("lobby".into(), peers.clone(), DEFAULT_MAX_FRAME as usize);
        let room = "lobby".to_string();
        assert_eq!(msgs, vec![Msg::RoomJoined { room, peers }]);
        assert_eq!(room_joined("lobby".into(), Vec::new(), 64).len(), 1);
    }

    #[test]
    fn ten_thousand_peers_split_into_frames_under_the_limit_in_order() {
        let peers: Vec<PeerInfo> = (0..10_000).map(peer).collect();
        let max = DEFAULT_MAX_FRAME as usize;
        let msgs = room_joined("lobby".into(), peers.clone(), max);
        assert!(msgs.len() >= 8, "{} frames for ~520 KB", msgs.len());
        assert_eq!(roundtrip(&msgs, max), peers);
    }

    #[test]
    fn member_lists_split_the_same_way() {
        let members: Vec<MemberInfo> = (0..5_000)
            .map(|i| MemberInfo {
                name: format!("m{i:0>31}"),
                admin: i == 0,
                online: i % 2 == 0,
            })
            .collect();
        let msgs = member_list("lobby".into(), members.clone(), 4096);
        let mut all = Vec::new();
        for (i, msg) in msgs.iter().enumerate() {
            let frame = Frame {
                id: 1,
                msg: msg.clone(),
            };
            assert!(frame.body_len() <= 4096);
            match (
                i + 1 == msgs.len(),
                Frame::decode(&frame.to_bytes()[4..]).unwrap().msg,
            ) {
                (false, Msg::MemberListPart { members, .. })
                | (true, Msg::MemberList { members, .. }) => all.extend(members),
                (_, other) => panic!("unexpected {}", other.kind_name()),
            }
        }
        assert_eq!(all, members);
    }

    proptest! {
        #[test]
        fn any_split_keeps_every_entry_in_order_within_the_limit(
            n in 0usize..600, max_body in 120usize..3000,
        ) {
            let peers: Vec<PeerInfo> = (0..n).map(peer).collect();
            let msgs = room_joined("lobby".into(), peers.clone(), max_body);
            prop_assert_eq!(roundtrip(&msgs, max_body), peers);
        }
    }
}
