//! Ids handed to callers, and how they map onto mio's `Token` space.
//!
//! The token space is split so that one `match` on the number tells what kind of source fired:
//!
//! | token (usize, 64-bit)                      | source                                  |
//! |--------------------------------------------|-----------------------------------------|
//! | `0`                                        | the `Waker`                             |
//! | `1`                                        | the signal pipe (signal-hook-mio)       |
//! | `0x100 ..= 0x1ff`                          | listeners, `0x100 + slab index`         |
//! | `0x200 ..= 0x2ff`                          | UDP sockets, `0x200 + slab index`       |
//! | low 32 bits `>= 0x1_0000`                  | connections: low 32 bits = `0x1_0000 + index`, high 32 bits = generation |
//!
//! A connection's token carries its generation, so an event that was already fetched for a
//! connection that has since been closed (and whose slab slot was reused within the same batch of
//! events) decodes to a `ConnId` whose generation no longer matches, and is ignored.

use std::fmt;

use mio::Token;

// The connection token packs a 32-bit index and a 32-bit generation; it needs a 64-bit usize.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("p2pchat-engine packs (generation, index) into a mio Token and needs 64-bit usize");

/// Token of the cross-thread [`mio::Waker`].
pub(crate) const WAKER: Token = Token(0);
/// Token of the signal-hook-mio self-pipe.
pub(crate) const SIGNALS: Token = Token(1);

const LISTENER_BASE: usize = 0x100;
/// How many listeners a reactor can hold at once.
pub(crate) const MAX_LISTENERS: usize = 0x100;
const UDP_BASE: usize = 0x200;
/// How many UDP sockets a reactor can hold at once.
pub(crate) const MAX_UDP: usize = 0x100;
const CONN_BASE: u32 = 0x1_0000;
/// Largest connection slab index that still fits in the low 32 bits of a token.
pub(crate) const MAX_CONN_INDEX: usize = (u32::MAX - CONN_BASE) as usize;

/// Identifies one TCP connection for its whole life, from `Accepted`/`connect()` to `Closed`.
///
/// It is a slab index plus a generation. Slots are reused after a connection closes, but the
/// generation is new, so a stale `ConnId` kept by a caller never reaches the new connection:
/// `send`, `close`, `abort` and `is_open` simply do not recognise it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    pub(crate) fn new(index: usize, generation: u32) -> Self {
        debug_assert!(index <= MAX_CONN_INDEX);
        Self {
            index: index as u32,
            generation,
        }
    }

    /// The id whose [`index`](Self::index) and [`generation`](Self::generation) these are, so
    /// a caller can keep an id as a plain integer and rebuild it instead of keeping a map. An
    /// id that names no connection (closed, or never opened) is harmless: the reactor does
    /// not recognise it.
    pub fn from_parts(index: u32, generation: u32) -> Self {
        Self { index, generation }
    }

    /// The slab slot. Reused by later connections, so never an identity on its own.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The generation that tells this connection apart from others that used the same slot.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub(crate) fn slot(&self) -> usize {
        self.index as usize
    }

    pub(crate) fn token(&self) -> Token {
        Token(((self.generation as usize) << 32) | (CONN_BASE + self.index) as usize)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}.{}", self.index, self.generation)
    }
}

/// Identifies a listening TCP socket created by [`Reactor::listen`](crate::Reactor::listen).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ListenerId(u32);

impl ListenerId {
    pub(crate) fn new(slot: usize) -> Self {
        debug_assert!(slot < MAX_LISTENERS);
        Self(slot as u32)
    }

    pub(crate) fn slot(&self) -> usize {
        self.0 as usize
    }

    pub(crate) fn token(&self) -> Token {
        Token(LISTENER_BASE + self.slot())
    }
}

/// Identifies a UDP socket created by [`Reactor::bind_udp`](crate::Reactor::bind_udp).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct UdpId(u32);

impl UdpId {
    pub(crate) fn new(slot: usize) -> Self {
        debug_assert!(slot < MAX_UDP);
        Self(slot as u32)
    }

    pub(crate) fn slot(&self) -> usize {
        self.0 as usize
    }

    pub(crate) fn token(&self) -> Token {
        Token(UDP_BASE + self.slot())
    }
}

/// What a token returned by `Poll::poll` refers to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Source {
    Waker,
    Signals,
    Listener(ListenerId),
    Udp(UdpId),
    Conn(ConnId),
    /// Not a token we ever register; ignored (mio may deliver spurious events).
    Unknown,
}

impl Source {
    pub(crate) fn from_token(token: Token) -> Self {
        let raw = token.0;
        let low = (raw & 0xffff_ffff) as u32;
        let high = (raw >> 32) as u32;
        if low >= CONN_BASE {
            return Source::Conn(ConnId {
                index: low - CONN_BASE,
                generation: high,
            });
        }
        if high != 0 {
            return Source::Unknown;
        }
        match raw {
            0 => Source::Waker,
            1 => Source::Signals,
            r if (LISTENER_BASE..LISTENER_BASE + MAX_LISTENERS).contains(&r) => {
                Source::Listener(ListenerId((r - LISTENER_BASE) as u32))
            }
            r if (UDP_BASE..UDP_BASE + MAX_UDP).contains(&r) => {
                Source::Udp(UdpId((r - UDP_BASE) as u32))
            }
            _ => Source::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_token_round_trips() {
        for (index, generation) in [
            (0, 0),
            (1, 0),
            (0, 1),
            (7, 42),
            (MAX_CONN_INDEX, u32::MAX),
            (12_345, 0x8000_0000),
        ] {
            let id = ConnId::new(index, generation);
            assert_eq!(Source::from_token(id.token()), Source::Conn(id), "{id}");
        }
    }

    #[test]
    fn generations_give_distinct_tokens_for_one_slot() {
        let a = ConnId::new(3, 1);
        let b = ConnId::new(3, 2);
        assert_ne!(a.token(), b.token());
        assert_ne!(a, b);
        assert_eq!(a.index(), b.index());
    }

    #[test]
    fn fixed_and_ranged_tokens_round_trip() {
        assert_eq!(Source::from_token(WAKER), Source::Waker);
        assert_eq!(Source::from_token(SIGNALS), Source::Signals);
        for slot in [0, 1, MAX_LISTENERS - 1] {
            let l = ListenerId::new(slot);
            assert_eq!(Source::from_token(l.token()), Source::Listener(l));
        }
        for slot in [0, 1, MAX_UDP - 1] {
            let u = UdpId::new(slot);
            assert_eq!(Source::from_token(u.token()), Source::Udp(u));
        }
    }

    #[test]
    fn tokens_we_never_register_are_unknown() {
        for raw in [2, 0xff, 0x300, 0xffff, 1 << 32, (5 << 32) | 2] {
            assert_eq!(Source::from_token(Token(raw)), Source::Unknown, "{raw:#x}");
        }
    }

    #[test]
    fn display_shows_index_and_generation() {
        assert_eq!(ConnId::new(4, 9).to_string(), "c4.9");
    }
}
