//! `room-flood` and `reconnect-storm`: synthetic peers in rooms.
//!
//! Setup: `--rooms` rooms of `--room-size` peers. Each room lives on one reactor thread (rooms
//! are dealt round-robin to threads); its first member creates it, the others join, and the
//! overlay forms over real peer links (each peer has its own listener).
//!
//! - `room-flood`: each room gets `--rate` messages per second (open loop) from random members
//!   for `--duration`. Latency from the intended send at the origin to the display at each
//!   other member; delivery ratio; room-message frames, duplicates and bytes per message.
//! - `reconnect-storm`: the registry is killed (SIGKILL) and restarted on the same ports and
//!   database. Time from the kill until each peer has resumed its session (resume token, no
//!   password hashing) and until it is back in all its rooms (re-join answered).
//!
//! Peer links need a listener per peer; the engine has 255 listener slots per reactor, so a
//! thread carries at most 250 room members with links. A room larger than that is spread over
//! the threads member by member (member `g` of all members on thread `g % threads`): its first
//! member creates it, the others join once any thread has seen it created, and each message
//! is sent by one of the room's threads (message `j` by the `j % k`-th of its `k` threads)
//! from a random member there; each thread counts the displays at its own members. Larger
//! reconnect storms use `--room-size 1` (each peer alone in its room: no links).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use p2pchat_peer::{Command, NodeEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::logins::{Logins, Target};
use super::{run_tag, split};
use crate::load::peers::{Listen, Pool};
use crate::load::registry::RegistryProc;
use crate::load::schedule::Schedule;
use crate::load::{watch_workers, LoadArgs, Phase, ScenarioName};
use crate::report::{new_hist, Report, Series};

/// Members per thread that can have listeners of their own.
pub const MAX_LINKED_PER_THREAD: usize = 250;
/// After the last message is due, the run waits for every display until no member anywhere
/// has shown anything for this long (a message still travelling on an overloaded machine is
/// late, not lost; one that shows nothing for this long counts as lost).
const FLOOD_DRAIN: Duration = Duration::from_secs(5);
/// ... and at most this long in all.
const FLOOD_DRAIN_MAX: Duration = Duration::from_secs(60);
const STORM_LIMIT: Duration = Duration::from_secs(60);
/// How often a resumed peer asks the registry whether its room is whole again.
pub const REJOIN_POLL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Out {
    latency: Option<Histogram<u64>>,
    resume: Option<Histogram<u64>>,
    rejoin: Option<Histogram<u64>>,
    messages: u64,
    expected: u64,
    delivered: u64,
    duplicates: u64,
    /// Room messages refused by a member's signature check (`--sign`); 0 when all is well.
    refused: u64,
    frames: u64,
    bytes: u64,
    peers: u64,
    resumed: u64,
    rejoined: u64,
    /// room-flood: displays missing at this thread's members, one line each.
    missing: Vec<String>,
    /// room-flood: messages shown more than once at one member.
    shown_twice: u64,
}

struct Plan {
    storm: bool,
    /// This thread's members: (room, index in the room).
    members: Vec<(usize, usize)>,
    /// This thread's number.
    thread: usize,
    /// Per room: the threads holding its members, in order (message `j` is sent by
    /// `origins[r][j % len]`).
    origins: Arc<Vec<Vec<usize>>>,
    /// Per room: whether some thread has seen it created.
    created: Arc<Vec<AtomicBool>>,
    room_mode: p2pchat_peer::RoomMode,
    sign: bool,
    room_size: usize,
    tag: String,
    target: Target,
    rate: f64,
    duration: Duration,
    seed: u64,
    /// Where members' room traces go (`--room-trace`).
    trace: Option<PathBuf>,
    /// Who sent each message (`room << 32 | j`), filled by the sending thread: the missing
    /// deliveries are reported with their origin.
    sent_by: Arc<Mutex<BTreeMap<u64, String>>>,
    /// Threads whose members have shown every message (see `flood`).
    complete: Arc<AtomicUsize>,
    /// Threads running members.
    threads: usize,
}

fn room_name(tag: &str, r: usize) -> String {
    format!("{tag}r{r}")
}

fn worker(plan: Plan, phase: Arc<Phase>) -> anyhow::Result<Out> {
    let m = plan.room_size;
    let names: Vec<String> = plan
        .members
        .iter()
        .map(|(r, i)| format!("{}_{r}_{i}", plan.tag))
        .collect();
    let n = names.len();
    let room_of = |k: usize| room_name(&plan.tag, plan.members[k].0);
    let is_created = |k: usize| plan.created[plan.members[k].0].load(Ordering::Relaxed);
    let mut pool = Pool::new()?;
    pool.room_mode = plan.room_mode;
    pool.sign = plan.sign;
    pool.room_trace = if plan.trace.is_some() {
        TRACE_EVENTS
    } else {
        0
    };
    let mut logins = Logins::new(names.clone(), plan.target, 64, None);
    let t0 = Instant::now();
    let limit = t0 + Duration::from_secs(60) + Duration::from_millis(20 * n as u64);
    // Setup: log in, create, join, wait for the overlay.
    let mut join_sent = vec![false; n];
    let mut logged_in = vec![false; n];
    let mut joined = vec![false; n];
    let mut joined_count = 0;
    let mut settled_at: Option<Instant> = None;
    let mut reported = false;
    // Room messages shown before this thread saw the measured phase start: another thread
    // may start sending while this one is still in its last setup turn, and the first
    // message reaches members here in a few milliseconds. They count (with when they came).
    let mut early: Vec<(Instant, usize, NodeEvent)> = Vec::new();
    let start = loop {
        let now = Instant::now();
        logins.poll(&mut pool, now)?;
        let now = pool.turn(now + Duration::from_millis(20))?;
        for (i, e) in std::mem::take(&mut pool.events) {
            if logins.on_event(&mut pool, now, i, &e) {
                if let NodeEvent::LoggedIn { .. } = e {
                    logged_in[i] = true;
                    if plan.members[i].1 == 0 {
                        pool.command(i, now, Command::Create { room: room_of(i) });
                        join_sent[i] = true;
                    }
                }
                continue;
            }
            match e {
                NodeEvent::RoomMessage { .. } => early.push((now, i, e)),
                NodeEvent::RoomCreated { .. } => {
                    plan.created[plan.members[i].0].store(true, Ordering::Relaxed);
                    joined[i] = true;
                    joined_count += 1;
                }
                NodeEvent::RoomJoined { .. } if !joined[i] => {
                    joined[i] = true;
                    joined_count += 1;
                }
                NodeEvent::Error { message } if !joined[i] => {
                    phase.problem(format!("{}: {message}", names[i]));
                }
                _ => {}
            }
        }
        // Joins wait until the room exists (its creator may be on another thread).
        for k in 0..pool.len() {
            if !join_sent[k] && logged_in[k] && is_created(k) && pool.node(k).is_registry_ready() {
                pool.command(k, now, Command::Join { room: room_of(k) });
                join_sent[k] = true;
            }
        }
        if joined_count == n && settled_at.is_none() {
            let linked =
                m == 1 || (0..n).all(|k| !pool.node(k).room_neighbors(&room_of(k)).is_empty());
            if linked {
                // A room spread over threads is only linked here, not necessarily whole:
                // give its overlay longer to join up before the common start.
                let wait = if plan.origins[plan.members[0].0].len() > 1 {
                    3_000
                } else {
                    500
                };
                settled_at = Some(now + Duration::from_millis(wait));
            }
        }
        let settled = settled_at.is_some_and(|t| now >= t);
        if let Some(s) = phase.setup_turn(settled, &mut reported, n, "setup")? {
            break s;
        }
        if now > limit {
            phase.stop.store(true, Ordering::Relaxed);
            bail!(
                "room setup incomplete after {:?}: {} of {n} online, {joined_count} joined",
                limit - t0,
                logins.online
            );
        }
    };
    let mut out = Out {
        peers: n as u64,
        ..Out::default()
    };
    if plan.storm {
        storm(&mut pool, &phase, &names, m, &room_of, start, &mut out)?;
    } else {
        flood(
            &mut pool, &phase, &plan, &names, &room_of, start, early, &mut out,
        )?;
    }
    phase.finish_and_wait();
    Ok(out)
}

/// What one thread's members showed in the measured phase.
struct Tally {
    /// Per local member, which messages it showed.
    shown: Vec<Vec<bool>>,
    /// Messages shown again at a member that had shown them.
    shown_twice: u64,
    /// Displays, repeats included.
    delivered: u64,
    /// Latency from the intended send to the display.
    hist: Histogram<u64>,
}

impl Tally {
    /// A node event of member `k` at `at`: a display of a measured message counts.
    fn count(&mut self, at: Instant, k: usize, e: NodeEvent, sched: &Schedule, phase: &Phase) {
        let NodeEvent::RoomMessage { text, .. } = e else {
            return;
        };
        let Some(id) = text.strip_prefix('m').and_then(|s| s.parse::<u64>().ok()) else {
            return;
        };
        let j = id & 0xffff_ffff;
        let Some(seen) = self.shown[k].get_mut(j as usize) else {
            return;
        };
        if std::mem::replace(seen, true) {
            self.shown_twice += 1;
        }
        self.delivered += 1;
        let intended = sched.intended(j);
        self.hist
            .saturating_record(at.saturating_duration_since(intended).as_nanos() as u64);
        phase.ops.fetch_add(1, Ordering::Relaxed);
    }

    /// Distinct (member, message) displays.
    fn distinct(&self) -> u64 {
        self.delivered - self.shown_twice
    }
}

#[allow(clippy::too_many_arguments)]
fn flood(
    pool: &mut Pool,
    phase: &Phase,
    plan: &Plan,
    names: &[String],
    room_of: &dyn Fn(usize) -> String,
    start: Instant,
    early: Vec<(Instant, usize, NodeEvent)>,
    out: &mut Out,
) -> anyhow::Result<()> {
    let n = plan.members.len();
    // Room -> this thread's members of it.
    let mut local: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, (r, _)) in plan.members.iter().enumerate() {
        local.entry(*r).or_default().push(k);
    }
    let stats0: Vec<_> = (0..n)
        .map(|k| pool.node(k).room_stats(&room_of(k)).unwrap_or_default())
        .collect();
    let bytes0 = pool.engine_stats().bytes_out;
    let total = (plan.rate * plan.duration.as_secs_f64()).round() as u64;
    // Every room runs the same schedule from the common start, so any thread knows when
    // message j of any room was meant to be sent.
    let sched = Schedule::new(start, plan.rate, total);
    let origin_is_here = |r: usize, j: u64| {
        let o = &plan.origins[r];
        o[j as usize % o.len()] == plan.thread
    };
    // Displays expected at this thread's members: every message of each of its rooms, at
    // every local member but the origin.
    let mut expected = 0u64;
    for (r, ks) in &local {
        for j in 0..total {
            expected += ks.len() as u64 - u64::from(origin_is_here(*r, j));
        }
    }
    let mut sent = 0u64;
    let mut due_done = 0u64;
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut tally = Tally {
        shown: vec![vec![false; total as usize]; n],
        shown_twice: 0,
        delivered: 0,
        hist: new_hist(),
    };
    let end = start + plan.duration;
    for (at, k, e) in early {
        tally.count(at, k, e, &sched, phase);
    }
    let mut complete = false;
    // Displays anywhere (all threads count into `phase.ops`), and when they last grew.
    let mut progress = (phase.ops.load(Ordering::Relaxed), Instant::now());
    let mut now = Instant::now();
    loop {
        // Not only before `end`: a thread the machine stalled past it still sends what fell
        // due before (late, as its latency shows), or those messages would count as lost.
        if due_done < total {
            let due = sched.due(now);
            for j in due_done..due {
                for (r, ks) in &local {
                    if !origin_is_here(*r, j) {
                        continue;
                    }
                    let origin = ks[rng.random_range(0..ks.len())];
                    let id = (*r as u64) << 32 | j;
                    if let Ok(mut m) = plan.sent_by.lock() {
                        m.insert(id, names[origin].clone());
                    }
                    pool.command(
                        origin,
                        now,
                        Command::Say {
                            room: room_of(origin),
                            text: format!("m{id}"),
                        },
                    );
                    sent += 1;
                }
            }
            due_done = due_done.max(due);
        }
        if now >= end && !complete && tally.distinct() >= expected {
            complete = true;
            plan.complete.fetch_add(1, Ordering::Relaxed);
        }
        // A thread whose members have everything keeps running its peers until every
        // thread's have: members elsewhere may still need them to forward a message or to
        // answer a graft, and frames they queued are only written by later turns.
        let all = plan.complete.load(Ordering::Relaxed) >= plan.threads;
        let ops = phase.ops.load(Ordering::Relaxed);
        if ops != progress.0 {
            progress = (ops, now);
        }
        let quiet = now >= progress.1 + FLOOD_DRAIN && now >= end + FLOOD_DRAIN;
        if now >= end && (all || quiet || now >= end + FLOOD_DRAIN_MAX) {
            break;
        }
        let cap = if now >= end {
            // Polls the other threads' progress while it waits.
            now + Duration::from_millis(20)
        } else {
            sched.next_after(due_done).unwrap_or(end).min(end)
        };
        now = pool.turn(cap.max(now))?;
        for (k, e) in std::mem::take(&mut pool.events) {
            tally.count(now, k, e, &sched, phase);
        }
    }
    out.delivered = tally.delivered;
    out.expected = expected;
    out.shown_twice = tally.shown_twice;
    // Each missing display: the member, the message and its origin.
    let sent_by = plan.sent_by.lock().map(|m| m.clone()).unwrap_or_default();
    for (k, seen) in tally.shown.iter().enumerate() {
        let r = plan.members[k].0;
        for (j, seen) in seen.iter().enumerate() {
            let id = (r as u64) << 32 | j as u64;
            let origin = sent_by.get(&id).map_or("?", String::as_str);
            if !seen && origin != names[k] {
                out.missing.push(format!(
                    "{} lacks m{id} from {origin}, meant to be sent at +{:.3} s",
                    names[k],
                    sched
                        .intended(j as u64)
                        .saturating_duration_since(start)
                        .as_secs_f64()
                ));
            }
        }
    }
    if let Some(dir) = &plan.trace {
        write_traces(pool, dir, start, names, &out.missing)?;
    }
    out.messages = sent;
    for (k, before) in stats0.iter().enumerate() {
        let s = pool.node(k).room_stats(&room_of(k)).unwrap_or_default();
        out.frames += s.frames_sent - before.frames_sent;
        out.duplicates += s.duplicates - before.duplicates;
        out.refused += s.refused - before.refused;
    }
    out.bytes = pool.engine_stats().bytes_out - bytes0;
    out.latency = Some(tally.hist);
    Ok(())
}

/// Events kept per peer with `--room-trace` (about 0.5 MB a peer at most).
const TRACE_EVENTS: usize = 8192;

/// Writes each member's room trace to `DIR/NAME.trace` (milliseconds from the measured
/// phase's start), and appends the missing displays to `DIR/missing.txt`.
fn write_traces(
    pool: &Pool,
    dir: &Path,
    start: Instant,
    names: &[String],
    missing: &[String],
) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    for (k, name) in names.iter().enumerate() {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{name}.trace")))?);
        for (at, line) in pool.node(k).room_trace() {
            let ms = if at >= start {
                at.duration_since(start).as_secs_f64() * 1e3
            } else {
                -(start.duration_since(at).as_secs_f64() * 1e3)
            };
            writeln!(f, "{ms:10.3} {line}")?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("missing.txt"))?;
    for m in missing {
        writeln!(f, "{m}")?;
    }
    Ok(())
}

fn storm(
    pool: &mut Pool,
    phase: &Phase,
    names: &[String],
    m: usize,
    room_of: &dyn Fn(usize) -> String,
    start: Instant,
    out: &mut Out,
) -> anyhow::Result<()> {
    let n = names.len();
    let mut resumed: Vec<Option<Instant>> = vec![None; n];
    let mut rejoined: Vec<Option<Instant>> = vec![None; n];
    // Peers to ask `/members` (again) at a time: the room is whole for a peer once the
    // registry lists every member online and, with links, the peer still has a neighbour.
    let mut polls: std::collections::VecDeque<(Instant, usize)> = std::collections::VecDeque::new();
    let (mut resume, mut rejoin) = (new_hist(), new_hist());
    let mut now = Instant::now();
    let limit = start + STORM_LIMIT;
    while now < limit && rejoined.iter().any(|r| r.is_none()) {
        while let Some(&(t, i)) = polls.front() {
            if t > now {
                break;
            }
            polls.pop_front();
            pool.command(i, now, Command::Members { room: room_of(i) });
        }
        let cap = polls.front().map_or(now + Duration::from_millis(20), |p| {
            p.0.min(now + Duration::from_millis(20))
        });
        now = pool.turn(cap)?;
        let Some(&kill) = phase.mark.get() else {
            pool.events.clear();
            continue;
        };
        for (i, e) in std::mem::take(&mut pool.events) {
            match e {
                NodeEvent::RegistryReconnected if resumed[i].is_none() => {
                    resumed[i] = Some(now);
                    resume.saturating_record(now.saturating_duration_since(kill).as_nanos() as u64);
                    phase.ops.fetch_add(1, Ordering::Relaxed);
                    polls.push_back((now, i));
                }
                NodeEvent::MemberList { members, .. } if rejoined[i].is_none() => {
                    let whole = members.len() == m
                        && members.iter().all(|x| x.online)
                        && (m == 1 || !pool.node(i).room_neighbors(&room_of(i)).is_empty());
                    if whole {
                        rejoined[i] = Some(now);
                        rejoin.saturating_record(
                            now.saturating_duration_since(kill).as_nanos() as u64
                        );
                    } else {
                        polls.push_back((now + REJOIN_POLL, i));
                    }
                }
                NodeEvent::Error { message } => {
                    phase.problem(format!("{}: {message}", names[i]));
                    if resumed[i].is_some() && rejoined[i].is_none() {
                        polls.push_back((now + REJOIN_POLL, i));
                    }
                }
                _ => {}
            }
        }
    }
    out.resumed = resumed.iter().filter(|r| r.is_some()).count() as u64;
    out.rejoined = rejoined.iter().filter(|r| r.is_some()).count() as u64;
    out.resume = Some(resume);
    out.rejoin = Some(rejoin);
    Ok(())
}

/// Runs `room-flood` or `reconnect-storm`.
pub fn run(
    args: &LoadArgs,
    reg: &mut RegistryProc,
    phase: &Arc<Phase>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let storm = args.scenario == ScenarioName::ReconnectStorm;
    if args.room_size == 0 || args.rooms == 0 {
        bail!("--rooms and --room-size must be at least 1");
    }
    if !storm && args.room_size < 2 {
        bail!("room-flood needs --room-size >= 2");
    }
    if storm && !reg.is_owned() {
        bail!("reconnect-storm kills and restarts the registry: it must start it (no --registry)");
    }
    let threads = args.threads().max(1);
    // Whole rooms per thread while they fit (a room's traffic stays on one reactor);
    // otherwise every room is spread over the threads member by member.
    let room_parts = split(args.rooms, threads.min(args.rooms));
    let per_thread = room_parts.iter().map(|p| p.len()).max().unwrap_or(0) * args.room_size;
    let spread = args.room_size > 1 && (per_thread > MAX_LINKED_PER_THREAD || args.spread);
    let parts: Vec<Vec<(usize, usize)>> = if spread {
        let all = args.rooms * args.room_size;
        split(all, threads)
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|g| (g / args.room_size, g % args.room_size))
                    .collect()
            })
            .collect()
    } else {
        room_parts
            .into_iter()
            .map(|rs| {
                rs.into_iter()
                    .flat_map(|r| (0..args.room_size).map(move |i| (r, i)))
                    .collect()
            })
            .collect()
    };
    let per_thread = parts.iter().map(Vec::len).max().unwrap_or(0);
    let listen = if args.room_size == 1 {
        Listen::Shared
    } else if per_thread <= MAX_LINKED_PER_THREAD {
        Listen::Own
    } else {
        bail!(
            "{per_thread} room members on one thread, but a reactor has listener slots for {MAX_LINKED_PER_THREAD}: \
             use more --threads, fewer or smaller rooms, or --room-size 1 for a large reconnect-storm"
        );
    };
    let mut origins = vec![Vec::new(); args.rooms];
    for (t, members) in parts.iter().enumerate() {
        for (r, _) in members {
            if origins[*r].last() != Some(&t) {
                origins[*r].push(t);
            }
        }
    }
    let origins = Arc::new(origins);
    let created: Arc<Vec<AtomicBool>> =
        Arc::new((0..args.rooms).map(|_| AtomicBool::new(false)).collect());
    let tag = run_tag();
    let rate = args.rate.unwrap_or(10.0);
    let sent_by = Arc::new(Mutex::new(BTreeMap::new()));
    let complete = Arc::new(AtomicUsize::new(0));
    let worker_threads = parts.len();
    let mut handles = Vec::new();
    for (t, members) in parts.into_iter().enumerate() {
        let plan = Plan {
            storm,
            members,
            thread: t,
            origins: Arc::clone(&origins),
            created: Arc::clone(&created),
            room_mode: args.room_mode,
            sign: args.sign,
            room_size: args.room_size,
            tag: tag.clone(),
            target: Target {
                registry: reg.tcp,
                registry_udp: reg.udp,
                listen,
                degree: args.degree,
                seed: args
                    .seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add(t as u64 * 1_000_000),
            },
            rate,
            duration: args.duration,
            seed: args.seed ^ (t as u64 + 1),
            trace: args.room_trace.clone(),
            sent_by: Arc::clone(&sent_by),
            complete: Arc::clone(&complete),
            threads: worker_threads,
        };
        let phase = Arc::clone(phase);
        handles.push(
            std::thread::Builder::new()
                .name(format!("rooms-{t}"))
                .spawn(move || worker(plan, phase))?,
        );
    }
    let total = (args.rooms * args.room_size) as u64;
    let pid = reg.pid;
    let mut down = Duration::ZERO;
    let mut on_start = || -> anyhow::Result<Option<u32>> {
        if storm {
            let t = Instant::now();
            let _ = phase.mark.set(t);
            reg.kill()?;
            reg.restart()?;
            down = t.elapsed();
            return Ok(reg.pid);
        }
        Ok(None)
    };
    let (outs, watch) = watch_workers(phase, pid, handles, total, "joining rooms", &mut on_start)?;
    let sum = |f: &dyn Fn(&Out) -> u64| outs.iter().map(f).sum::<u64>();
    let peers = sum(&|o| o.peers);
    report.params.insert("rooms".into(), json!(args.rooms));
    report
        .params
        .insert("room_size".into(), json!(args.room_size));
    report.params.insert("degree".into(), json!(args.degree));
    report
        .params
        .insert("peer_links".into(), json!(listen == Listen::Own));
    report
        .params
        .insert("room_mode".into(), json!(args.room_mode.as_str()));
    report.params.insert("signed".into(), json!(args.sign));
    report.params.insert("rooms_spread".into(), json!(spread));
    if storm {
        let mut resume = Series::new(
            "resume",
            "from the registry kill to the peer's session resumed",
        );
        let mut rejoin = Series::new(
            "rejoin",
            "from the registry kill to the peer back in its room",
        );
        resume.cdf = true;
        for o in &outs {
            if let Some(h) = &o.resume {
                resume.hist.add(h)?;
            }
            if let Some(h) = &o.rejoin {
                rejoin.hist.add(h)?;
            }
        }
        let (resumed, rejoined) = (sum(&|o| o.resumed), sum(&|o| o.rejoined));
        report.headline = format!(
            "load reconnect-storm: registry killed and restarted under {peers} peers in {} rooms of {}",
            args.rooms, args.room_size
        );
        report.figure("peers", peers as f64);
        report.figure("resumed", resumed as f64);
        report.figure("rejoined", rejoined as f64);
        report.figure("all_resumed_s", resume.hist.max() as f64 / 1e9);
        report.figure("all_rejoined_s", rejoin.hist.max() as f64 / 1e9);
        // From the kill until the restarted registry printed its listening line.
        report.figure("registry_down_s", down.as_secs_f64());
        if rejoined < peers {
            report.problems.push(format!("only {resumed} resumed and {rejoined} back in their rooms of {peers} within {STORM_LIMIT:?}"));
        }
        report.series = vec![rejoin, resume];
        report
            .registry
            .insert("pid_after_restart".into(), json!(reg.pid));
    } else {
        let mut lat = Series::new(
            "delivery",
            "room message from the origin's intended send to display at a member",
        );
        lat.cdf = true;
        for o in &outs {
            if let Some(h) = &o.latency {
                lat.hist.add(h)?;
            }
        }
        let messages = sum(&|o| o.messages);
        let (delivered, expected) = (sum(&|o| o.delivered), sum(&|o| o.expected));
        let per = messages.max(1) as f64;
        report.headline = format!(
            "load room-flood: {} rooms of {} peers (degree {}, {} mode), {rate} messages/s per room for {:.0}s",
            args.rooms,
            args.room_size,
            args.degree,
            args.room_mode.as_str(),
            args.duration.as_secs_f64()
        );
        report.figure("messages", messages as f64);
        report.figure("deliveries", delivered as f64);
        report.figure(
            "delivery",
            if expected == 0 {
                0.0
            } else {
                delivered as f64 / expected as f64
            },
        );
        report.figure("frames_per_message", sum(&|o| o.frames) as f64 / per);
        report.figure(
            "duplicates_per_message",
            sum(&|o| o.duplicates) as f64 / per,
        );
        report.figure("bytes_per_message", sum(&|o| o.bytes) as f64 / per);
        report.figure("refused", sum(&|o| o.refused) as f64);
        report.figure("frames_per_message_bound", (args.room_size - 1) as f64);
        report.figure(
            "throughput_per_s",
            delivered as f64 / args.duration.as_secs_f64(),
        );
        let shown_twice = sum(&|o| o.shown_twice);
        report.figure("shown_twice", shown_twice as f64);
        if delivered < expected || shown_twice > 0 {
            report.problems.push(format!(
                "{} of {expected} deliveries missing, {shown_twice} shown twice",
                expected.saturating_sub(delivered - shown_twice)
            ));
        }
        for m in outs.iter().flat_map(|o| &o.missing).take(50) {
            report.problems.push(m.clone());
        }
        report.series = vec![lat];
    }
    if let Some(w) = watch {
        w.finish(report, sum(&|o| o.delivered + o.resumed), peers);
    }
    Ok(())
}
