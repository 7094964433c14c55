//! Bytes from the registry: frames decoded, pushed events handed on, replies matched to the
//! requests they answer.

use std::collections::VecDeque;
use std::time::Instant;

use log::{debug, warn};
use p2pchat_protocol::{status, Frame, Msg};
use rand::rngs::StdRng;

use super::{event, Conn, Outcome, RegistryLink};
use crate::io::{CloseReason, Config, LinkId, NodeEvent, Output};

impl RegistryLink {
    /// Bytes from the registry.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_received(
        &mut self,
        now: Instant,
        link: LinkId,
        bytes: &[u8],
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        if !self.owns(link) {
            return;
        }
        let frames = match self.reader.push(now, bytes) {
            Ok(frames) => frames,
            Err(err) => {
                warn!("registry sent undecodable bytes: {err}");
                self.drop_link(now, CloseReason::Decode(err), config, rng, out, outcomes);
                return;
            }
        };
        if let Conn::Ready { last_rx, .. } = &mut self.conn {
            *last_rx = now;
        }
        for frame in frames {
            if !self.owns(link) {
                break;
            }
            self.handle_frame(now, frame, config, rng, out, outcomes);
        }
    }

    pub(super) fn handle_frame(
        &mut self,
        now: Instant,
        frame: Frame,
        config: &Config,
        rng: &mut StdRng,
        out: &mut VecDeque<Output>,
        outcomes: &mut Vec<Outcome>,
    ) {
        let Some(msg) = self.parts.absorb(frame.id, frame.msg) else {
            return;
        };
        let frame = Frame { id: frame.id, msg };
        if frame.id == 0 {
            match frame.msg {
                // The registry closes the connection, and says why.
                // A connection that never logged in is closed after the registry's pre-login
                // deadline (60 s by default): nothing the user asked for was lost, and the link
                // comes back by itself, so that is no news for the user.
                Msg::Error { code, message }
                    if code == status::TIMEOUT && self.is_idle_without_session() =>
                {
                    debug!("registry closed an idle pre-login connection: {message}")
                }
                Msg::Error { message, .. } => event(out, NodeEvent::error(message)),
                Msg::Welcome { name, .. } => self.handle_welcome(now, &name, config, out),
                Msg::Room { room, event } => {
                    if let p2pchat_protocol::RoomEvent::Promoted { name } = &event {
                        if self.promotions.len() < 64 {
                            self.promotions.push((room.clone(), name.clone()));
                        }
                    }
                    outcomes.push(Outcome::RoomEvent { room, event });
                }
                Msg::RoomJoined { room, peers } => outcomes.push(Outcome::RoomJoined {
                    room,
                    peers,
                    reply: false,
                }),
                other => debug!("registry event ignored: {}", other.kind_name()),
            }
            return;
        }
        if !matches!(self.conn, Conn::Ready { .. }) {
            let got = frame.msg.kind_name();
            let reason = CloseReason::Unexpected {
                expected: "welcome",
                got,
            };
            self.drop_link(now, reason, config, rng, out, outcomes);
            return;
        }
        let Some(req) = self.pending.remove(&frame.id) else {
            // Also the late answer to a request given up on (`abandon_requests`).
            warn!("registry reply with unknown id {}", frame.id);
            return;
        };
        self.answered += 1;
        self.handle_reply(now, req, frame.msg, config, rng, out, outcomes);
    }
}
