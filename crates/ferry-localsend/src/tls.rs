//! The LocalSend TLS identity: a self-signed certificate whose fingerprint is the SHA-256 of
//! its DER encoding in upper-case hex, as the LocalSend apps compute it.
//!
//! LocalSend certificates are self-signed and unnamed, so no certificate chain is checked in
//! either direction. What a handshake does prove is that the other side holds the key of the
//! certificate it showed (rustls checks the handshake signature): its fingerprint is then a
//! fact, where the `fingerprint` field of a JSON body is only a claim. The client pins a
//! device's announced fingerprint after the handshake, before a request byte is sent; the server
//! asks for (but does not require) a client certificate to learn a sender's fingerprint.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Our certificate and its key.
#[derive(Clone)]
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: Arc<PrivatePkcs8KeyDer<'static>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.fingerprint())
    }
}

impl Identity {
    /// A new self-signed certificate (ECDSA P-256).
    pub fn generate() -> Result<Identity, TlsError> {
        let ck = rcgen::generate_simple_self_signed(vec!["localsend".to_string()])
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(Identity {
            cert: ck.cert.der().clone(),
            key: Arc::new(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
        })
    }

    /// Loads `localsend.crt` and `localsend.key` (DER) from `dir`, creating them on first use,
    /// so that LocalSend devices see the same fingerprint after a restart.
    pub fn load_or_generate(dir: &Path) -> Result<Identity, TlsError> {
        let (cert_path, key_path) = (dir.join("localsend.crt"), dir.join("localsend.key"));
        let io = |p: &Path, e| TlsError::Io(p.display().to_string(), e);
        if let (Ok(cert), Ok(key)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
            return Ok(Identity {
                cert: CertificateDer::from(cert),
                key: Arc::new(PrivatePkcs8KeyDer::from(key)),
            });
        }
        let id = Identity::generate()?;
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        write_private(&key_path, id.key.secret_pkcs8_der()).map_err(|e| io(&key_path, e))?;
        std::fs::write(&cert_path, id.cert.as_ref()).map_err(|e| io(&cert_path, e))?;
        Ok(id)
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.as_ref().clone_key())
    }

    /// The server side: our certificate, a client certificate asked for but optional.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = provider();
        let cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(AnyCert(provider)))
            .with_single_cert(vec![self.cert.clone()], self.key())?;
        Ok(Arc::new(cfg))
    }

    /// The client side: any server certificate (checked by fingerprint after the handshake),
    /// ours shown when asked, so that a receiver can learn who sends.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = provider();
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_client_auth_cert(vec![self.cert.clone()], self.key())?;
        Ok(Arc::new(cfg))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a DER certificate, upper-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex_upper(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

pub fn hex_upper(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Whether two fingerprints are the same (case-insensitive hex), in constant time.
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| {
            acc | (x.to_ascii_uppercase() ^ y.to_ascii_uppercase())
        }) == 0
}

/// Accepts any certificate, but checks the handshake signature made with its key.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl AnyCert {
    fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for AnyCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_and_fingerprints_like_the_apps() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_generate(dir.path()).unwrap();
        let b = Identity::load_or_generate(dir.path()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let fp = a.fingerprint();
        assert_eq!(fp.len(), 64);
        assert!(fp
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert!(same_fingerprint(&fp, &fp.to_ascii_lowercase()));
        assert!(!same_fingerprint(
            &fp,
            &Identity::generate().unwrap().fingerprint()
        ));
        // SHA-256("abc"), the FIPS 180-2 example.
        assert_eq!(
            fingerprint(b"abc"),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
        a.server_config().unwrap();
        a.client_config().unwrap();
    }
}
