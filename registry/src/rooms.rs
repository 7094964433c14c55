//! The room directory: rooms, members and roles (a write-through cache of the SQLite tables),
//! the room requests, and the events pushed to a room's online members.
//!
//! Membership is persistent; delivery is to online members. Every change is applied in memory
//! only after the store commits it, and the reply and the pushed events follow from there.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::time::Instant;

use p2pchat_protocol::names::is_valid_name;
use p2pchat_protocol::{
    paging, status, Frame, MemberInfo, Msg, PeerInfo, RoomEvent, RoomInfo, DEFAULT_MAX_FRAME,
};

use crate::io::ConnId;
use crate::registry::{Pending, Registry};
use crate::store::{
    AccountId, Role, RoomId, Snapshot, StoreDone, StoreError, StoreOk, StoreRequest,
};

/// The largest body of a paged answer: what every client accepts by default, so a
/// 10,000-member room's peer list (about 220 KB) goes out as parts a client can read.
const PAGE: usize = DEFAULT_MAX_FRAME as usize;

#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) name: String,
    /// Members by account: role and join order (admin succession picks the smallest).
    members: HashMap<AccountId, (Role, i64)>,
    /// The same members in join order, so that pushes and member lists walk them in a fixed
    /// order without collecting and sorting the whole room on every join (a join storm of n
    /// peers would otherwise cost O(n² log n) at the registry).
    order: BTreeMap<i64, AccountId>,
    /// Members whose role is admin (kept so a leave need not count them).
    admins: usize,
}

impl Room {
    fn new(name: String) -> Room {
        Room {
            name,
            members: HashMap::new(),
            order: BTreeMap::new(),
            admins: 0,
        }
    }

    fn admins(&self) -> usize {
        self.admins
    }

    /// The oldest member by join order.
    fn oldest(&self) -> Option<AccountId> {
        self.order.values().next().copied()
    }

    fn is_admin(&self, account: AccountId) -> bool {
        self.members
            .get(&account)
            .is_some_and(|(r, _)| *r == Role::Admin)
    }

    fn insert(&mut self, account: AccountId, role: Role, seq: i64) {
        if let Some((old_role, old_seq)) = self.members.insert(account, (role, seq)) {
            self.order.remove(&old_seq);
            if old_role == Role::Admin {
                self.admins -= 1;
            }
        }
        self.order.insert(seq, account);
        if role == Role::Admin {
            self.admins += 1;
        }
    }

    fn remove(&mut self, account: AccountId) -> bool {
        let Some((role, seq)) = self.members.remove(&account) else {
            return false;
        };
        self.order.remove(&seq);
        if role == Role::Admin {
            self.admins -= 1;
        }
        true
    }

    fn make_admin(&mut self, account: AccountId) -> bool {
        match self.members.get_mut(&account) {
            Some(m) => {
                if m.0 != Role::Admin {
                    m.0 = Role::Admin;
                    self.admins += 1;
                }
                true
            }
            None => false,
        }
    }

    /// Members in join order.
    fn in_order(&self) -> impl Iterator<Item = AccountId> + '_ {
        self.order.values().copied()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Rooms {
    by_id: HashMap<RoomId, Room>,
    by_name: BTreeMap<String, RoomId>,
    of_account: HashMap<AccountId, BTreeSet<RoomId>>,
    reserved: HashSet<String>,
}

impl Rooms {
    pub(crate) fn load(snapshot: &Snapshot) -> Rooms {
        let mut rooms = Rooms::default();
        for r in &snapshot.rooms {
            rooms.by_name.insert(r.name.clone(), r.id);
            rooms.by_id.insert(r.id, Room::new(r.name.clone()));
        }
        for m in &snapshot.members {
            rooms.add_member(m.room_id, m.account_id, m.role, m.joined_seq);
        }
        rooms
    }

    fn add_member(&mut self, room: RoomId, account: AccountId, role: Role, seq: i64) {
        if let Some(r) = self.by_id.get_mut(&room) {
            r.insert(account, role, seq);
            self.of_account.entry(account).or_default().insert(room);
        }
    }

    fn remove_member(&mut self, room: RoomId, account: AccountId) -> bool {
        let removed = self.by_id.get_mut(&room).is_some_and(|r| r.remove(account));
        if let Some(set) = self.of_account.get_mut(&account) {
            set.remove(&room);
            if set.is_empty() {
                self.of_account.remove(&account);
            }
        }
        removed
    }

    fn id(&self, name: &str) -> Option<RoomId> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn rooms_of(&self, account: AccountId) -> Vec<RoomId> {
        self.of_account
            .get(&account)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

impl Registry {
    fn room_member_check(
        &mut self,
        conn: ConnId,
        id: u32,
        room: &str,
    ) -> Option<(AccountId, RoomId)> {
        let account = self.require_login(conn, id)?;
        let Some(room_id) = self.rooms.id(room) else {
            self.error(conn, id, status::NO_SUCH_ROOM);
            return None;
        };
        Some((account, room_id))
    }

    pub(crate) fn handle_room_request(&mut self, now: Instant, conn: ConnId, id: u32, msg: Msg) {
        match msg {
            Msg::CreateRoom { room } => self.handle_create_room(now, conn, id, room),
            Msg::ListRooms { after, limit } => self.handle_list_rooms(conn, id, &after, limit),
            Msg::JoinRoom { room } => self.handle_join(conn, id, &room),
            Msg::LeaveRoom { room } => self.handle_leave(conn, id, &room),
            Msg::ListMembers { room } => self.handle_members(conn, id, &room),
            Msg::Kick { room, name } => self.handle_kick_or_promote(conn, id, &room, &name, true),
            Msg::Promote { room, name } => {
                self.handle_kick_or_promote(conn, id, &room, &name, false)
            }
            _ => {}
        }
    }

    fn handle_create_room(&mut self, now: Instant, conn: ConnId, id: u32, room: String) {
        let Some(account) = self.require_login(conn, id) else {
            return;
        };
        if !is_valid_name(&room) {
            return self.error(conn, id, status::INVALID_ROOM_NAME);
        }
        if self.rooms.by_name.contains_key(&room) || self.rooms.reserved.contains(&room) {
            return self.error(conn, id, status::ROOM_EXISTS);
        }
        if !self.store_capacity_ok(conn, id) {
            return;
        }
        self.rooms.reserved.insert(room.clone());
        let created_ms = self.wall_ms(now);
        self.submit_store(
            StoreRequest::CreateRoom {
                name: room.clone(),
                creator: account,
                created_ms,
            },
            Pending::CreateRoom {
                conn,
                req: id,
                account,
                room,
            },
        );
    }

    fn handle_list_rooms(&mut self, conn: ConnId, id: u32, after: &str, limit: u16) {
        if self.require_login(conn, id).is_none() {
            return;
        }
        let limit = usize::from(if limit == 0 {
            100
        } else {
            limit.min(self.config.max_page)
        });
        let start = if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after.to_owned())
        };
        let mut it = self.rooms.by_name.range((start, Bound::Unbounded));
        let mut rooms = Vec::new();
        for (name, room_id) in it.by_ref().take(limit) {
            let Some(r) = self.rooms.by_id.get(room_id) else {
                continue;
            };
            let online = r
                .members
                .keys()
                .filter(|a| self.presence.session_of(**a).is_some())
                .count();
            rooms.push(RoomInfo {
                name: name.clone(),
                members: r.members.len() as u32,
                online: online as u32,
            });
        }
        let more = it.next().is_some();
        self.reply(conn, id, Msg::RoomList { rooms, more });
    }

    /// The other online members of a room and their peer addresses, in join order.
    fn online_peers(&self, room_id: RoomId, except: AccountId) -> Vec<PeerInfo> {
        let Some(r) = self.rooms.by_id.get(&room_id) else {
            return Vec::new();
        };
        // Sized for the whole room at once: in a join storm this list is built for every
        // joiner, and growing it by doubling copied each one about twice more.
        let mut peers = Vec::with_capacity(r.members.len());
        // The session carries the (shared) name: one lookup per member, not an account one too.
        peers.extend(r.in_order().filter(|a| *a != except).filter_map(|a| {
            let s = self.presence.session_of_account(a)?;
            Some(PeerInfo {
                name: s.name.to_string(),
                addr: s.addr,
            })
        }));
        peers
    }

    fn handle_join(&mut self, conn: ConnId, id: u32, room: &str) {
        let Some((account, room_id)) = self.room_member_check(conn, id, room) else {
            return;
        };
        let Some(r) = self.rooms.by_id.get(&room_id) else {
            return;
        };
        // Joining a room one is in already answers with the online members again: that is how
        // a peer re-joins its rooms after a reconnect, without a write or an event.
        if r.members.contains_key(&account) {
            let peers = self.online_peers(room_id, account);
            let room = room.to_owned();
            return self.reply_paged(conn, id, paging::room_joined(room, peers, PAGE));
        }
        // An empty room has no admin: whoever joins it first becomes admin.
        let role = if r.members.is_empty() {
            Role::Admin
        } else {
            Role::Member
        };
        if !self.store_capacity_ok(conn, id) {
            return;
        }
        self.submit_store(
            StoreRequest::AddMember {
                room_id,
                account_id: account,
                role,
            },
            Pending::Join {
                conn,
                req: id,
                account,
                room_id,
                role,
            },
        );
    }

    fn handle_leave(&mut self, conn: ConnId, id: u32, room: &str) {
        let Some((account, room_id)) = self.room_member_check(conn, id, room) else {
            return;
        };
        if !self
            .rooms
            .by_id
            .get(&room_id)
            .is_some_and(|r| r.members.contains_key(&account))
        {
            return self.error(conn, id, status::NOT_A_MEMBER);
        }
        if !self.store_capacity_ok(conn, id) {
            return;
        }
        self.submit_store(
            StoreRequest::RemoveMember {
                room_id,
                account_id: account,
            },
            Pending::Remove {
                conn,
                req: id,
                room_id,
                target: account,
                by: None,
            },
        );
    }

    fn handle_members(&mut self, conn: ConnId, id: u32, room: &str) {
        let Some((_, room_id)) = self.room_member_check(conn, id, room) else {
            return;
        };
        let Some(r) = self.rooms.by_id.get(&room_id) else {
            return;
        };
        let members = r
            .order
            .values()
            .filter_map(|a| {
                let (role, _) = r.members.get(a)?;
                let name = self.accounts.name_of(*a)?;
                let online = self.presence.session_of(*a).is_some();
                Some(MemberInfo {
                    name,
                    admin: *role == Role::Admin,
                    online,
                })
            })
            .collect();
        let room = room.to_owned();
        self.reply_paged(conn, id, paging::member_list(room, members, PAGE));
    }

    /// Sends a paged answer: its leading parts and its final frame, all with the request id.
    fn reply_paged(&mut self, conn: ConnId, id: u32, msgs: Vec<Msg>) {
        for msg in msgs {
            self.reply(conn, id, msg);
        }
    }

    fn handle_kick_or_promote(
        &mut self,
        conn: ConnId,
        id: u32,
        room: &str,
        name: &str,
        kick: bool,
    ) {
        let Some((account, room_id)) = self.room_member_check(conn, id, room) else {
            return;
        };
        let Some(r) = self.rooms.by_id.get(&room_id) else {
            return;
        };
        if !r.members.contains_key(&account) {
            return self.error(conn, id, status::NOT_A_MEMBER);
        }
        if !r.is_admin(account) {
            return self.error(conn, id, status::NOT_ADMIN);
        }
        let target = self
            .accounts
            .by_name(name)
            .map(|a| a.id)
            .filter(|t| r.members.contains_key(t));
        let Some(target) = target else {
            return self.error(conn, id, status::USER_NOT_IN_ROOM);
        };
        if !kick && r.is_admin(target) {
            return self.reply(conn, id, Msg::Ok);
        }
        // Admins rank by seniority: one may not kick an admin who joined before it (so a
        // co-admin cannot kick the room's creator).
        let joined = |a: AccountId| r.members.get(&a).map(|(_, seq)| *seq);
        if kick && r.is_admin(target) && joined(target) < joined(account) {
            let message = format!("only a more senior admin can kick {name}");
            return self.reply_error(conn, id, status::NOT_ADMIN, &message);
        }
        if !self.store_capacity_ok(conn, id) {
            return;
        }
        if kick {
            self.submit_store(
                StoreRequest::RemoveMember {
                    room_id,
                    account_id: target,
                },
                Pending::Remove {
                    conn,
                    req: id,
                    room_id,
                    target,
                    by: Some(account),
                },
            );
        } else {
            self.submit_store(
                StoreRequest::SetRole {
                    room_id,
                    account_id: target,
                    role: Role::Admin,
                },
                Pending::Promote {
                    conn: Some((conn, id)),
                    room_id,
                    target,
                },
            );
        }
    }

    /// Sends a room event to every online member of the room except `except`.
    pub(crate) fn push_room_event(
        &mut self,
        room_id: RoomId,
        event: RoomEvent,
        except: Option<AccountId>,
    ) {
        let Some(r) = self.rooms.by_id.get(&room_id) else {
            return;
        };
        let frame = Frame::event(Msg::Room {
            room: r.name.clone(),
            event,
        });
        // Join order, not a sorted copy: the pushes go out in a fixed order (the simulator's
        // runs stay reproducible) at O(1) per online member.
        let conns: Vec<ConnId> = r
            .in_order()
            .filter(|a| Some(*a) != except)
            .filter_map(|a| self.presence.session_of_account(a).map(|s| s.conn))
            .collect();
        // Encoded once; every member gets the same bytes (a reference count, not a copy).
        let bytes = frame.to_bytes();
        for conn in conns {
            self.send_bytes(conn, bytes.clone());
        }
    }

    /// Tells the account's rooms that it changed (online, offline, renamed).
    pub(crate) fn push_to_rooms_of(&mut self, account: AccountId, event: RoomEvent) {
        for room_id in self.rooms.rooms_of(account) {
            self.push_room_event(room_id, event.clone(), Some(account));
        }
    }

    /// Tells a client that just logged in (or resumed) which rooms it is in, with each room's
    /// online members: one `RoomJoined` event (id 0) per room. Memberships persist across
    /// logouts and restarts, so this is how a peer learns them and re-forms its overlays.
    pub(crate) fn push_memberships(&mut self, conn: ConnId, account: AccountId) {
        for room_id in self.rooms.rooms_of(account) {
            let peers = self.online_peers(room_id, account);
            let Some(room) = self.rooms.by_id.get(&room_id).map(|r| r.name.clone()) else {
                continue;
            };
            for msg in paging::room_joined(room, peers, PAGE) {
                self.send_frame(conn, &Frame::event(msg));
            }
        }
    }

    /// If a room has members but no admin left, the oldest member becomes admin.
    fn ensure_admin(&mut self, room_id: RoomId) {
        let Some(r) = self.rooms.by_id.get(&room_id) else {
            return;
        };
        if r.admins() > 0 {
            return;
        }
        let Some(oldest) = r.oldest() else {
            return;
        };
        self.submit_store(
            StoreRequest::SetRole {
                room_id,
                account_id: oldest,
                role: Role::Admin,
            },
            Pending::Promote {
                conn: None,
                room_id,
                target: oldest,
            },
        );
    }

    pub(crate) fn handle_room_store_done(&mut self, pending: Pending, done: StoreDone) {
        match pending {
            Pending::CreateRoom {
                conn,
                req,
                account,
                room,
            } => {
                self.rooms.reserved.remove(&room);
                match done.result {
                    Ok(StoreOk::Room { id, joined_seq }) => {
                        self.rooms.by_name.insert(room.clone(), id);
                        self.rooms.by_id.insert(id, Room::new(room));
                        self.rooms.add_member(id, account, Role::Admin, joined_seq);
                        self.reply(conn, req, Msg::Ok);
                    }
                    Err(StoreError::NameTaken) => self.error(conn, req, status::ROOM_EXISTS),
                    other => self.store_failed(conn, req, &other),
                }
            }
            Pending::Join {
                conn,
                req,
                account,
                room_id,
                role,
            } => {
                let Ok(StoreOk::Member { joined_seq }) = done.result else {
                    return self.store_failed(conn, req, &done.result);
                };
                self.rooms.add_member(room_id, account, role, joined_seq);
                // Name and address from the session, as in `online_peers`.
                let joined = self
                    .presence
                    .session_of_account(account)
                    .map(|s| (s.name.to_string(), s.addr));
                if let Some((name, addr)) = joined {
                    self.push_room_event(room_id, RoomEvent::Joined { name, addr }, Some(account));
                }
                let peers = self.online_peers(room_id, account);
                let room = self
                    .rooms
                    .by_id
                    .get(&room_id)
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                self.reply_paged(conn, req, paging::room_joined(room, peers, PAGE));
            }
            Pending::Remove {
                conn,
                req,
                room_id,
                target,
                by,
            } => {
                if done.result.is_err() {
                    return self.store_failed(conn, req, &done.result);
                }
                let name = self.accounts.name_of(target).unwrap_or_default();
                // A kicked member hears of it too (it stops receiving), so it is told before
                // it is removed; a leaver has its reply.
                if let Some(by) = by {
                    let by = self.accounts.name_of(by).unwrap_or_default();
                    let removed = self
                        .rooms
                        .by_id
                        .get(&room_id)
                        .is_some_and(|r| r.members.contains_key(&target));
                    if removed {
                        self.push_room_event(room_id, RoomEvent::Kicked { name, by }, None);
                    }
                    self.rooms.remove_member(room_id, target);
                } else if self.rooms.remove_member(room_id, target) {
                    self.push_room_event(room_id, RoomEvent::Left { name }, None);
                }
                self.reply(conn, req, Msg::Ok);
                self.ensure_admin(room_id);
            }
            Pending::Promote {
                conn,
                room_id,
                target,
            } => {
                if done.result.is_err() {
                    if let Some((conn, req)) = conn {
                        self.error(conn, req, status::INTERNAL);
                    }
                    return;
                }
                let still_member = self
                    .rooms
                    .by_id
                    .get_mut(&room_id)
                    .is_some_and(|r| r.make_admin(target));
                if still_member {
                    let name = self.accounts.name_of(target).unwrap_or_default();
                    self.push_room_event(room_id, RoomEvent::Promoted { name }, None);
                } else {
                    // The member left before the promotion committed: pick again.
                    self.ensure_admin(room_id);
                }
                if let Some((conn, req)) = conn {
                    self.reply(conn, req, Msg::Ok);
                }
            }
            _ => {}
        }
    }

    /// Rooms in the directory.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}
