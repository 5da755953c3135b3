//! The lab's HTTPS listener: TLS with the lab's certificates (HTTP/2 and
//! HTTP/1.1 by ALPN, as kube-apiserver), client certificates checked
//! against the lab's CA, and one handler per request (`handler.rs`).
//!
//! The TLS layer asks for a client certificate but lets the handshake
//! finish without one (or with a stranger's); the handler then verifies
//! the chain itself. So a request without valid credentials gets
//! kube-apiserver's `401 Unauthorized` Status, as kubectl expects, rather
//! than a TLS alert it would print as a network error.

use super::handler::{self, Caller, Ctx};
use super::pki::LabPki;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use std::net::SocketAddr;
use std::sync::Arc;

/// Lets every client certificate through the handshake (the handler
/// checks it with `inner`); proves key possession as usual.
#[derive(Debug)]
struct DeferredClientAuth {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn tls_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("the lab's certificates: {e}"))
}

/// The TLS configuration and the verifier of client certificates.
fn tls(pki: &LabPki) -> std::io::Result<(rustls::ServerConfig, Arc<dyn ClientCertVerifier>)> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_cert.as_bytes()).map_err(tls_error)?)
        .map_err(tls_error)?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(tls_error)?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.server_cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(tls_error)?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).map_err(tls_error)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_client_cert_verifier(Arc::new(DeferredClientAuth {
            inner: inner.clone(),
        }))
        .with_single_cert(certs, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, inner))
}

/// Who the peer's certificate says it is, if the lab's CA signed it.
fn caller(
    verifier: &dyn ClientCertVerifier,
    certs: Option<&[CertificateDer<'_>]>,
) -> Option<Caller> {
    let (end, rest) = certs?.split_first()?;
    verifier
        .verify_client_cert(end, rest, UnixTime::now())
        .ok()
        .map(|_| Caller::Admin)
}

/// Listens on `addr` (the host's loopback) and serves the lab's API until
/// the process ends. Returns the bound address at once.
pub async fn start(ctx: Ctx, pki: &LabPki, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    serve(ctx, pki, tokio::net::TcpListener::bind(addr).await?)
}

/// Serves the lab's API on a socket that listens already (the one inside
/// the lab, opened by `net::netns`) until the process ends.
pub fn serve(
    ctx: Ctx,
    pki: &LabPki,
    listener: tokio::net::TcpListener,
) -> std::io::Result<SocketAddr> {
    let (config, verifier) = tls(pki)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let bound = listener.local_addr()?;
    let ctx = Arc::new(Ctx {
        server_address: bound.to_string(),
        ..ctx
    });
    tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "api: accept");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let verifier = verifier.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let stream = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "api: TLS handshake");
                        return;
                    }
                };
                let who = caller(verifier.as_ref(), stream.get_ref().1.peer_certificates());
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let ctx = ctx.clone();
                    let who = who.clone();
                    async move {
                        Ok::<hyper::Response<handler::Body>, std::convert::Infallible>(
                            handler::handle(req, &ctx, who).await,
                        )
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(e) = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "api: connection");
                }
            });
        }
    });
    Ok(bound)
}
