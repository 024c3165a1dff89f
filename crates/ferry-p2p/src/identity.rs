//! Node identity: an Ed25519 key pair persisted in the data dir.
//!
//! The public key *is* the node's identity ([`PeerId`]). People see it as base32 (RFC 4648,
//! lowercase, no padding): 52 characters in full, or a short 12-character prefix in lists.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use ring::rand::SecureRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// Length of a full fingerprint (base32 of 32 bytes).
pub const FINGERPRINT_LEN: usize = 52;
/// Length of the short fingerprint shown in lists (60 bits).
pub const SHORT_LEN: usize = 12;

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410); the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// SubjectPublicKeyInfo prefix of an Ed25519 public key (RFC 8410); the 32-byte key follows.
pub(crate) const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("identity key file {path} is corrupt (expected 32 bytes, found {len})")]
    Corrupt { path: String, len: usize },
    #[error("identity key rejected: {0}")]
    Key(String),
    #[error("no system randomness")]
    Random,
}

/// A node's public identity: its Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 32]);

impl PeerId {
    /// Full base32 fingerprint.
    pub fn fingerprint(&self) -> String {
        base32_encode(&self.0)
    }

    /// The first [`SHORT_LEN`] characters of the fingerprint, for lists.
    pub fn short(&self) -> String {
        let mut s = self.fingerprint();
        s.truncate(SHORT_LEN);
        s
    }

    /// The DER SubjectPublicKeyInfo, which is what a raw-public-key TLS handshake carries.
    pub fn to_spki(&self) -> Vec<u8> {
        let mut v = SPKI_PREFIX.to_vec();
        v.extend_from_slice(&self.0);
        v
    }

    /// Parses an Ed25519 SPKI; anything else (other algorithms, trailing bytes) is refused.
    pub fn from_spki(der: &[u8]) -> Option<PeerId> {
        let key = der.strip_prefix(&SPKI_PREFIX[..])?;
        Some(PeerId(key.try_into().ok()?))
    }

    /// Verifies an Ed25519 signature by this identity.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, sig)
            .is_ok()
    }

    /// Whether `prefix` (case-insensitive) is a prefix of this fingerprint.
    pub fn matches_prefix(&self, prefix: &str) -> bool {
        !prefix.is_empty() && self.fingerprint().starts_with(&prefix.to_ascii_lowercase())
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a node fingerprint (52 base32 characters a-z, 2-7)")]
pub struct ParsePeerIdError;

impl FromStr for PeerId {
    type Err = ParsePeerIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != FINGERPRINT_LEN {
            return Err(ParsePeerIdError);
        }
        let bytes = base32_decode(s).ok_or(ParsePeerIdError)?;
        let id = PeerId(bytes.try_into().map_err(|_| ParsePeerIdError)?);
        // Reject non-canonical encodings (the last character carries 4 padding bits).
        if id.fingerprint() != s.to_ascii_lowercase() {
            return Err(ParsePeerIdError);
        }
        Ok(id)
    }
}

impl serde::Serialize for PeerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.fingerprint())
        } else {
            // A fixed 32-byte tuple: no length prefix on the wire.
            serde::Serialize::serialize(&self.0, s)
        }
    }
}

impl<'de> serde::Deserialize<'de> for PeerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(D::Error::custom)
        } else {
            Ok(PeerId(<[u8; 32] as serde::Deserialize>::deserialize(d)?))
        }
    }
}

/// The node's key pair. The seed never leaves this struct except into the key file.
pub struct Identity {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({:?})", self.peer_id())
    }
}

impl Identity {
    pub fn generate() -> Result<Identity, IdentityError> {
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| IdentityError::Random)?;
        Identity::from_seed(seed)
    }

    pub fn from_seed(seed: [u8; 32]) -> Result<Identity, IdentityError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|e| IdentityError::Key(e.to_string()))?;
        Ok(Identity { seed, pair })
    }

    /// Loads `dir/identity.key`, creating it (mode 0600, written atomically) on first run.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join("identity.key");
        let io = |source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::File::open(&path) {
            Ok(f) => {
                // Read one byte more than a key, so a huge file is neither read nor accepted.
                let mut bytes = Vec::with_capacity(33);
                f.take(33).read_to_end(&mut bytes).map_err(io)?;
                let seed: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| IdentityError::Corrupt {
                            path: path.display().to_string(),
                            len: bytes.len(),
                        })?;
                Identity::from_seed(seed)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io)?;
                let id = Identity::generate()?;
                let tmp = dir.join(".identity.key.tmp");
                // A leftover temp file might carry other permissions; start afresh.
                let _ = std::fs::remove_file(&tmp);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&tmp).map_err(io)?;
                f.write_all(&id.seed).map_err(io)?;
                f.sync_all().map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
                // Make the rename itself durable (best effort: not every platform can).
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok(id)
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PeerId(key)
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(self.pair.sign(msg).as_ref());
        sig
    }

    /// The private key as PKCS#8 v1 DER, the form rustls loads.
    pub(crate) fn to_pkcs8(&self) -> Vec<u8> {
        let mut v = PKCS8_PREFIX.to_vec();
        v.extend_from_slice(&self.seed);
        v
    }
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c.to_ascii_lowercase())? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trips_and_rejects_garbage() {
        let id = Identity::generate().unwrap().peer_id();
        let fp = id.fingerprint();
        assert_eq!(fp.len(), FINGERPRINT_LEN);
        assert_eq!(fp.parse::<PeerId>().unwrap(), id);
        assert_eq!(fp.to_uppercase().parse::<PeerId>().unwrap(), id);
        assert!(id.matches_prefix(&id.short()));
        assert_eq!("".parse::<PeerId>(), Err(ParsePeerIdError));
        assert_eq!(fp[..51].parse::<PeerId>(), Err(ParsePeerIdError));
        assert_eq!(
            fp.replace(|c: char| c.is_ascii_lowercase(), "1")
                .parse::<PeerId>(),
            Err(ParsePeerIdError)
        );
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32_encode(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32_decode("mzxw6ytboi").unwrap(), b"foobar");
    }

    #[test]
    fn spki_round_trip_and_strictness() {
        let id = Identity::generate().unwrap().peer_id();
        assert_eq!(PeerId::from_spki(&id.to_spki()), Some(id));
        let mut long = id.to_spki();
        long.push(0);
        assert_eq!(PeerId::from_spki(&long), None);
        assert_eq!(PeerId::from_spki(&id.to_spki()[..40]), None);
    }

    #[test]
    fn persisted_key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("identity.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("identity.key"), b"short").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Corrupt { len: 5, .. })
        ));
    }

    #[test]
    fn peer_id_round_trips_in_postcard_without_a_length_prefix() {
        let id = Identity::generate().unwrap().peer_id();
        let bytes = postcard::to_stdvec(&(id, 7u8)).unwrap();
        assert_eq!(bytes.len(), 33);
        assert_eq!(
            postcard::from_bytes::<(PeerId, u8)>(&bytes).unwrap(),
            (id, 7)
        );
    }

    #[test]
    fn signatures_verify() {
        let id = Identity::generate().unwrap();
        let sig = id.sign(b"hello");
        assert!(id.peer_id().verify(b"hello", &sig));
        assert!(!id.peer_id().verify(b"hellp", &sig));
    }
}
