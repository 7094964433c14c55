//! Signed room messages between real nodes and the real registry (docs/security.md, layer 4):
//! what a rename does to them.

use std::sync::Arc;
use std::time::Duration;

use p2pchat_protocol::secure::Identity;

use super::*;
use crate::room::RoomSigner;

const ROOM: &str = "lab";

fn with_identity(c: &mut Config) {
    let id = Arc::new(Identity::generate_from_os().unwrap());
    c.identity_key = Some(id.public_key().0);
    c.identity = Some(RoomSigner::new(id));
}

/// A world whose registry has an identity, so it issues tickets.
fn signing_world() -> World {
    let mut w = World::new();
    let registry = Arc::new(Identity::generate_from_os().unwrap());
    w.registry
        .registry
        .as_mut()
        .unwrap()
        .set_identity(registry, Duration::from_secs(600));
    w
}

fn shown(w: &mut World, i: usize) -> Vec<(String, String)> {
    w.shown_in(i, ROOM)
}

/// A room message typed after a rename is answered but before the ticket for the new name
/// arrives (one registry round trip) would carry the old name's ticket, and every member would
/// refuse it: it is held and sent, signed for the new name, once the ticket is here.
#[test]
fn a_room_message_right_after_a_rename_waits_for_the_new_ticket() {
    let mut w = signing_world();
    let a = w.add_user("alice", with_identity);
    let b = w.add_user("bob", with_identity);
    assert!(w.peers[a].node.ticket().is_some(), "alice holds a ticket");
    w.line(a, &format!("/create {ROOM}"));
    w.line(b, &format!("/join {ROOM}"));
    w.run_for(Duration::from_secs(10));
    w.line(a, &format!("/say {ROOM} before"));
    assert_eq!(
        shown(&mut w, b),
        [("alice".to_string(), "before".to_string())]
    );

    // The rename's store write is parked, so its answer comes when we say; the line typed
    // next is queued right behind that answer, before the ticket request it triggers is
    // answered.
    w.registry.hold_stores = true;
    w.line(a, "/rename alicia");
    w.registry.hold_stores = false;
    let out = w.registry.release(w.now);
    w.deliver(out);
    let say: Command = parse(&format!("/say {ROOM} right after")).unwrap().unwrap();
    w.queue.push_back((a, Input::Command(say)));
    w.pump();
    w.run_for(Duration::from_secs(1));
    let refused = w.peers[b].node.room_stats(ROOM).unwrap().refused;
    assert_eq!(refused, 0, "nothing bob had to refuse");
    assert_eq!(
        shown(&mut w, b),
        [("alicia".to_string(), "right after".to_string())]
    );
}

/// Between a rename's answer and the ticket for the new name, the node offers no ticket for
/// peer links (the driver holds them meanwhile): the old one names the old name while the
/// hello claims the new one, and the peer would refuse the link.
#[test]
fn no_ticket_for_peer_links_until_the_new_name_has_one() {
    let mut w = signing_world();
    let a = w.add_user("alice", with_identity);
    let old = w.peers[a].node.ticket().map(|(t, _)| t.to_vec());
    assert!(old.is_some(), "alice holds a ticket");

    w.registry.hold_stores = true;
    w.line(a, "/rename alicia");
    w.registry.hold_stores = false;
    let out = w.registry.release(w.now);
    w.deliver(out);
    // Only the rename's answer: alice asks for the new ticket, whose answer now waits in
    // the queue behind it.
    let (i, input) = w.queue.pop_front().expect("the rename's answer");
    assert_eq!(i, a);
    let now = w.now;
    w.peers[a].node.handle_input(now, input);
    while let Some(out) = w.peers[a].node.poll_output() {
        w.carry_out(a, out);
    }
    assert_eq!(w.peers[a].node.name(), Some("alicia"));
    assert!(
        w.peers[a].node.ticket().is_none(),
        "the old name's ticket is not offered"
    );

    w.pump();
    let new = w.peers[a].node.ticket().map(|(t, _)| t.to_vec());
    assert!(new.is_some(), "the new ticket came");
    assert_ne!(new, old);
}
