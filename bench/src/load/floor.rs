//! The machine's floor, measured in the same run as the load: the round trip of a minimal
//! frame echoed over the engine on loopback (what any p2pchat exchange costs at least), and a
//! PING to the registry under test before the load starts (what a registry request costs at
//! least on this machine right now). Figures are reported as ratios to it.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use p2pchat_engine::{NetEvent, Reactor};
use p2pchat_protocol::{Frame, Msg, Role, VERSION};

use crate::report::new_hist;

/// Round trips of a 5-byte frame echoed between two connections of one engine reactor.
pub fn engine_echo(rounds: usize) -> anyhow::Result<Histogram<u64>> {
    let mut r = Reactor::new(p2pchat_engine::Config::default())?;
    let l = r.listen("127.0.0.1:0".parse()?)?;
    let addr = r.listener_addr(l).context("listener address")?;
    let client = r.connect(addr)?;
    let mut server = None;
    let mut connected = false;
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.is_none() || !connected {
        if Instant::now() > deadline {
            bail!("engine echo: loopback connect timed out");
        }
        r.turn(
            Some(Instant::now() + Duration::from_millis(100)),
            &mut events,
        )?;
        for e in events.drain(..) {
            match e {
                NetEvent::Accepted { conn, .. } => server = Some(conn),
                NetEvent::Connected { conn } if conn == client => connected = true,
                NetEvent::Closed { .. } => bail!("engine echo: connection closed"),
                _ => {}
            }
        }
    }
    let server = server.context("accepted")?;
    let frame = Frame::event(Msg::Ping).to_bytes();
    let mut h = new_hist();
    for _ in 0..rounds {
        let t = Instant::now();
        r.send(client, &frame);
        let mut got = 0;
        while got < frame.len() {
            if t.elapsed() > Duration::from_secs(5) {
                bail!("engine echo: no echo within 5 s");
            }
            r.turn(
                Some(Instant::now() + Duration::from_millis(100)),
                &mut events,
            )?;
            for e in events.drain(..) {
                if let NetEvent::Received { conn, bytes } = e {
                    if conn == server {
                        r.send(server, &bytes);
                    } else if conn == client {
                        got += bytes.len();
                    }
                }
            }
        }
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    Ok(h)
}

/// Round trips of `Ping` to the registry at `addr` over one blocking connection (a secure
/// link, as clients meet the registry; the hello goes out with the handshake).
pub fn registry_ping(addr: SocketAddr, rounds: usize) -> anyhow::Result<Histogram<u64>> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to the registry at {addr}"))?;
    s.set_nodelay(true)?;
    let hello = Frame::event(Msg::Hello {
        version: VERSION,
        role: Role::Client,
        name: String::new(),
        ticket: vec![],
    });
    let mut link = crate::load::secure::BlockingLink::open(s, &hello.to_bytes())?;
    link.recv()?;
    let mut h = new_hist();
    for i in 0..rounds {
        let t = Instant::now();
        link.send(&Frame::new(i as u32 + 1, Msg::Ping))?;
        let f = link.recv()?;
        if f.msg != Msg::Pong {
            bail!("registry answered a ping with {:?}", f.msg);
        }
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    Ok(h)
}
