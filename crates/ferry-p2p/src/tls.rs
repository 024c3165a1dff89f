//! TLS 1.3 with raw public keys (RFC 7250): the handshake is the proof of identity.
//!
//! Each side presents its Ed25519 SubjectPublicKeyInfo instead of an X.509 certificate and signs
//! the handshake with the matching private key, so after the handshake the peer's key is proven,
//! and no stream ever has to carry an identity claim. We accept exactly one form of "certificate":
//! a 44-byte Ed25519 SPKI. No X.509 parser is exposed to peers at all.
//!
//! When dialing a known peer, the verifier also insists on the expected key; the key actually
//! found is kept so the caller can report "expected X, found Y".

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::AlwaysResolvesClientRawPublicKeys;
use rustls::crypto::{verify_tls13_signature_with_raw_key, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::{Identity, PeerId};

/// ALPN protocol id: Ferry wire protocol, major version 1.
pub const ALPN: &[u8] = b"ferry/1";
/// The TLS server name we dial with; identities, not names, are what is checked.
pub const SERVER_NAME: &str = "ferry.invalid";

#[derive(Debug, thiserror::Error)]
#[error("TLS setup failed: {0}")]
pub struct TlsSetupError(String);

fn setup<E: std::fmt::Display>(e: E) -> TlsSetupError {
    TlsSetupError(e.to_string())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(identity: &Identity) -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let key =
        rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(identity.to_pkcs8()))
            .map_err(setup)?;
    let spki = CertificateDer::from(identity.peer_id().to_spki());
    Ok(Arc::new(CertifiedKey::new(vec![spki], key)))
}

/// Checks the peer's raw public key and its handshake signature.
#[derive(Debug)]
struct PeerVerifier {
    expected: Option<PeerId>,
    /// The identity the peer presented (set even when it was not the expected one).
    found: Arc<Mutex<Option<PeerId>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    fn new(expected: Option<PeerId>) -> PeerVerifier {
        PeerVerifier {
            expected,
            found: Arc::default(),
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let id = match (PeerId::from_spki(end_entity), intermediates.is_empty()) {
            (Some(id), true) => id,
            _ => {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::BadEncoding,
                ))
            }
        };
        if let Ok(mut found) = self.found.lock() {
            *found = Some(id);
        }
        match self.expected {
            Some(expected) if expected != id => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(()),
        }
    }

    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &self.algs,
        )
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)
            .map(|()| ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)
            .map(|()| ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The crypto config for accepting connections: any Ed25519 identity may connect (the layers
/// above decide what it may do), but it must prove its key.
pub fn server_crypto(
    identity: &Identity,
) -> Result<Arc<quinn::crypto::rustls::QuicServerConfig>, TlsSetupError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(setup)?
        .with_client_cert_verifier(Arc::new(PeerVerifier::new(None)))
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
            certified_key(identity)?,
        )));
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(cfg).map_err(setup)?,
    ))
}

/// Where the verifier leaves the identity the peer presented.
pub type FoundSlot = Arc<Mutex<Option<PeerId>>>;

/// The crypto config for one dial. Returns the slot that will hold the identity the peer
/// presented, so a mismatch can be reported precisely.
pub fn client_crypto(
    identity: &Identity,
    expected: Option<PeerId>,
) -> Result<(Arc<quinn::crypto::rustls::QuicClientConfig>, FoundSlot), TlsSetupError> {
    let verifier = PeerVerifier::new(expected);
    let found = verifier.found.clone();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
            certified_key(identity)?,
        )));
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok((
        Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(cfg).map_err(setup)?),
        found,
    ))
}

/// The proven identity of the peer on an established connection.
pub fn peer_id_of(conn: &quinn::Connection) -> Option<PeerId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    PeerId::from_spki(certs.first()?)
}
