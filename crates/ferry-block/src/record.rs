//! Records of a Spaceblock data stream. Fixed layouts, big-endian, each bounded:
//!
//! ```text
//! 0x01 FileStart  id: u32, offset: u64                 the next Data belongs to entry `id`,
//!                                                      starting at byte `offset`
//! 0x02 Data       len: u32 (1..=MAX_DATA), len bytes   file content, in order
//! 0x03 FileEnd    blake3: [u8; 32]                     hash of the *whole* file (0..size),
//!                                                      not just what this stream carried
//! 0x04 FileAbort  len: u16 (..=MAX_REASON), UTF-8      the sender gives up on this file
//!                                                      (changed while sending, unreadable)
//! ```
//! A stream is `(FileStart Data* (FileEnd | FileAbort))*` then FIN. Anything else — an unknown
//! tag, Data outside a file, a length over its bound — is a protocol error. Data carries no
//! acknowledgement: QUIC flow control is the back-pressure.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest Data record body.
pub const MAX_DATA: usize = 1 << 20;
/// Longest FileAbort reason.
pub const MAX_REASON: usize = 512;

const FILE_START: u8 = 0x01;
const DATA: u8 = 0x02;
const FILE_END: u8 = 0x03;
const FILE_ABORT: u8 = 0x04;

/// A record as read, Data's body not yet read: the caller reads exactly `len` bytes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    FileStart { id: u32, offset: u64 },
    Data { len: usize },
    FileEnd { hash: [u8; 32] },
    FileAbort { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("unknown record tag {0:#04x}")]
    UnknownTag(u8),
    #[error("data record of {0} bytes is out of bounds")]
    BadDataLen(u32),
    #[error("abort reason of {0} bytes is too long")]
    ReasonTooLong(usize),
    #[error("stream ended inside a record")]
    Truncated,
    #[error("i/o: {0}")]
    Io(std::io::Error),
}

fn io(e: std::io::Error) -> RecordError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        RecordError::Truncated
    } else {
        RecordError::Io(e)
    }
}

/// Reads the next record head; `Ok(None)` at a clean end of stream (between records).
pub async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Head>, RecordError> {
    let mut tag = [0u8; 1];
    if r.read(&mut tag).await.map_err(io)? == 0 {
        return Ok(None);
    }
    let head = match tag[0] {
        FILE_START => {
            let mut b = [0u8; 12];
            r.read_exact(&mut b).await.map_err(io)?;
            let id = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let mut off = [0u8; 8];
            off.copy_from_slice(&b[4..]);
            Head::FileStart {
                id,
                offset: u64::from_be_bytes(off),
            }
        }
        DATA => {
            let len = r.read_u32().await.map_err(io)?;
            if len == 0 || len as usize > MAX_DATA {
                return Err(RecordError::BadDataLen(len));
            }
            Head::Data { len: len as usize }
        }
        FILE_END => {
            let mut hash = [0u8; 32];
            r.read_exact(&mut hash).await.map_err(io)?;
            Head::FileEnd { hash }
        }
        FILE_ABORT => {
            let len = r.read_u16().await.map_err(io)? as usize;
            if len > MAX_REASON {
                return Err(RecordError::ReasonTooLong(len));
            }
            let mut b = vec![0u8; len];
            r.read_exact(&mut b).await.map_err(io)?;
            Head::FileAbort {
                reason: String::from_utf8_lossy(&b).into_owned(),
            }
        }
        t => return Err(RecordError::UnknownTag(t)),
    };
    Ok(Some(head))
}

pub fn file_start(id: u32, offset: u64) -> [u8; 13] {
    let mut b = [0u8; 13];
    b[0] = FILE_START;
    b[1..5].copy_from_slice(&id.to_be_bytes());
    b[5..].copy_from_slice(&offset.to_be_bytes());
    b
}

/// The 5-byte head of a Data record; the body follows.
pub fn data_head(len: usize) -> [u8; 5] {
    debug_assert!(len > 0 && len <= MAX_DATA);
    let mut b = [0u8; 5];
    b[0] = DATA;
    b[1..].copy_from_slice(&(len as u32).to_be_bytes());
    b
}

pub fn file_end(hash: &[u8; 32]) -> [u8; 33] {
    let mut b = [0u8; 33];
    b[0] = FILE_END;
    b[1..].copy_from_slice(hash);
    b
}

pub fn file_abort(reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut b = Vec::with_capacity(3 + cut);
    b.push(FILE_ABORT);
    b.extend_from_slice(&(cut as u16).to_be_bytes());
    b.extend_from_slice(&reason.as_bytes()[..cut]);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    async fn heads(mut bytes: &[u8]) -> Result<Vec<Head>, RecordError> {
        let mut out = vec![];
        while let Some(h) = read_head(&mut bytes).await? {
            if let Head::Data { len } = h {
                bytes = &bytes[len.min(bytes.len())..];
            }
            out.push(h);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn records_round_trip() {
        let mut b = file_start(7, 1 << 40).to_vec();
        b.extend_from_slice(&data_head(3));
        b.extend_from_slice(b"abc");
        b.extend_from_slice(&file_end(&[9; 32]));
        b.extend_from_slice(&file_abort("changed ✓"));
        let got = heads(&b).await.unwrap();
        assert_eq!(
            got,
            [
                Head::FileStart {
                    id: 7,
                    offset: 1 << 40
                },
                Head::Data { len: 3 },
                Head::FileEnd { hash: [9; 32] },
                Head::FileAbort {
                    reason: "changed ✓".into()
                }
            ]
        );
    }

    #[tokio::test]
    async fn bad_records_are_typed_errors() {
        assert!(matches!(
            heads(&[0x7f]).await,
            Err(RecordError::UnknownTag(0x7f))
        ));
        assert!(matches!(
            heads(&[DATA, 0, 0, 0, 0]).await,
            Err(RecordError::BadDataLen(0))
        ));
        assert!(matches!(
            heads(&[DATA, 0xff, 0xff, 0xff, 0xff]).await,
            Err(RecordError::BadDataLen(_))
        ));
        assert!(matches!(
            heads(&[FILE_ABORT, 0xff, 0xff]).await,
            Err(RecordError::ReasonTooLong(_))
        ));
        assert!(matches!(
            heads(&[FILE_START, 0, 0]).await,
            Err(RecordError::Truncated)
        ));
        assert!(matches!(
            heads(&[FILE_END, 1, 2]).await,
            Err(RecordError::Truncated)
        ));
        let long = file_abort(&"é".repeat(1000));
        assert!(long.len() <= 3 + MAX_REASON);
    }

    proptest! {
        #[test]
        fn decoder_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let _ = rt.block_on(heads(&bytes));
        }

        #[test]
        fn file_start_round_trips(id in any::<u32>(), offset in any::<u64>()) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt.block_on(heads(&file_start(id, offset))).unwrap();
            prop_assert_eq!(got, vec![Head::FileStart { id, offset }]);
        }
    }
}
