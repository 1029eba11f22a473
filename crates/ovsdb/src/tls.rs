//! `ssl:` endpoints: TLS with a CA, a client certificate and its key, the three files OVN
//! deployments give ovn-controller (`--ca-cert`, `--certificate`, `--private-key`). As OVSDB's
//! own SSL streams do, the server's chain is checked against the CA, not its name: OVN's
//! certificates (ovs-pki) name a role and an id, not a host.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// Which of the three inputs is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsInput {
    /// The CA certificate(s) the server's chain must lead to.
    CaCert,
    /// The client's certificate.
    Certificate,
    /// The client's private key.
    PrivateKey,
}

/// A TLS client configuration for `ssl:` endpoints.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl TlsConfig {
    /// From PEM bytes: the CA certificate(s), the client certificate (chain) and its key. The
    /// error names the input at fault, never its content.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<TlsConfig, (TlsInput, String)> {
        let certs = |pem: &[u8], what: TlsInput| {
            let list = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| (what, "not a PEM file of certificates".to_string()))?;
            if list.is_empty() {
                return Err((what, "holds no PEM certificate".to_string()));
            }
            Ok(list)
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(ca, TlsInput::CaCert)? {
            roots.add(c).map_err(|e| {
                (
                    TlsInput::CaCert,
                    format!("not a usable CA certificate: {e}"),
                )
            })?;
        }
        let chain = certs(cert, TlsInput::Certificate)?;
        let private = PrivateKeyDer::from_pem_slice(key)
            .map_err(|_| (TlsInput::PrivateKey, "holds no PEM private key".to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| (TlsInput::CaCert, e.to_string()))?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| (TlsInput::CaCert, e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
            .with_client_auth_cert(chain, private)
            .map_err(|e| {
                (
                    TlsInput::PrivateKey,
                    format!("does not go with the certificate: {e}"),
                )
            })?;
        Ok(TlsConfig {
            config: Arc::new(config),
        })
    }
}

/// The CA's verdict on the chain, without the name check (see the module documentation).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
