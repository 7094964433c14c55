//! Rooms end to end: real peers in line mode form a room's overlay, flood messages across it
//! (each shown exactly once by every other online member, never by its sender), survive a
//! member's death, handle late joiners, kicks, promotions, admin succession, mute and focus,
//! and keep rooms and memberships across a registry restart.
//!
//! Waits are on lines with deadlines. Checking that nothing *more* arrives (no duplicate, no
//! message for a kicked or muted member) needs a bounded listen: [`DRAIN`] after everything
//! expected was seen, which is where a duplicate would show up (it travels with the original).

use super::*;

use std::collections::BTreeSet;

/// Peers here log at info level: the overlay check reads the links they report, and a
/// failure report shows what each peer did.
const LOG: Option<&str> = Some("info");
/// How long to keep listening for stray room messages once every expected one has arrived.
const DRAIN: Duration = Duration::from_millis(600);

/// The line a member shows for a room message.
fn shown(from: &str, room: &str, text: &str) -> String {
    format!("Message from {from} at {room}: {text}")
}

impl Proc {
    /// The next stdout line before `deadline` (kept in `seen`), or `None` at the deadline.
    fn line_before(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Waits until every line of `want` has arrived, in any order; other lines are skipped.
    fn expect_all(&mut self, want: &[String]) {
        let deadline = Instant::now() + WAIT;
        let mut missing: BTreeSet<&String> = want.iter().collect();
        while !missing.is_empty() {
            match self.line_before(deadline) {
                Some(line) => {
                    missing.remove(&line);
                }
                None => panic!(
                    "{}: still missing {missing:#?} after {WAIT:?}\n{}",
                    self.name,
                    self.report()
                ),
            }
        }
    }

    /// What the process printed, for failure messages.
    fn report(&self) -> String {
        let err = self.stderr.0.lock().unwrap();
        let tail = &err[err.len().saturating_sub(80)..];
        format!(
            "stdout so far: {:#?}\nstderr (last {} lines): {tail:#?}",
            self.seen,
            tail.len()
        )
    }

    /// `/join ROOM`, then waits for `Joined room ROOM`.
    fn join(&mut self, room: &str) {
        self.send(&format!("/join {room}"));
        self.expect(&format!("Joined room {room}"));
    }

    /// `/say ROOM TEXT`; returns the line the others should show.
    fn say(&mut self, room: &str, text: &str) -> (String, String) {
        self.send(&format!("/say {room} {text}"));
        (self.name.clone(), shown(&self.name, room, text))
    }
}

/// What one peer printed while we listened: the room message lines (`Message from ...`) in
/// arrival order, and every line (to check that a sender prints nothing of its own message).
#[derive(Default)]
struct Shown {
    messages: Vec<String>,
    lines: Vec<String>,
}

impl Shown {
    fn record(&mut self, line: String) {
        if line.starts_with("Message from ") {
            self.messages.push(line.clone());
        }
        self.lines.push(line);
    }

    /// Reads `p` until every line of `want` was shown or `deadline`; true when all were.
    fn gather(&mut self, p: &mut Proc, want: &[String], deadline: Instant) -> bool {
        loop {
            if want.iter().all(|w| self.messages.contains(w)) {
                return true;
            }
            match p.line_before(deadline) {
                Some(line) => self.record(line),
                None => return false,
            }
        }
    }

    /// Keeps reading `p` until `until`.
    fn drain(&mut self, p: &mut Proc, until: Instant) {
        while let Some(line) = p.line_before(until) {
            self.record(line);
        }
    }

    /// Room messages shown more than once.
    fn duplicates(&self) -> Vec<&String> {
        let mut seen = BTreeSet::new();
        self.messages.iter().filter(|l| !seen.insert(*l)).collect()
    }

    /// Asserts that `p` printed no line with the text of a message it sent itself.
    fn assert_no_echo(&self, p: &Proc, sent: &Sent) {
        for (from, line) in sent.iter().filter(|(from, _)| *from == p.name) {
            let text = line
                .split_once(": ")
                .map_or(line.as_str(), |(_, text)| text);
            let echo: Vec<&String> = self.lines.iter().filter(|l| l.contains(text)).collect();
            assert!(
                echo.is_empty(),
                "{from} printed its own room message {text:?}: {echo:#?}\n{}",
                p.report()
            );
        }
    }
}

/// Sent messages: (sender, the line the others show).
type Sent = Vec<(String, String)>;

/// What `name` should show of `sent`: everything but its own.
fn expected_by(name: &str, sent: &Sent) -> Vec<String> {
    sent.iter()
        .filter(|(from, _)| from != name)
        .map(|(_, line)| line.clone())
        .collect()
}

/// Waits until each peer showed every message of `sent` but its own, listens [`DRAIN`] more,
/// then asserts each showed exactly those, once each: no duplicate, no echo of its own, no
/// stray (an older message showing up now counts as one).
fn assert_delivered_exactly_once(peers: &mut [&mut Proc], sent: &Sent) {
    let deadline = Instant::now() + WAIT;
    let mut shown: Vec<Shown> = peers.iter().map(|_| Shown::default()).collect();
    for i in 0..peers.len() {
        let want = expected_by(&peers[i].name, sent);
        if !shown[i].gather(peers[i], &want, deadline) {
            let missing: Vec<&String> = want
                .iter()
                .filter(|w| !shown[i].messages.contains(w))
                .collect();
            let reports: Vec<String> = peers
                .iter()
                .map(|p| format!("--- {}:\n{}", p.name, p.report()))
                .collect();
            panic!(
                "{}: room messages missing after {WAIT:?}: {missing:#?}\n{}",
                peers[i].name,
                reports.join("\n")
            );
        }
    }
    let until = Instant::now() + DRAIN;
    for (p, s) in peers.iter_mut().zip(&mut shown) {
        s.drain(p, until);
        s.assert_no_echo(p, sent);
        let mut got = s.messages.clone();
        got.sort();
        let mut want = expected_by(&p.name, sent);
        want.sort();
        assert_eq!(
            got,
            want,
            "{}: room messages shown (left) are not exactly the others' messages, once each \
             (right)\n{}",
            p.name,
            p.report()
        );
    }
}

/// Listens [`DRAIN`] on `p` and asserts it shows no room message at all.
fn assert_shows_no_room_message(p: &mut Proc) {
    let mut s = Shown::default();
    s.drain(p, Instant::now() + DRAIN);
    assert!(
        s.messages.is_empty(),
        "{}: showed {:#?}\n{}",
        p.name,
        s.messages,
        p.report()
    );
}

/// Logged-in peers named `names` (with `extra` flags); the first creates `room`, the others
/// join it one after another, each waiting for its `Joined room`.
fn room_of(reg: &Registry, room: &str, names: &[&str], extra: &[&str]) -> Vec<Proc> {
    let mut peers: Vec<Proc> = names
        .iter()
        .map(|n| reg.user_logging(n, extra, LOG))
        .collect();
    peers[0].send(&format!("/create {room}"));
    peers[0].expect(&format!("Created room {room}"));
    for p in &mut peers[1..] {
        p.join(room);
    }
    peers
}

/// Distinct pairs of peers that opened a peer link, as their info logs report it
/// (`peer link ... to NAME ready`).
fn linked_pairs(peers: &[Proc]) -> BTreeSet<(String, String)> {
    let mut pairs = BTreeSet::new();
    for p in peers {
        for line in p.stderr.0.lock().unwrap().iter() {
            if !(line.contains("peer link ") && line.ends_with(" ready")) {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(other) = words.len().checked_sub(2).map(|i| words[i]) else {
                continue;
            };
            let (a, b) = (p.name.clone(), other.to_string());
            pairs.insert(if a < b { (a, b) } else { (b, a) });
        }
    }
    pairs
}

/// Mutable references to every peer, for the delivery checks.
fn all(peers: &mut [Proc]) -> Vec<&mut Proc> {
    peers.iter_mut().collect()
}

const EIGHT: [&str; 8] = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"];

#[test]
fn eight_peers_degree_three_each_message_shown_exactly_once() {
    let reg = Registry::start();
    let mut peers = room_of(&reg, "lobby", &EIGHT, &["--degree", "3"]);

    let mut sent = Sent::new();
    for round in 1..=2 {
        for p in &mut peers {
            let text = format!("hello {round} from {}", p.name);
            sent.push(p.say("lobby", &text));
        }
    }
    assert_delivered_exactly_once(&mut all(&mut peers), &sent);

    // The overlay is not a full mesh: with degree 3 each peer opens about 3 links (one more
    // when its ring successor changes), so the pairs ever linked stay well below the 28 pairs
    // of 8 peers; a connected overlay needs at least 7.
    let pairs = linked_pairs(&peers);
    assert!(
        (7..28).contains(&pairs.len()),
        "{} linked pairs: {pairs:?}",
        pairs.len()
    );
}

/// `--room-mode tree`: the broadcast tree (full messages along a spanning tree, ids on the
/// other links) shows every message exactly once too, also to peers that flood.
#[test]
fn tree_mode_each_message_shown_exactly_once() {
    let reg = Registry::start();
    let mut peers = room_of(
        &reg,
        "lobby",
        &EIGHT[..6],
        &["--degree", "3", "--room-mode", "tree"],
    );
    // Two flooding peers in the same room.
    for n in &EIGHT[6..] {
        let mut p = reg.user_logging(n, &["--degree", "3", "--room-mode", "flood"], LOG);
        p.join("lobby");
        peers.push(p);
    }
    let mut sent = Sent::new();
    for round in 1..=3 {
        for p in &mut peers {
            let text = format!("tree {round} from {}", p.name);
            sent.push(p.say("lobby", &text));
        }
    }
    assert_delivered_exactly_once(&mut all(&mut peers), &sent);
}

#[test]
fn a_killed_member_does_not_stop_the_room() {
    let reg = Registry::start();
    let mut peers = room_of(&reg, "lobby", &EIGHT, &["--degree", "3"]);
    let mut victim = peers.remove(3);
    let victim_name = victim.name.clone();
    victim.kill9();

    // The registry sees the connection close and reports the member offline (no line is
    // printed for that; /members shows it).
    let deadline = Instant::now() + WAIT;
    loop {
        peers[0].send("/members lobby");
        let line = peers[0].expect_prefix("Members of lobby: ");
        if line.contains(&format!("{victim_name} (offline)")) {
            break;
        }
        assert!(Instant::now() < deadline, "still online: {line}");
        // Polling the registry: a wait with a deadline, not a sleep standing in for an event.
        thread::sleep(Duration::from_millis(100));
    }

    // Every survivor sends each second until one round reaches every other survivor; the
    // first messages may be lost while the overlay repairs, none may be shown twice.
    let mut shown: Vec<Shown> = peers.iter().map(|_| Shown::default()).collect();
    let mut all_sent = Sent::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut round = 0;
    loop {
        round += 1;
        let mut sent = Sent::new();
        for p in &mut peers {
            let text = format!("round {round} from {}", p.name);
            sent.push(p.say("lobby", &text));
        }
        all_sent.extend(sent.iter().cloned());
        let round_end = (Instant::now() + Duration::from_secs(1)).min(deadline);
        let mut complete = true;
        for (p, s) in peers.iter_mut().zip(&mut shown) {
            complete &= s.gather(p, &expected_by(&p.name, &sent), round_end);
        }
        if complete {
            break;
        }
        if Instant::now() >= deadline {
            for (p, s) in peers.iter().zip(&shown) {
                let missing: Vec<String> = expected_by(&p.name, &sent)
                    .into_iter()
                    .filter(|w| !s.messages.contains(w))
                    .collect();
                eprintln!("{}: missing of round {round}: {missing:#?}", p.name);
                eprintln!("{}", p.report());
            }
            panic!("no round reached every survivor of {victim_name}'s death within 15 s");
        }
    }
    let until = Instant::now() + DRAIN;
    for (p, s) in peers.iter_mut().zip(&mut shown) {
        s.drain(p, until);
        let dups = s.duplicates();
        assert!(
            dups.is_empty(),
            "{}: shown twice: {dups:#?}\n{}",
            p.name,
            p.report()
        );
        s.assert_no_echo(p, &all_sent);
    }
}

#[test]
fn a_late_joiner_gets_what_is_sent_after_it_joined_and_nothing_before() {
    let reg = Registry::start();
    let mut peers = room_of(&reg, "cafe", &["a1", "a2", "a3", "a4"], &["--degree", "2"]);
    let mut before = Sent::new();
    for p in &mut peers {
        let text = format!("before, from {}", p.name);
        before.push(p.say("cafe", &text));
    }
    assert_delivered_exactly_once(&mut all(&mut peers), &before);

    let mut late = reg.user_logging("a5", &["--degree", "2"], LOG);
    late.join("cafe");
    peers.push(late);
    let mut after = Sent::new();
    for p in &mut peers {
        let text = format!("after, from {}", p.name);
        after.push(p.say("cafe", &text));
    }
    // Everyone, the newcomer included, shows exactly the messages sent after it joined.
    assert_delivered_exactly_once(&mut all(&mut peers), &after);
}

#[test]
fn kick_and_promote_need_an_admin_and_take_effect() {
    let reg = Registry::start();
    let mut peers = room_of(&reg, "club", &["ann", "bob", "xav", "yve"], &[]);
    let [ann, bob, xav, yve] = &mut peers[..] else {
        unreachable!()
    };

    bob.send("/kick club xav");
    bob.expect("error: only an admin of the room can do that");
    bob.send("/promote club yve");
    bob.expect("error: only an admin of the room can do that");

    ann.send("/kick club xav");
    for p in [&mut *ann, &mut *bob, &mut *xav, &mut *yve] {
        p.expect("xav was kicked from club");
    }
    xav.send("/say club still here?");
    xav.expect("error: you are not in room club");
    ann.send("/members club");
    ann.expect("Members of club: ann (admin, online), bob (online), yve (online)");

    let sent: Sent = vec![
        ann.say("club", "after the kick, from ann"),
        bob.say("club", "after the kick, from bob"),
        yve.say("club", "after the kick, from yve"),
    ];
    assert_delivered_exactly_once(&mut [&mut *ann, &mut *bob, &mut *yve], &sent);
    assert_shows_no_room_message(xav);

    ann.send("/promote club yve");
    for p in [&mut *ann, &mut *bob, &mut *yve] {
        p.expect("yve is now admin of club");
    }
    xav.assert_no_line(|l| l.contains("club"));

    yve.send("/kick club bob");
    for p in [&mut *ann, &mut *bob, &mut *yve] {
        p.expect("bob was kicked from club");
    }
    ann.send("/members club");
    ann.expect("Members of club: ann (admin, online), yve (admin, online)");
    let sent: Sent = vec![ann.say("club", "just us"), yve.say("club", "indeed")];
    assert_delivered_exactly_once(&mut [&mut *ann, &mut *yve], &sent);
    assert_shows_no_room_message(bob);
}

#[test]
fn when_the_admin_leaves_the_oldest_member_becomes_admin() {
    let reg = Registry::start();
    // Join order differs from name order: succession goes by join time.
    let mut peers = room_of(&reg, "hall", &["zoe", "yan", "abe"], &[]);
    let [zoe, yan, abe] = &mut peers[..] else {
        unreachable!()
    };
    zoe.send("/leave hall");
    zoe.expect("Left room hall");
    for p in [&mut *yan, &mut *abe] {
        p.expect_all(&["zoe left hall".into(), "yan is now admin of hall".into()]);
    }
    abe.send("/members hall");
    abe.expect("Members of hall: yan (admin, online), abe (online)");

    let sent: Sent = vec![yan.say("hall", "from yan"), abe.say("hall", "from abe")];
    assert_delivered_exactly_once(&mut [&mut *yan, &mut *abe], &sent);
    assert_shows_no_room_message(zoe);
    zoe.send("/say hall me too?");
    zoe.expect("error: you are not in room hall");
}

#[test]
fn rooms_and_memberships_survive_a_registry_restart() {
    let mut reg = Registry::start();
    let mut peers = room_of(&reg, "den", &["pat", "quin", "rex"], &[]);
    peers[0].send("/promote den rex");
    for p in &mut peers {
        p.expect("rex is now admin of den");
    }
    let members = "Members of den: pat (admin, online), quin (online), rex (admin, online)";
    peers[1].send("/members den");
    peers[1].expect(members);

    reg.kill9();
    for p in &mut peers {
        p.expect("Disconnected from registry");
    }
    reg.restart();
    for p in &mut peers {
        p.expect_with("Reconnected to registry", Duration::from_secs(20), |l| {
            l == "Reconnected to registry"
        });
    }
    peers[1].send("/members den");
    peers[1].expect(members);
    let sent: Sent = vec![
        peers[0].say("den", "after the restart, from pat"),
        peers[1].say("den", "after the restart, from quin"),
        peers[2].say("den", "after the restart, from rex"),
    ];
    assert_delivered_exactly_once(&mut all(&mut peers), &sent);

    // A new process logging in as a member is put back in its rooms without /join.
    let mut quin = peers.remove(1);
    quin.send("/quit");
    quin.expect("Logged out");
    assert!(quin.wait_exit(WAIT).success());
    drop(quin);
    let mut quin = reg.peer_logging("quin", &[], LOG);
    quin.send(&format!("/login quin {PASSWORD}"));
    quin.expect("Logged in as quin");
    quin.expect("Joined room den");
    peers.push(quin);
    let sent: Sent = vec![
        peers[0].say("den", "welcome back, from pat"),
        peers[2].say("den", "hi, from quin"),
    ];
    assert_delivered_exactly_once(&mut all(&mut peers), &sent);
    peers[2].send("/members den");
    peers[2].expect(members);
}

#[test]
fn room_list_counts_mute_and_focus() {
    let reg = Registry::start();
    let mut peers = room_of(&reg, "alpha", &["ada", "bo", "cy"], &[]);
    let [ada, bo, cy] = &mut peers[..] else {
        unreachable!()
    };
    ada.send("/create beta");
    ada.expect("Created room beta");
    bo.send("/rooms");
    bo.expect("alpha members=3 online=3");
    bo.expect("beta members=1 online=1");

    // The focus is the room created last: a plain line goes to beta, where nobody else is.
    ada.send("to beta, where nobody listens");
    ada.send("/focus alpha");
    ada.expect("Now talking to alpha");
    ada.send("plain line to alpha");
    let plain = shown("ada", "alpha", "plain line to alpha");
    let sent: Sent = vec![("ada".into(), plain)];
    assert_delivered_exactly_once(&mut [&mut *ada, &mut *bo, &mut *cy], &sent);

    // Muted: bo shows nothing of alpha but still sends to it; the others see everything.
    bo.send("/mute alpha");
    bo.expect("Muted room alpha");
    let sent: Sent = vec![
        ada.say("alpha", "while bo is muted, from ada"),
        cy.say("alpha", "while bo is muted, from cy"),
        bo.say("alpha", "from the muted side"),
    ];
    assert_delivered_exactly_once(&mut [&mut *ada, &mut *cy], &sent);
    assert_shows_no_room_message(bo);
    bo.send("/unmute alpha");
    bo.expect("Unmuted room alpha");
    let sent: Sent = vec![cy.say("alpha", "after the unmute")];
    assert_delivered_exactly_once(&mut [&mut *ada, &mut *bo, &mut *cy], &sent);

    // Members stay members when they log out; online counts follow.
    cy.send("/quit");
    cy.expect("Logged out");
    assert!(cy.wait_exit(WAIT).success());
    bo.send("/rooms");
    bo.expect("alpha members=3 online=2");
    bo.expect("beta members=1 online=1");
    bo.send("/members alpha");
    bo.expect("Members of alpha: ada (admin, online), bo (online), cy (offline)");
}
