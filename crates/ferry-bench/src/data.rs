//! Test data: random-looking bytes (so nothing on the path can profit from zeros or repeats)
//! from a fast PRNG, written once per run, and BLAKE3 of files to check what arrived.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// I/O and hashing granularity, the same as Ferry's data records.
pub const CHUNK: usize = 1 << 20;

/// wyrand: a few GB/s on one core, so generating GiBs of data takes seconds.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next().to_le_bytes());
        }
        let tail = words.into_remainder();
        let last = self.next().to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }
}

pub fn random_vec(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// Writes `size` random bytes to `path` (no fsync: a source only needs to be readable) and
/// returns their BLAKE3 hash.
pub fn write_random_file(path: &Path, size: u64, seed: u64) -> std::io::Result<blake3::Hash> {
    let mut rng = Rng::new(seed);
    let mut f = File::create(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(hasher.finalize())
}

pub fn hash_file(path: &Path) -> std::io::Result<blake3::Hash> {
    let mut f = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(hasher.finalize()),
            Ok(n) => {
                hasher.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whether every file directly in `src` has an identical copy of the same name in `dst`.
/// Returns (files compared, files missing or different).
pub fn compare_dirs(src: &Path, dst: &Path) -> std::io::Result<(usize, usize)> {
    let (mut compared, mut bad) = (0, 0);
    for entry in std::fs::read_dir(src)? {
        let name = entry?.file_name();
        compared += 1;
        let same = match (hash_file(&src.join(&name)), hash_file(&dst.join(&name))) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            bad += 1;
        }
    }
    Ok((compared, bad))
}
