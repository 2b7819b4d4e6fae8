//! The listener: plain TCP or TLS (rustls), HTTP/1.1 and HTTP/2 through hyper-util's auto
//! builder, and graceful shutdown (hyper-util's `GracefulShutdown`: stop accepting, let open
//! requests finish).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::config::TlsFiles;
use crate::http::Body;

/// Loads the certificate chain and key into a rustls acceptor (HTTP/2 and HTTP/1.1 by ALPN).
pub fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("TLS certificate {}", files.cert.display()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("TLS certificate {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "TLS certificate {}: no certificate in the file",
            files.cert.display()
        );
    }
    // The key's path is named in errors; its content never is.
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("TLS key {}: no readable private key", files.key.display()))?;
    let mut cfg = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "TLS key {} does not fit the certificate",
                files.key.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves until `shutdown` resolves, then waits up to `drain` for open connections.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(app, req).await) }
        });
        match &tls {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!("no longer accepting connections; waiting for open requests");
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(drain) => tracing::warn!("open connections did not close in time"),
    }
    Ok(())
}

/// One request: route, authenticate, run, add CORS headers, log (method, path, status,
/// duration, token name — never the token, the query string or the body).
async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let origin = req.headers().get(http::header::ORIGIN).cloned();
    let (reply, user) = app.handle(req).await;
    let status = reply.status;
    let mut resp = reply.into_response();
    crate::http::cors(&mut resp, origin.as_ref(), &app.config.cors_origins);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let user = user.as_deref().unwrap_or("-");
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), duration_ms = ms, user, "request");
    } else if method == http::Method::GET && status == StatusCode::OK {
        // Reads are frequent (monitoring polls them); changes and refusals are logged at info.
        tracing::debug!(%method, %path, status = status.as_u16(), duration_ms = ms, user, "request");
    } else {
        tracing::info!(%method, %path, status = status.as_u16(), duration_ms = ms, user, "request");
    }
    resp
}
