//! Which certificate authorities registries are checked against, loaded only as far as a
//! connection needs them.
//!
//! The trust set is the union of the `--tls-ca-file` certificates, Mozilla's roots (compiled
//! in, free to load) and the system's (`$SSL_CERT_FILE`, `$SSL_CERT_DIR`, the distribution's
//! bundle). Reading and parsing the system's is most of what a warm pull would cost (a bundle of
//! ~150 certificates, and with `$SSL_CERT_DIR` every file of the directory), and it almost never
//! decides anything: a registry with its own CA is given with `--tls-ca-file`, a public one
//! chains to a Mozilla root. So a server certificate is checked against each set in turn, the
//! system's loaded at the first certificate the others do not vouch for. Accepting what any set
//! accepts is the same as checking against their union: a chain ends at one anchor, and the
//! intermediate certificates come from the server, not from the sets.
//!
//! A certificate in the `--tls-ca-file` that *is* the server's certificate is trusted for that
//! server (its name and validity still checked, and the handshake still proves the server has
//! its key), as curl's `--cacert`, skopeo's `--cert-dir` and ch-image trust it. That is how
//! Distribution's own documentation deploys a registry with a self-signed certificate, and
//! `openssl req -x509` makes such a certificate a CA too, which webpki refuses as a server's
//! (`CaUsedAsEndEntity`): so the exact certificate is checked here besides the chains.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};

/// The TLS configuration for registries whose certificates are verified.
pub fn verifying_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut eager = Vec::new();
    let mut pinned = Vec::new();
    if let Some(path) = ca_file {
        let (roots, certs) = ca_file_roots(path)?;
        pinned = certs;
        eager.push(
            verifier(roots, &provider).map_err(|e| {
                Error::invalid(format!("CA file {}", path.display()), e.to_string())
            })?,
        );
    }
    let mozilla = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    eager.push(
        verifier(mozilla, &provider)
            .map_err(|e| Error::invalid("Mozilla's root certificates", e.to_string()))?,
    );
    let layered = Layered {
        provider: provider.clone(),
        eager,
        pinned,
        system: OnceLock::new(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("TLS set-up", e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(layered))
        .with_no_client_auth();
    Ok(config)
}

fn verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> std::result::Result<Arc<WebPkiServerVerifier>, rustls::client::VerifierBuilderError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()
}

/// The certificates of a `--tls-ca-file`, as trust anchors and as they are; one that holds
/// none, or a bad one, is an error (better now than as an unknown issuer later).
fn ca_file_roots(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>)> {
    let what = || format!("CA file {}", path.display());
    let pem = std::fs::read(path).map_err(|e| Error::io_path(path, e))?;
    let mut roots = RootCertStore::empty();
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| Error::invalid(what(), format!("not PEM: {e}")))?;
        roots
            .add(cert.clone())
            .map_err(|e| Error::invalid(what(), format!("a certificate lade cannot use: {e}")))?;
        certs.push(cert);
    }
    if roots.is_empty() {
        return Err(Error::invalid(what(), "holds no PEM certificate"));
    }
    Ok((roots, certs))
}

/// Whether `end_entity` is one of the user's own certificates, valid now and for
/// `server_name`: then the user vouches for this very server.
fn pinned_match(
    pinned: &[CertificateDer<'static>],
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> std::result::Result<bool, rustls::Error> {
    if !pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
        return Ok(false);
    }
    let parsed = ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_name(&parsed, server_name)?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    match super::cert_validity::validity(end_entity.as_ref()) {
        Some((from, _)) if now < from => Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        )),
        Some((_, until)) if now > until => {
            Err(rustls::Error::InvalidCertificate(CertificateError::Expired))
        }
        Some(_) => Ok(true),
        None => Err(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        )),
    }
}

/// The system's roots as rustls-native-certs finds them (honouring `$SSL_CERT_FILE` and
/// `$SSL_CERT_DIR`); certificates that do not parse are skipped, as everywhere else.
fn system_verifier(provider: &Arc<CryptoProvider>) -> Option<Arc<WebPkiServerVerifier>> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    verifier(roots, provider).ok()
}

#[derive(Debug)]
struct Layered {
    provider: Arc<CryptoProvider>,
    /// The `--tls-ca-file` set (if any), then Mozilla's.
    eager: Vec<Arc<WebPkiServerVerifier>>,
    /// The `--tls-ca-file` certificates themselves, trusted as the server's own.
    pinned: Vec<CertificateDer<'static>>,
    /// The system's, loaded when first needed; `None` if it has no usable certificate.
    system: OnceLock<Option<Arc<WebPkiServerVerifier>>>,
}

impl ServerCertVerifier for Layered {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if pinned_match(&self.pinned, end_entity, server_name, now)? {
            return Ok(ServerCertVerified::assertion());
        }
        // The most telling refusal: "unknown issuer" only if no set had anything better to say
        // (an expired certificate, a name mismatch).
        let mut refusal: Option<rustls::Error> = None;
        let lazy = || {
            self.system
                .get_or_init(|| system_verifier(&self.provider))
                .iter()
        };
        for v in self
            .eager
            .iter()
            .chain(std::iter::once_with(lazy).flatten())
        {
            match v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                Ok(ok) => return Ok(ok),
                Err(e) => {
                    let unknown = matches!(
                        e,
                        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
                    );
                    if refusal.is_none() || !unknown {
                        refusal = Some(e);
                    }
                }
            }
        }
        Err(refusal.unwrap_or(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
