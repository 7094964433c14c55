//! Field primitives shared by frames and datagrams: a nom-backed reader over one exact body and
//! infallible writers.
//!
//! Every multi-byte integer is big-endian. Strings and byte fields are a `u16` length and that
//! many bytes. Addresses are a family byte (4 or 6), the address bytes and a `u16` port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::BufMut;
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32, be_u64, be_u8};
use nom::IResult;

use crate::error::{DecodeError, DecodeErrorKind};

type NomResult<'a, T> = IResult<&'a [u8], T, nom::error::Error<&'a [u8]>>;

/// Reads fields from one complete body with nom's *complete* parsers, tracking the offset so that
/// errors point at the failing byte. Running out of input is `Truncated`, never `Incomplete`:
/// the framing layer has already cut the exact body.
pub(crate) struct Reader<'a> {
    body: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Reader { body, rest: body }
    }

    pub(crate) fn offset(&self) -> usize {
        self.body.len() - self.rest.len()
    }

    pub(crate) fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.offset(), kind)
    }

    fn run<T>(&mut self, parsed: NomResult<'a, T>) -> Result<T, DecodeError> {
        match parsed {
            Ok((rest, value)) => {
                self.rest = rest;
                Ok(value)
            }
            Err(_) => Err(self.error(DecodeErrorKind::Truncated)),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let parsed = be_u8(self.rest);
        self.run(parsed)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let parsed = be_u16(self.rest);
        self.run(parsed)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let parsed = be_u32(self.rest);
        self.run(parsed)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let parsed = be_u64(self.rest);
        self.run(parsed)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let parsed = take(n)(self.rest);
        self.run(parsed)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        let at = self.offset();
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::new(at, DecodeErrorKind::InvalidValue("bool"))),
        }
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.u16()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.u16()? as usize;
        let at = self.offset();
        let raw = self.take(len)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(DecodeError::new(
                at + e.valid_up_to(),
                DecodeErrorKind::InvalidUtf8,
            )),
        }
    }

    pub(crate) fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let at = self.offset();
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => {
                return Err(DecodeError::new(
                    at,
                    DecodeErrorKind::InvalidValue("address family"),
                ))
            }
        };
        let port = self.u16()?;
        Ok(SocketAddr::new(ip, port))
    }

    /// A `u16` element count followed by that many elements.
    pub(crate) fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.u16()? as usize;
        // Each element takes at least one byte, so a count larger than what is left is a lie we
        // can reject before reserving memory for it.
        if count > self.rest.len() {
            return Err(self.error(DecodeErrorKind::Truncated));
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// Whether every byte was read (an optional trailing field is absent).
    pub(crate) fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.error(DecodeErrorKind::TrailingBytes))
        }
    }
}

/// Longest string or byte field on the wire: its length is a `u16`.
pub const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// Cuts `s` to at most [`MAX_FIELD_LEN`] bytes on a character boundary. Encoding never fails, so
/// an oversized string (which no valid sender produces: text is capped far below) is cut rather
/// than rejected.
fn clamp_str(s: &str) -> &str {
    if s.len() <= MAX_FIELD_LEN {
        return s;
    }
    let mut end = MAX_FIELD_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(crate) fn put_str(out: &mut impl BufMut, s: &str) {
    let s = clamp_str(s);
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

pub(crate) fn str_len(s: &str) -> usize {
    2 + clamp_str(s).len()
}

pub(crate) fn put_bytes(out: &mut impl BufMut, b: &[u8]) {
    let b = &b[..b.len().min(MAX_FIELD_LEN)];
    out.put_u16(b.len() as u16);
    out.put_slice(b);
}

pub(crate) fn bytes_len(b: &[u8]) -> usize {
    2 + b.len().min(MAX_FIELD_LEN)
}

pub(crate) fn put_addr(out: &mut impl BufMut, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.put_u8(4);
            out.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.put_u8(6);
            out.put_slice(&ip.octets());
        }
    }
    out.put_u16(addr.port());
}

pub(crate) fn addr_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

pub(crate) fn put_bool(out: &mut impl BufMut, b: bool) {
    out.put_u8(u8::from(b));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_offsets() {
        let mut r = Reader::new(&[0, 3, b'a', 0xff, b'c']);
        let err = r.string().unwrap_err();
        assert_eq!(err, DecodeError::new(3, DecodeErrorKind::InvalidUtf8));
    }

    #[test]
    fn truncated_string_is_truncated_not_incomplete() {
        let mut r = Reader::new(&[0, 9, b'a']);
        assert_eq!(r.string().unwrap_err().kind, DecodeErrorKind::Truncated);
    }

    #[test]
    fn list_count_larger_than_input_is_rejected_before_allocating() {
        let mut r = Reader::new(&[0xff, 0xff, 1]);
        assert_eq!(
            r.list(|r| r.u8()).unwrap_err().kind,
            DecodeErrorKind::Truncated
        );
    }

    #[test]
    fn oversized_strings_are_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_FIELD_LEN); // 2 bytes each
        let mut out = Vec::new();
        put_str(&mut out, &s);
        assert_eq!(out.len(), str_len(&s));
        let mut r = Reader::new(&out);
        let back = r.string().unwrap();
        assert!(back.len() <= MAX_FIELD_LEN && back.chars().all(|c| c == 'é'));
    }

    #[test]
    fn addresses_round_trip() {
        for a in ["127.0.0.1:15600", "[::1]:9", "0.0.0.0:0"] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut out = Vec::new();
            put_addr(&mut out, &addr);
            assert_eq!(out.len(), addr_len(&addr));
            assert_eq!(Reader::new(&out).addr().unwrap(), addr);
        }
        assert_eq!(
            Reader::new(&[5, 0, 0]).addr().unwrap_err().kind,
            DecodeErrorKind::InvalidValue("address family")
        );
    }
}
