//! Content ids: what makes two files "the same object" in a library, so duplicates share one
//! object row and one thumbnail.
//!
//! - Files up to [`FULL_LIMIT`] (32 MiB: every photo, document and song) get the plain BLAKE3
//!   hash of their whole content — the same hash Spaceblock verifies transfers with.
//! - Larger files (videos, disk images) get a *sampled* id, so indexing a 50 GB video reads
//!   2 MiB of it instead of 50 GB: BLAKE3 in derive-key mode (its own domain, so a sampled id
//!   can never equal a full one) over the size and [`SAMPLES`] chunks of [`SAMPLE_LEN`] bytes at
//!   evenly spaced offsets, first and last chunk included. Equal sampled ids mean equal size and
//!   equal bytes at 32 places spread over the file; media files that differ almost always differ
//!   in their headers, indexes or somewhere in 32 evenly spaced 64 KiB windows. It is an id for
//!   browsing and deduplicating, never a proof: transfers always verify the full hash.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// A content id (32 bytes).
pub type Cas = [u8; 32];

pub const FULL_LIMIT: u64 = 32 << 20;
pub const SAMPLES: u64 = 32;
pub const SAMPLE_LEN: u64 = 64 << 10;
const SAMPLED_CONTEXT: &str = "ferry 2026 sampled content id v1";

/// The content id of `len` bytes read from `file` (positioned anywhere; it seeks).
pub fn content_id(file: &mut File, len: u64) -> io::Result<Cas> {
    if len <= FULL_LIMIT {
        file.seek(SeekFrom::Start(0))?;
        let mut h = blake3::Hasher::new();
        // Bounded by `len`: a file that grows while we read cannot make us read forever.
        let copied = io::copy(&mut file.take(len), &mut h)?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was read",
            ));
        }
        return Ok(*h.finalize().as_bytes());
    }
    let mut h = blake3::Hasher::new_derive_key(SAMPLED_CONTEXT);
    h.update(&len.to_le_bytes());
    let mut buf = vec![0u8; SAMPLE_LEN as usize];
    let last = len - SAMPLE_LEN;
    for i in 0..SAMPLES {
        let at = last / (SAMPLES - 1) * i;
        let at = if i == SAMPLES - 1 { last } else { at };
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut buf)?;
        h.update(&buf);
    }
    Ok(*h.finalize().as_bytes())
}

/// The BLAKE3 hash of everything `r` reads, and how many bytes that was (a whole file, to
/// verify a download end to end; equal to the content id for files up to [`FULL_LIMIT`]).
pub fn full_hash(r: &mut impl Read) -> io::Result<(u64, Cas)> {
    let mut h = blake3::Hasher::new();
    let len = io::copy(r, &mut h)?;
    Ok((len, *h.finalize().as_bytes()))
}

pub fn to_hex(cas: &Cas) -> String {
    blake3::Hash::from_bytes(*cas).to_hex().to_string()
}

pub fn from_hex(s: &str) -> Option<Cas> {
    blake3::Hash::from_hex(s).ok().map(|h| *h.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn id_of(bytes: &[u8]) -> Cas {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        content_id(&mut f, bytes.len() as u64).unwrap()
    }

    #[test]
    fn small_files_get_their_plain_blake3_hash() {
        let data = b"hello ferry".repeat(1000);
        assert_eq!(id_of(&data), *blake3::hash(&data).as_bytes());
        assert_eq!(id_of(b""), *blake3::hash(b"").as_bytes());
    }

    #[test]
    fn large_files_are_sampled_and_see_head_tail_and_middle() {
        let len = (FULL_LIMIT + 3 * SAMPLE_LEN) as usize;
        let mut data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let base = id_of(&data);
        assert_ne!(base, *blake3::hash(&data).as_bytes(), "its own domain");
        let last = len as u64 - SAMPLE_LEN;
        let window16 = (last / (SAMPLES - 1) * 16 + 5) as usize;
        for at in [0, window16, len - 1] {
            let old = data[at];
            data[at] ^= 1;
            assert_ne!(id_of(&data), base, "a change at {at} is seen");
            data[at] = old;
        }
        // The documented trade-off: a byte between two windows is not part of the id.
        let between = window16 + SAMPLE_LEN as usize + 1;
        data[between] ^= 1;
        assert_eq!(id_of(&data), base, "outside the samples");
        data[between] ^= 1;
        assert_eq!(id_of(&data), base);
        data.push(0);
        assert_ne!(id_of(&data), base, "the size is part of the id");
    }

    #[test]
    fn a_file_that_shrank_is_an_error_not_an_id() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"short").unwrap();
        assert!(content_id(&mut f, 10).is_err());
    }

    #[test]
    fn hex_round_trips() {
        let id = id_of(b"x");
        assert_eq!(from_hex(&to_hex(&id)), Some(id));
        assert_eq!(from_hex("zz"), None);
    }
}
