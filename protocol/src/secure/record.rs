//! Splitting the secure link's byte stream into records: `len u32 BE | kind u8 | content`, the
//! same length prefix as frames. As in `FrameDecoder`, the length is checked against the
//! maximum before any memory is reserved for the body, and an error poisons the reader.

use bytes::{Buf, Bytes, BytesMut};

use crate::secure::SecureError;

/// Bytes before a record's content: the length prefix and the kind.
pub const RECORD_HEADER: usize = 5;
/// Bytes of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Largest plaintext sealed in one record; longer sends are cut into several records.
pub const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;
/// Largest record body (kind byte and content) accepted: a full sealed record. Handshake
/// messages are far smaller.
pub const MAX_RECORD: u32 = (1 + MAX_RECORD_PLAINTEXT + TAG_LEN) as u32;

/// Accumulates stream bytes and yields whole records (header included).
#[derive(Debug, Default)]
pub struct RecordReader {
    buf: BytesMut,
    failed: Option<SecureError>,
}

impl RecordReader {
    /// An empty reader.
    pub fn new() -> RecordReader {
        RecordReader::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next whole record (length prefix, kind and content), `Ok(None)` if more bytes are
    /// needed, or the error that poisons the stream.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, SecureError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len == 0 || len > MAX_RECORD {
            let err = SecureError::BadLength {
                len,
                max: MAX_RECORD,
            };
            self.failed = Some(err.clone());
            self.buf = BytesMut::new();
            return Err(err);
        }
        let total = 4 + len as usize;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let record = self.buf.split_to(total).freeze();
        if self.buf.is_empty() {
            // Give the allocation back rather than keep a partly used one per idle link.
            self.buf = BytesMut::new();
        }
        Ok(Some(record))
    }

    /// Whether part of a record is buffered (for "a started frame must complete" deadlines).
    pub fn has_partial(&self) -> bool {
        self.buf.has_remaining()
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The bytes buffered and not yet returned (the start of a record), for a reader of
    /// another shape to carry on from.
    pub(crate) fn into_buffered(self) -> Vec<u8> {
        self.buf.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_whole_whatever_the_cuts() {
        let stream = [0, 0, 0, 2, 0x52, 7, 0, 0, 0, 1, 0x50];
        for cut in 0..stream.len() {
            let mut r = RecordReader::new();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                r.push(part);
                while let Some(rec) = r.next_record().unwrap() {
                    got.push(rec.to_vec());
                }
            }
            assert_eq!(got, vec![stream[..6].to_vec(), stream[6..].to_vec()]);
            assert!(!r.has_partial());
        }
    }

    #[test]
    fn lengths_out_of_range_poison_the_reader_without_buffering() {
        for prefix in [[0u8, 0, 0, 0], [0xff, 0xff, 0xff, 0xff]] {
            let mut r = RecordReader::new();
            r.push(&prefix);
            let err = r.next_record().unwrap_err();
            assert!(matches!(err, SecureError::BadLength { .. }));
            r.push(&[0; 64]);
            assert_eq!(r.buffered(), 0);
            assert_eq!(r.next_record().unwrap_err(), err);
        }
    }
}
