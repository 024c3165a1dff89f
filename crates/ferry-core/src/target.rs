//! How a user names a peer: a fingerprint or a unique prefix of one, a display name, `host:port`,
//! or `FINGERPRINT@host:port` (dial that address and insist on that identity).

use std::net::{SocketAddr, ToSocketAddrs};

use ferry_p2p::{PeerId, PeerSnapshot};

/// Shortest fingerprint prefix accepted when picking among known peers.
pub const MIN_PREFIX: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr {
        addr: SocketAddr,
        pin: Option<PeerId>,
    },
    /// A fingerprint, fingerprint prefix or display name, matched against known peers.
    Query(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("'{0}' is not a valid address")]
    BadAddress(String),
    #[error("pinning needs the full 52-character fingerprint before '@' (got '{0}')")]
    BadPin(String),
    #[error("no nearby peer matches '{0}'")]
    NotFound(String),
    #[error("'{query}' matches several peers: {candidates}")]
    Ambiguous { query: String, candidates: String },
}

impl std::str::FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Target, TargetError> {
        let s = s.trim();
        if let Some((fp, addr)) = s.split_once('@') {
            let pin = fp
                .parse::<PeerId>()
                .map_err(|_| TargetError::BadPin(fp.into()))?;
            return Ok(Target::Addr {
                addr: resolve_addr(addr)?,
                pin: Some(pin),
            });
        }
        // Only things that look like host:port are addresses; a bare word is a name.
        if s.rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        {
            return Ok(Target::Addr {
                addr: resolve_addr(s)?,
                pin: None,
            });
        }
        Ok(Target::Query(s.to_string()))
    }
}

fn resolve_addr(s: &str) -> Result<SocketAddr, TargetError> {
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| TargetError::BadAddress(s.into()))
}

/// Picks the one peer `query` names: exact fingerprint, then unique prefix, then unique name
/// (case-insensitive).
pub fn pick(query: &str, peers: &[PeerSnapshot]) -> Result<PeerId, TargetError> {
    if let Ok(id) = query.parse::<PeerId>() {
        return peers
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.id)
            .ok_or_else(|| TargetError::NotFound(query.into()));
    }
    let by_prefix: Vec<_> = if query.len() >= MIN_PREFIX {
        peers
            .iter()
            .filter(|p| p.id.matches_prefix(query))
            .collect()
    } else {
        vec![]
    };
    let candidates = if by_prefix.is_empty() {
        peers
            .iter()
            .filter(|p| p.name.eq_ignore_ascii_case(query))
            .collect()
    } else {
        by_prefix
    };
    match candidates.as_slice() {
        [one] => Ok(one.id),
        [] => Err(TargetError::NotFound(query.into())),
        many => Err(TargetError::Ambiguous {
            query: query.into(),
            candidates: many
                .iter()
                .map(|p| format!("{} ({})", p.name, p.short_id))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_p2p::{Identity, PeerState};

    fn peer(name: &str) -> PeerSnapshot {
        let id = Identity::generate().unwrap().peer_id();
        PeerSnapshot {
            id,
            short_id: id.short(),
            name: name.into(),
            os: "linux".into(),
            version: "0".into(),
            addrs: vec![],
            state: PeerState::Connected,
            rtt_ms: None,
            discovered: false,
        }
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "127.0.0.1:9000".parse(),
            Ok(Target::Addr {
                addr: "127.0.0.1:9000".parse().unwrap(),
                pin: None
            })
        );
        assert_eq!(
            "[::1]:9000".parse(),
            Ok(Target::Addr {
                addr: "[::1]:9000".parse().unwrap(),
                pin: None
            })
        );
        assert_eq!("laptop".parse(), Ok(Target::Query("laptop".into())));
        let id = Identity::generate().unwrap().peer_id();
        let pinned: Target = format!("{id}@127.0.0.1:1").parse().unwrap();
        assert_eq!(
            pinned,
            Target::Addr {
                addr: "127.0.0.1:1".parse().unwrap(),
                pin: Some(id)
            }
        );
        assert!(matches!(
            "abcd@127.0.0.1:1".parse::<Target>(),
            Err(TargetError::BadPin(_))
        ));
        assert!(matches!(
            format!("{id}@nowhere").parse::<Target>(),
            Err(TargetError::BadAddress(_))
        ));
    }

    #[test]
    fn picks_by_fingerprint_prefix_and_name() {
        let peers = vec![peer("Laptop"), peer("desk"), peer("desk")];
        assert_eq!(pick("laptop", &peers), Ok(peers[0].id));
        assert_eq!(pick(&peers[1].id.fingerprint(), &peers), Ok(peers[1].id));
        assert_eq!(pick(&peers[2].id.short(), &peers), Ok(peers[2].id));
        assert!(matches!(
            pick("desk", &peers),
            Err(TargetError::Ambiguous { .. })
        ));
        assert!(matches!(
            pick("phone", &peers),
            Err(TargetError::NotFound(_))
        ));
        // Too short to be a prefix, and not a name.
        assert!(matches!(
            pick(&peers[0].id.fingerprint()[..2], &peers),
            Err(TargetError::NotFound(_))
        ));
    }
}
