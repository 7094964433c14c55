//! Which members of a room a peer links to, and the bounded view of the room it picks from.
//!
//! Each peer links to its **successor** in the ring of online members sorted by name, which
//! keeps the overlay connected whenever the members agree on who is online (every peer's
//! successor link together form a ring), plus random others until it has `degree` links, which
//! keeps the diameter, and so the hop count, small. A room no larger than `degree + 1` is a full
//! mesh. Links are symmetric once open, whoever opened them; a peer accepts inbound links up to
//! `2 * degree + 2` so the ring never starves while random links stay bounded.
//!
//! A peer does not keep the whole online member list (at 10,000 members that alone was ~27 GB
//! over a simulated room): its [`View`] holds the next [`SUCC_KEEP`] members after it in the
//! ring, a reservoir sample of [`SAMPLE`] others, and a bounded log of recent arrivals and
//! departures. Everything is kept up to date from the registry's pushes; a view that ran short
//! (members left) asks the registry for the list again ([`View::needs_refill`]).
//!
//! It does keep who is online, as one keyed 64-bit hash per member (about 16 bytes each, not
//! the ~270 of a name and an address in ordered maps): a room link is accepted only from a
//! member the registry said is online ([`View::is_online`]), so a peer that is not in the room
//! cannot link to read its messages.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault};
use std::net::SocketAddr;

use p2pchat_engine::IdHasher;
use rand::seq::IndexedRandom;
use rand::Rng;

/// Successors kept: twice what is needed, so that most departures do not cost a refill.
pub const SUCC_KEEP: usize = 16;
/// Below this many successors (and with more members online) the view asks for a refill.
pub const SUCC_WANT: usize = 8;
/// Size of the random sample of members (a few times any usual degree).
pub const SAMPLE: usize = 32;
/// Arrivals and departures remembered (name hash and mark: 16 bytes each), for the catch-up
/// marks of members that link to us (a departure since clears a member's mark).
pub const RECENT: usize = 2048;

/// Where the successor list's knowledge ends, in ring order from us.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Horizon {
    /// Every online member up to and including this one is in the list.
    Upto(String),
    /// The list holds every online member we know of: the whole ring.
    All,
    /// Nothing is known (our name changed): every successor waits for the next full list.
    Empty,
}

/// One peer's bounded view of a room's online members (see the module docs). Every operation
/// is O(SUCC_KEEP + SAMPLE) or better, whatever the room's size.
#[derive(Debug, Clone)]
pub struct View {
    me: String,
    /// The nearest online members after `me` in ring order, nearest first: always the true
    /// ones up to `horizon` when every push was seen.
    succ: Vec<Member>,
    horizon: Horizon,
    /// A uniform sample of the members offered (reservoir sampling), minus those gone since.
    sample: Vec<Member>,
    /// Members offered to the reservoir since the last full list.
    offered: u64,
    /// Every other online member, from the last full list and the pushes since, as its name
    /// hashed with `key`: random per view, so nobody can pick a name that passes for another.
    online: HashSet<u64, BuildHasherDefault<IdHasher>>,
    key: RandomState,
    /// The latest arrivals (`Some(mark)`, see `tree::Broadcast::mark`) and departures (`None`),
    /// by name hash, oldest first.
    recent: VecDeque<(u64, Option<u64>)>,
}

fn ring_key<'a>(me: &str, n: &'a str) -> (bool, &'a str) {
    // Names after `me` come first, then the ones that wrap around.
    (n <= me, n)
}

/// FNV-1a: names are short, and every push looks its name up in the view, so the lookups
/// compare these first and the strings only on a match.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A member in the view.
#[derive(Debug, Clone)]
struct Member {
    hash: u64,
    name: String,
    addr: SocketAddr,
}

impl Member {
    fn is(&self, hash: u64, name: &str) -> bool {
        self.hash == hash && self.name == name
    }
}

impl View {
    /// An empty view (a room nobody else is in, as far as we know).
    pub fn new(me: &str) -> View {
        View {
            me: me.to_string(),
            succ: Vec::new(),
            horizon: Horizon::All,
            sample: Vec::new(),
            offered: 0,
            online: HashSet::default(),
            key: RandomState::new(),
            recent: VecDeque::new(),
        }
    }

    fn keyed(&self, name: &str) -> u64 {
        self.key.hash_one(name)
    }

    /// Counts `name` as online without an address (a neighbour whose link is up although a
    /// list after a registry restart did not name it yet).
    pub fn keep_online(&mut self, name: &str) {
        if name != self.me {
            self.online.insert(self.keyed(name));
        }
    }

    /// Whether the registry said `name` is online in the room (and it has not left since).
    pub fn is_online(&self, name: &str) -> bool {
        self.online.contains(&self.keyed(name))
    }

    /// Replaces what the view knows of the online members with a full list (a join reply or
    /// a refill), keeping the log of recent arrivals and departures.
    pub fn reset(
        &mut self,
        me: &str,
        members: impl IntoIterator<Item = (String, SocketAddr)>,
        rng: &mut impl Rng,
    ) {
        self.me = me.to_string();
        self.succ.clear();
        self.horizon = Horizon::All;
        self.sample.clear();
        self.offered = 0;
        self.online.clear();
        let members = members.into_iter();
        self.online.reserve(members.size_hint().0);
        for (name, addr) in members {
            if name != self.me && self.online.insert(self.keyed(&name)) {
                self.offer(&name, addr, rng);
            }
        }
    }

    /// Who the view is for.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Our name changed: the ring order from us is a different one, so the successors are
    /// unknown until the next full list.
    pub fn set_me(&mut self, me: &str) {
        if self.me != me {
            self.me = me.to_string();
            self.succ.clear();
            self.horizon = Horizon::Empty;
        }
    }

    /// How many other members are online, as far as we know.
    pub fn len(&self) -> usize {
        self.online.len()
    }

    /// Whether nobody else is online, as far as we know.
    pub fn is_empty(&self) -> bool {
        self.online.is_empty()
    }

    /// Whether `name` is in the view (a successor or in the sample).
    pub fn contains(&self, name: &str) -> bool {
        let h = name_hash(name);
        self.succ.iter().chain(&self.sample).any(|m| m.is(h, name))
    }

    /// The peer listener of `name`, if in the view.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        let h = name_hash(name);
        self.succ
            .iter()
            .chain(&self.sample)
            .find(|m| m.is(h, name))
            .map(|m| m.addr)
    }

    /// `name` joined or came online (at `addr`): counted, and kept if it is one of our
    /// successors or drawn into the sample. True if it was not in the view yet.
    pub fn insert(&mut self, name: &str, addr: SocketAddr, rng: &mut impl Rng) -> bool {
        if name == self.me {
            return false;
        }
        if self.online.insert(self.keyed(name)) {
            // Not counted online before, so not in the view either (the view holds only members
            // counted online): the common case in a join storm skips the scan below.
            self.offer(name, addr, rng);
            return true;
        }
        let h = name_hash(name);
        for m in self.succ.iter_mut().chain(self.sample.iter_mut()) {
            if m.is(h, name) {
                m.addr = addr;
            }
        }
        false
    }

    /// Counts `name` into the successors and the reservoir; the name is copied only when kept
    /// (in a big room nearly every member offered is passed over).
    fn offer(&mut self, name: &str, addr: SocketAddr, rng: &mut impl Rng) {
        self.offer_succ(name, addr);
        self.offered += 1;
        let slot = if self.sample.len() < SAMPLE {
            None
        } else {
            match usize::try_from(rng.random_range(0..self.offered)) {
                Ok(j) if j < SAMPLE => Some(j),
                _ => return,
            }
        };
        let m = Member {
            hash: name_hash(name),
            name: name.to_string(),
            addr,
        };
        match slot {
            None => self.sample.push(m),
            Some(j) => self.sample[j] = m,
        }
    }

    fn within_horizon(&self, k: (bool, &str)) -> bool {
        match &self.horizon {
            Horizon::All => true,
            Horizon::Empty => false,
            Horizon::Upto(h) => k <= ring_key(&self.me, h),
        }
    }

    fn offer_succ(&mut self, name: &str, addr: SocketAddr) {
        let me = self.me.as_str();
        let k = ring_key(me, name);
        if !self.within_horizon(k) {
            // Beyond what we know: there may be members between it and our last one.
            return;
        }
        let pos = self.succ.partition_point(|m| ring_key(me, &m.name) < k);
        if let Some(m) = self.succ.get_mut(pos).filter(|m| m.name == name) {
            m.addr = addr;
            return;
        }
        let m = Member {
            hash: name_hash(name),
            name: name.to_string(),
            addr,
        };
        self.succ.insert(pos, m);
        if self.succ.len() > SUCC_KEEP {
            self.succ.pop();
            if let Some(last) = self.succ.last() {
                self.horizon = Horizon::Upto(last.name.clone());
            }
        }
    }

    /// `name` left or went offline. True if it was in the view.
    pub fn remove(&mut self, name: &str) -> bool {
        let key = self.keyed(name);
        self.online.remove(&key);
        let before = self.succ.len() + self.sample.len();
        let h = name_hash(name);
        self.succ.retain(|m| !m.is(h, name));
        self.sample.retain(|m| !m.is(h, name));
        before != self.succ.len() + self.sample.len()
    }

    /// `old` is now called `new`: it keeps its address; its place in the ring changes.
    pub fn rename(&mut self, old: &str, new: &str) {
        if self.online.remove(&self.keyed(old)) {
            self.online.insert(self.keyed(new));
        }
        let addr = self.addr(old);
        let h = name_hash(old);
        self.succ.retain(|m| !m.is(h, old));
        for m in &mut self.sample {
            if m.is(h, old) {
                m.name = new.to_string();
                m.hash = name_hash(new);
            }
        }
        match addr {
            Some(addr) => self.offer_succ(new, addr),
            None => self.cut_before(new),
        }
        let h = name_hash(old);
        if let Some(state) = self.recent.iter().rev().find(|(x, _)| *x == h).map(|e| e.1) {
            self.note(new, state);
        }
    }

    /// A member we hold no address for is at `name` in the ring: what we know ends before it.
    fn cut_before(&mut self, name: &str) {
        let k = ring_key(&self.me, name);
        if !self.within_horizon(k) {
            return;
        }
        let me = self.me.as_str();
        let pos = self.succ.partition_point(|m| ring_key(me, &m.name) < k);
        self.succ.truncate(pos);
        self.horizon = match self.succ.last() {
            Some(last) => Horizon::Upto(last.name.clone()),
            None => Horizon::Empty,
        };
    }

    /// Records that `name` came (with a mark of the room's message history) or went (`None`).
    pub fn note(&mut self, name: &str, mark: Option<u64>) {
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((name_hash(name), mark));
    }

    fn latest(&self, name: &str) -> Option<Option<u64>> {
        let h = name_hash(name);
        self.recent
            .iter()
            .rev()
            .find(|(x, _)| *x == h)
            .map(|(_, m)| *m)
    }

    /// The mark taken when `name` joined or came online lately, if it did.
    pub fn since(&self, name: &str) -> Option<u64> {
        self.latest(name).flatten()
    }

    /// Members in the view, each once: the successors in ring order, then the sample.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let succ = self.succ.iter().map(|m| m.name.as_str());
        let rest = self
            .sample
            .iter()
            .filter(|m| !self.succ.iter().any(|s| s.is(m.hash, &m.name)))
            .map(|m| m.name.as_str());
        succ.chain(rest)
    }

    /// The successors, nearest first.
    pub fn successors(&self) -> impl Iterator<Item = &str> {
        self.succ.iter().map(|m| m.name.as_str())
    }

    /// The nearest successor that `held` does not hold back.
    pub fn successor(&self, held: impl Fn(&str) -> bool) -> Option<&str> {
        self.successors().find(|n| !held(n))
    }

    /// A member of the sample (or, with an empty sample, a successor) at random.
    pub fn random(&self, rng: &mut impl Rng) -> Option<&str> {
        let pool = if self.sample.is_empty() {
            &self.succ
        } else {
            &self.sample
        };
        pool.choose(rng).map(|m| m.name.as_str())
    }

    /// Whether the view ran short of successors or sample while more members are online:
    /// time to ask the registry for the list again.
    pub fn needs_refill(&self) -> bool {
        let others = self.online.len();
        let succ_short = self.succ.len() < SUCC_WANT.min(others) && self.horizon != Horizon::All;
        let sample_short = self.sample.len() * 2 < SAMPLE.min(others);
        succ_short || sample_short
    }
}

/// Whom `me` should link to, given its view of the room, the members `held` back for now (a
/// failed or refused link), and its current links (presumed online: a departure unlinks them).
///
/// Keeps every current link that is still a candidate (churn costs nothing for links that are
/// fine), adds the ring successor, then random members of the sample until `degree` links are
/// wanted. O(d (SUCC_KEEP + SAMPLE) + |held|), whatever the room's size.
pub fn targets(
    me: &str,
    view: &View,
    held: &BTreeSet<String>,
    linked: &BTreeSet<String>,
    degree: usize,
    rng: &mut impl Rng,
) -> BTreeSet<String> {
    let degree = degree.max(1);
    let is_candidate =
        |n: &str| n != me && !held.contains(n) && (view.contains(n) || linked.contains(n));
    let excluded = held.iter().filter(|n| view.contains(n)).count();
    let candidates = view.len().saturating_sub(excluded);
    if candidates <= degree {
        return view
            .names()
            .chain(linked.iter().map(String::as_str))
            .filter(|n| is_candidate(n))
            .map(str::to_string)
            .collect();
    }
    let mut want: BTreeSet<String> = BTreeSet::new();
    if let Some(s) = view.successor(|n| held.contains(n)) {
        want.insert(s.to_string());
    }
    for l in linked {
        if want.len() >= degree {
            break;
        }
        if is_candidate(l) {
            want.insert(l.clone());
        }
    }
    let missing = degree.saturating_sub(want.len());
    if missing == 0 {
        return want;
    }
    // Random members of the sample; a clash is redrawn a bounded number of times, then the
    // rest of the view is scanned.
    let mut draws = 16 + 8 * missing;
    while want.len() < degree && draws > 0 {
        draws -= 1;
        if let Some(n) = view.random(rng) {
            if is_candidate(n) && !want.contains(n) {
                want.insert(n.to_string());
            }
        }
    }
    let missing = degree.saturating_sub(want.len());
    if missing > 0 {
        let rest: Vec<&str> = view
            .names()
            .filter(|n| is_candidate(n) && !want.contains(*n))
            .collect();
        for pick in rest.choose_multiple(rng, missing) {
            want.insert((*pick).to_string());
        }
    }
    want
}

/// Most neighbours a peer lets *others* add in one room: a link request beyond this is refused.
/// A peer's own requests are not counted against it (its ring successor must always be
/// reachable), so a peer can end up with more, as the flooding-cost table shows.
pub fn max_links(degree: usize) -> usize {
    2 * degree + 2
}

#[cfg(test)]
#[path = "overlay_tests.rs"]
mod tests;
