//! Serving connections' input fairly: a per-turn budget per connection, a round-robin backlog
//! for what is left, and backpressure that stops decoding while a connection's output is over
//! the driver's soft cap (docs/architecture.md, "Fair turns and backpressure").

use std::time::Instant;

use p2pchat_protocol::{status, DecodeErrorKind, FrameDecoder};

use crate::io::{CloseReason, ConnId};
use crate::registry::{Registry, TimerKey};

impl Registry {
    pub(crate) fn handle_received(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let max_backlog = self.config.max_input_backlog;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let max_frame_len = self.config.max_frame_len;
        let decoder = c
            .decoder
            .get_or_insert_with(|| Box::new(FrameDecoder::new(max_frame_len)));
        decoder.push(bytes);
        if decoder.buffered() > max_backlog {
            // Requests arrive much faster than this connection is served (it pipelines without
            // reading, or floods): its backlog would grow without bound.
            self.stats.busy += 1;
            self.close_with(
                conn,
                status::BUSY,
                "too many requests waiting: wait for replies before sending more",
                CloseReason::Backlog,
            );
            return;
        }
        if !c.blocked && !c.queued {
            self.serve(now, conn);
        }
    }

    /// Decodes and handles `conn`'s buffered frames, up to one turn's budget (frames and output
    /// bytes). What is left waits in `backlog` for the next turn, behind everyone else's; a
    /// connection whose output is over the soft cap is not served until it drains.
    fn serve(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let had_partial = c.has_partial();
        let (max_frames, max_bytes) = (self.config.turn_frames.max(1), self.config.turn_bytes);
        self.produced = 0;
        let mut frames = 0;
        let mut completed = false;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return; // closed by the frame just handled
            };
            if c.blocked {
                // Served again when the driver says the output drained.
                self.timers.cancel(TimerKey::Frame(conn));
                return;
            }
            if frames >= max_frames || self.produced >= max_bytes {
                if c.buffered() > 0 && !c.queued {
                    c.queued = true;
                    self.backlog.push_back(conn);
                    self.stats.deferred += 1;
                }
                // Waiting on us, not on the client: no started-frame deadline meanwhile.
                self.timers.cancel(TimerKey::Frame(conn));
                return;
            }
            let next = match c.decoder.as_mut() {
                Some(d) => d.next_frame(),
                None => Ok(None),
            };
            match next {
                Ok(Some(frame)) => {
                    frames += 1;
                    completed = true;
                    self.handle_frame(now, conn, frame);
                }
                Ok(None) => break,
                Err(err) => {
                    let code = match err.kind {
                        DecodeErrorKind::TooLong { .. } => status::TOO_LARGE,
                        _ => status::MALFORMED,
                    };
                    let why = err.to_string();
                    self.stats.protocol_errors += 1;
                    self.close_with(conn, code, &why, CloseReason::Malformed(why.clone()));
                    return;
                }
            }
        }
        // A started frame must complete within frame_timeout of when it started; trickling
        // bytes into the same frame does not extend the deadline.
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.has_partial() {
            // Drained: give the decoder and its read buffer back instead of keeping them for a
            // connection that may stay quiet for hours (a logged-in peer sends a request now
            // and then); the next read allocates again, once per read, not per frame. Memory
            // per online peer, docs/performance.md.
            c.decoder = None;
            self.timers.cancel(TimerKey::Frame(conn));
        } else if completed || !had_partial || !self.timers.is_set(TimerKey::Frame(conn)) {
            self.timers
                .set(TimerKey::Frame(conn), now + self.config.frame_timeout);
        }
    }

    /// Serves each connection of the backlog one budget, in turn.
    pub(crate) fn serve_backlog(&mut self, now: Instant) {
        for _ in 0..self.backlog.len() {
            let Some(conn) = self.backlog.pop_front() else {
                break;
            };
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.queued = false;
            if !c.blocked {
                self.serve(now, conn);
            }
        }
    }

    pub(crate) fn handle_backpressure(&mut self, now: Instant, conn: ConnId, blocked: bool) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let was = std::mem::replace(&mut c.blocked, blocked);
        if was && !blocked && !c.queued {
            self.serve(now, conn);
        }
    }
}
