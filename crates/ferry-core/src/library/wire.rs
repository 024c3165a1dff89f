//! The messages of pairing (protocol 5), the tunnel (protocol 6) and the member exchange that
//! runs inside the tunnel. Byte layouts and flows: `PROTOCOL.md` beside this crate.
//!
//! Every message is one postcard frame with a per-message size bound, checked before the body
//! is read; [`Snapshot::check`] bounds what a frame's size alone cannot (counts, names).

use std::fmt;

use ferry_p2p::text::is_hidden;
use ferry_p2p::PeerId;
use serde::{Deserialize, Serialize};

pub const PAIR_ID: u16 = 5;
pub const TUNNEL_ID: u16 = 6;
pub const VERSION: u16 = 1;

/// Library protocols carried inside a tunnel (the `inner` field of [`Open`]).
pub const INNER_MEMBERS: u16 = 1;
/// Library sync: every member's locations and entries (see `library/sync`).
pub const INNER_SYNC: u16 = 2;
/// Remote media: thumbnails and file bytes of other members (see `library/media`).
pub const INNER_MEDIA: u16 = 3;
/// Members' control sessions: commands run on a member under its grants (`control/`).
pub const INNER_CONTROL: u16 = 4;

/// Largest pairing/tunnel handshake message (requests, nonces, proofs, decisions).
pub const MAX_SMALL: usize = 512;
/// Largest member snapshot: [`MAX_MEMBERS`] records of at most ~250 bytes each.
pub const MAX_SNAPSHOT: usize = 320 * 1024;
/// Members a library may hold; a snapshot with more is a protocol error.
pub const MAX_MEMBERS: usize = 1024;
/// Longest library or member name, in bytes of UTF-8.
pub const MAX_NAME: usize = 128;

/// A library's identity: 16 random bytes, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LibraryId(pub [u8; 16]);

impl LibraryId {
    pub fn random() -> LibraryId {
        LibraryId(random())
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn parse(s: &str) -> Option<LibraryId> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(LibraryId(b))
    }
}

impl fmt::Display for LibraryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for LibraryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LibraryId({})", &self.hex()[..8])
    }
}

/// Random bytes from the system RNG (which does not fail on supported platforms).
pub fn random<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b
}

// ---- pairing (protocol 5) ----

/// Initiator → responder: "join my library"; commits to the initiator's nonce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRequest {
    pub pairing: [u8; 16],
    pub library: LibraryId,
    pub library_name: String,
    /// `commit(nonce_i, pairing)`: the initiator cannot pick its nonce after seeing ours.
    pub commit: [u8; 32],
}

/// Responder → initiator: the responder's nonce, sent before it has seen the initiator's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairNonce {
    pub nonce: [u8; 32],
}

/// Initiator → responder: the committed nonce, revealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairReveal {
    pub nonce: [u8; 32],
}

/// Either way, once each: did this side's user confirm that the codes match?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairDecision {
    pub accept: bool,
}

/// Initiator → responder after both accepted: the library, the responder already in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairJoin {
    pub snapshot: Snapshot,
}

/// Responder → initiator: the library is stored here; the initiator may now record us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairJoined;

/// The commitment to a pairing nonce.
pub fn commit(nonce: &[u8; 32], pairing: &[u8; 16]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("ferry pair v1 commit");
    h.update(nonce);
    h.update(pairing);
    *h.finalize().as_bytes()
}

/// Everything both sides agree on once the nonces are out; the short code is derived from it.
pub struct Transcript<'a> {
    /// TLS exporter of this connection: binds the code to this very channel.
    pub exporter: [u8; 32],
    pub request: &'a PairRequest,
    pub initiator: PeerId,
    pub responder: PeerId,
    pub nonce_i: [u8; 32],
    pub nonce_r: [u8; 32],
}

impl Transcript<'_> {
    /// Six decimal digits, shown as "123 456". A man in the middle runs two TLS sessions with
    /// different exporters and identities; the commitment keeps it from grinding nonces until
    /// the two codes collide, so it succeeds with probability 10⁻⁶ per attempt.
    pub fn code(&self) -> String {
        let mut h = blake3::Hasher::new_derive_key("ferry pair v1 sas");
        h.update(&self.exporter);
        h.update(&self.request.pairing);
        h.update(&self.request.library.0);
        h.update(&self.request.commit);
        h.update(&self.initiator.0);
        h.update(&self.responder.0);
        h.update(&self.nonce_i);
        h.update(&self.nonce_r);
        let b = h.finalize();
        let mut n = [0u8; 8];
        n.copy_from_slice(&b.as_bytes()[..8]);
        let n = u64::from_le_bytes(n) % 1_000_000;
        format!("{:03} {:03}", n / 1000, n % 1000)
    }
}

// ---- tunnel (protocol 6) ----

/// Opener → acceptor: which library, which protocol inside, and a fresh challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Open {
    pub library: LibraryId,
    pub inner: u16,
    pub nonce: [u8; 32],
}

/// Acceptor → opener: its own challenge and its proof of membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: [u8; 32],
    pub proof: Signature,
}

/// Opener → acceptor: the opener's proof of membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proof {
    pub proof: Signature,
}

/// Acceptor → opener: both proven; the inner protocol starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted;

/// An Ed25519 signature (serde has no 64-byte arrays: two halves).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(pub [u8; 32], pub [u8; 32]);

impl Signature {
    pub fn from_bytes(b: [u8; 64]) -> Signature {
        let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
        x.copy_from_slice(&b[..32]);
        y.copy_from_slice(&b[32..]);
        Signature(x, y)
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&self.0);
        b[32..].copy_from_slice(&self.1);
        b
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(..)")
    }
}

/// Which end of a tunnel signs: the two proofs differ, so one cannot be reflected as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Opener = 1,
    Acceptor = 2,
}

/// What a tunnel proof signs: role, channel, library, inner protocol, both challenges and both
/// proven identities. A proof is useless on any other connection, stream, library or role.
pub fn proof_message(
    role: Role,
    exporter: &[u8; 32],
    open: &Open,
    acceptor_nonce: &[u8; 32],
    opener: &PeerId,
    acceptor: &PeerId,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(200);
    m.extend_from_slice(b"ferry tunnel v1\0");
    m.push(role as u8);
    m.extend_from_slice(exporter);
    m.extend_from_slice(&open.library.0);
    m.extend_from_slice(&open.inner.to_be_bytes());
    m.extend_from_slice(&open.nonce);
    m.extend_from_slice(acceptor_nonce);
    m.extend_from_slice(&opener.0);
    m.extend_from_slice(&acceptor.0);
    m
}

// ---- members (inside the tunnel) ----

/// A value with the Lamport stamp of its last change: the larger `(clock, author)` wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub clock: u64,
    pub author: PeerId,
}

impl Stamp {
    pub fn newer_than(&self, other: &Stamp) -> bool {
        (self.clock, self.author) > (other.clock, other.author)
    }
}

#[cfg_attr(feature = "specta", derive(specta::Type))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    Member,
    Removed,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Member => "member",
            MemberState::Removed => "removed",
        }
    }
}

/// One node's membership record, as every member holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub node: PeerId,
    pub name: String,
    pub state: MemberState,
    pub stamp: Stamp,
    /// When it was first added (unix seconds), for display.
    pub added: i64,
}

/// A library's shared metadata and member list: what pairing hands over and what members
/// exchange (each side merges the other's records, newest stamp wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub library: LibraryId,
    pub created: i64,
    pub name: String,
    pub name_stamp: Stamp,
    pub members: Vec<MemberRecord>,
}

impl Snapshot {
    /// The largest clock of any stamp in it.
    pub fn max_clock(&self) -> u64 {
        self.members
            .iter()
            .map(|m| m.stamp.clock)
            .fold(self.name_stamp.clock, u64::max)
    }

    /// Bounds what the frame size alone does not: counts, names, duplicates.
    pub fn check(&self) -> Result<(), String> {
        if self.members.len() > MAX_MEMBERS {
            return Err(format!(
                "{} members (limit {MAX_MEMBERS})",
                self.members.len()
            ));
        }
        check_name(&self.name)?;
        if self.max_clock() > 1 << 53 {
            return Err("clock out of range".into());
        }
        let mut seen = std::collections::HashSet::new();
        for m in &self.members {
            if m.name.len() > MAX_NAME || m.name.chars().any(is_hidden) {
                return Err(format!("bad name for member {}", m.node.short()));
            }
            if !seen.insert(m.node) {
                return Err(format!("member {} listed twice", m.node.short()));
            }
        }
        Ok(())
    }
}

/// A library name: 1–[`MAX_NAME`] bytes, no control characters or disguising formatting.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("empty name".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("name of {} bytes (limit {MAX_NAME})", name.len()));
    }
    if name.chars().any(is_hidden) {
        return Err("control or invisible formatting character in name".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip<T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug>(v: &T) {
        let b = postcard::to_stdvec(v).unwrap();
        assert_eq!(&ferry_p2p::wire::decode::<T>(&b).unwrap(), v);
    }

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    fn record(n: u8, name: String, clock: u64) -> MemberRecord {
        MemberRecord {
            node: peer(n),
            name,
            state: if clock.is_multiple_of(2) {
                MemberState::Member
            } else {
                MemberState::Removed
            },
            stamp: Stamp {
                clock,
                author: peer(n.wrapping_add(1)),
            },
            added: clock as i64,
        }
    }

    proptest! {
        #[test]
        fn messages_round_trip(name in "[a-zé0-9][^\\p{Cc}\\p{Cf}\\p{Zl}\\p{Zp}]{0,30}", nonce in any::<[u8; 32]>(), n in 0u8..40) {
            let req = PairRequest { pairing: [n; 16], library: LibraryId([n; 16]), library_name: name.clone(), commit: nonce };
            roundtrip(&req);
            roundtrip(&PairNonce { nonce });
            roundtrip(&PairDecision { accept: n % 2 == 0 });
            roundtrip(&Open { library: LibraryId([n; 16]), inner: n as u16, nonce });
            roundtrip(&Challenge { nonce, proof: Signature::from_bytes([n; 64]) });
            let snap = Snapshot {
                library: LibraryId([n; 16]),
                created: 1,
                name: name.clone(),
                name_stamp: Stamp { clock: n as u64, author: peer(n) },
                members: (0..n).map(|i| record(i, name.clone(), i as u64)).collect(),
            };
            prop_assert!(snap.check().is_ok());
            roundtrip(&PairJoin { snapshot: snap });
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = ferry_p2p::wire::decode::<PairRequest>(&bytes);
            let _ = ferry_p2p::wire::decode::<Open>(&bytes);
            let _ = ferry_p2p::wire::decode::<Challenge>(&bytes);
            if let Ok(s) = ferry_p2p::wire::decode::<Snapshot>(&bytes) {
                let _ = s.check();
            }
        }
    }

    #[test]
    fn a_full_snapshot_fits_its_frame() {
        let long = "é".repeat(MAX_NAME / 2);
        let snap = Snapshot {
            library: LibraryId([7; 16]),
            created: i64::MAX,
            name: long.clone(),
            name_stamp: Stamp {
                clock: 1 << 53,
                author: peer(1),
            },
            members: (0..MAX_MEMBERS)
                .map(|i| MemberRecord {
                    stamp: Stamp {
                        clock: 1 << 53,
                        author: peer(2),
                    },
                    added: i64::MAX,
                    node: PeerId(blake3::hash(&i.to_le_bytes()).into()),
                    ..record(0, long.clone(), 0)
                })
                .collect(),
        };
        snap.check().unwrap();
        assert!(postcard::to_stdvec(&snap).unwrap().len() <= MAX_SNAPSHOT);
        let mut over = snap.clone();
        over.members.push(record(9, "x".into(), 1));
        assert!(over.check().is_err());
        let mut dup = snap;
        dup.members[1].node = dup.members[0].node;
        assert!(dup.check().is_err());
    }

    #[test]
    fn codes_depend_on_every_input_and_look_right() {
        let req = PairRequest {
            pairing: [1; 16],
            library: LibraryId([2; 16]),
            library_name: "L".into(),
            commit: commit(&[3; 32], &[1; 16]),
        };
        let t = |exporter: u8, nonce_r: u8| Transcript {
            exporter: [exporter; 32],
            request: &req,
            initiator: peer(1),
            responder: peer(2),
            nonce_i: [3; 32],
            nonce_r: [nonce_r; 32],
        };
        let code = t(0, 4).code();
        assert_eq!(code.len(), 7);
        assert!(code[..3].bytes().all(|b| b.is_ascii_digit()) && &code[3..4] == " ");
        assert_eq!(code, t(0, 4).code());
        assert_ne!(code, t(1, 4).code(), "bound to the channel");
        assert_ne!(code, t(0, 5).code(), "bound to the responder's nonce");
        assert_ne!(commit(&[3; 32], &[1; 16]), commit(&[3; 32], &[9; 16]));
    }

    #[test]
    fn names_and_ids() {
        assert!(check_name("Photos").is_ok());
        assert!(check_name(" ").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name("Photos\u{202e}gpj.exe").is_err());
        assert!(check_name("Pho\u{200b}tos").is_err());
        assert!(check_name("Fotos de João 📷").is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME + 1)).is_err());
        let id = LibraryId::random();
        assert_eq!(LibraryId::parse(&id.hex()), Some(id));
        assert_eq!(LibraryId::parse("zz"), None);
        assert_eq!(LibraryId::parse(&"é".repeat(16)), None);
    }
}
