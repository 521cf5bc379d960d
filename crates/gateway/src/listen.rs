//! The accept loop of a gateway port: a cap on open connections, a time
//! limit on the TLS handshake, and the connection's facts (peer address,
//! verified client certificate CN) handed to the request handlers.
//!
//! Why a loop of our own: tonic's `serve` accepts every connection the kernel
//! offers and has no handshake timeout, so a client that opens sockets and
//! never speaks holds memory and descriptors for ever. Here a connection
//! holds a permit of a semaphore from accept to close; at the cap the loop
//! stops accepting (the kernel's backlog holds the rest) instead of failing
//! calls that are already running.
//!
//! Invariant: at most `max_connections` connections are open at once, because
//! a permit is taken before `accept` and released only when the [`Conn`]
//! (which owns it) is dropped.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing::{debug, warn};

use crate::tls::{Tls, client_cn};

/// Bounds of one port.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Open connections at most; further clients wait in the kernel backlog.
    pub max_connections: usize,
    /// A TLS handshake longer than this closes the connection.
    pub handshake_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// What the handlers learn about the connection a request came on (tonic
/// puts it in the request's extensions).
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The subject CN of the client certificate rustls verified, if any.
    pub client_cn: Option<String>,
}

/// One accepted connection, plain or TLS; holds its slot of the cap.
pub struct Conn {
    io: Io,
    info: ConnInfo,
    _slot: OwnedSemaphorePermit,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    /// What the handlers learn about this connection.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Accepts on `listener` until the returned stream is dropped (the server
/// stopped), yielding connections ready for HTTP/2: plain, or TLS when `tls`
/// is given. Handshakes run concurrently so one slow client delays no one.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Tls>,
    limits: ConnLimits,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            let slot = tokio::select! {
                _ = tx.closed() => return,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let (stream, remote) = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors or a reset before accept:
                        // pause so the loop does not spin, then go on.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let Some(tls) = tls.clone() else {
                let info = ConnInfo {
                    remote: Some(remote),
                    client_cn: None,
                };
                let conn = Conn {
                    io: Io::Plain(stream),
                    info,
                    _slot: slot,
                };
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
                continue;
            };
            let tx = tx.clone();
            let timeout = limits.handshake_timeout;
            tokio::spawn(async move {
                let handshake = tls.acceptor().accept(stream);
                let stream = match tokio::time::timeout(timeout, handshake).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return debug!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => return debug!(%remote, "TLS handshake timed out"),
                };
                let client_cn = stream.get_ref().1.peer_certificates().and_then(client_cn);
                let info = ConnInfo {
                    remote: Some(remote),
                    client_cn,
                };
                let conn = Conn {
                    io: Io::Tls(Box::new(stream)),
                    info,
                    _slot: slot,
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn at_the_cap_the_next_connection_waits_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ConnLimits {
            max_connections: 1,
            ..ConnLimits::default()
        };
        let mut conns = incoming(listener, None, limits);
        let _a = TcpStream::connect(addr).await.expect("connect a");
        let first = conns.next().await.expect("open").expect("conn");
        assert!(first.connect_info().remote.is_some());
        let _b = TcpStream::connect(addr).await.expect("connect b (backlog)");
        let waiting = tokio::time::timeout(Duration::from_millis(300), conns.next()).await;
        assert!(
            waiting.is_err(),
            "a second connection was served past the cap"
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(10), conns.next())
            .await
            .expect("served once a slot is free")
            .expect("open")
            .expect("conn");
        assert_eq!(second.connect_info().client_cn, None);
    }

    #[tokio::test]
    async fn a_client_that_never_completes_the_handshake_loses_its_slot() {
        let dir = tempfile::tempdir().expect("dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let files = crate::tls::TlsFiles {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("k.pem"),
            client_ca: None,
        };
        std::fs::write(&files.cert, cert.pem()).expect("write");
        std::fs::write(&files.key, key.serialize_pem()).expect("write");
        let tls = Tls::load(files).expect("tls");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ConnLimits {
            max_connections: 1,
            handshake_timeout: Duration::from_millis(200),
        };
        let conns = incoming(listener, Some(tls), limits);
        // Connects and says nothing: after the handshake time its slot
        // frees, and a second silent client is accepted (its TCP stream
        // sees the server close it).
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
        )
        .await
        .expect("closed by the server within the handshake time");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        let mut second = TcpStream::connect(addr).await.expect("connect");
        let closed = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(&mut second, &mut buf),
        )
        .await
        .expect("the freed slot took the next client, which timed out too");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        drop(conns);
    }
}
