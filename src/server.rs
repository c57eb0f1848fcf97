//! The accept loop: warp's routes served over HTTP/1.1 by hyper directly, so that slow and idle
//! clients are bounded (warp's own server sets no read timeouts), and shutdown is graceful.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::http::{self, AppState};

/// How long a client may take to send a request's headers; it also closes keep-alive
/// connections that stay idle this long. Bodies have their own limit in `http::body`.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long in-flight requests may take to finish once shutdown has begun.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long an answer may make no progress at all before its connection is closed: a client
/// that asks for the listing and never reads it would hold it in memory for as long as it
/// likes, and a few thousand such clients the service. A slow reader makes progress, as long as
/// it frees the kernel's idea of enough room (a third of the socket's send buffer, which Linux
/// sizes to the link) every 30 s.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `state` on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish (for at most [`SHUTDOWN_GRACE`]) and returns.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()>) {
    let service = warp::service(http::routes(state.clone()));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(err) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    log::error!("cannot accept a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let stream = WriteDeadline { inner: stream, stalled: None };
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                log::debug!("connection ended: {err}");
            }
        });
    }
    drop(listener);
    state.stop_streams();
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            log::warn!("requests still open after {} s; closing them", SHUTDOWN_GRACE.as_secs());
        }
    }
}

/// A connection whose writes fail once they have made no progress for [`WRITE_STALL_TIMEOUT`]
/// (hyper bounds the reading of a request's head, not the writing of its answer).
struct WriteDeadline {
    inner: TcpStream,
    /// Since when the writes have waited, if they do.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WriteDeadline {
    fn watched<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing of its answer for {} s", WRITE_STALL_TIMEOUT.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watched(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watched(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watched(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watched(cx, polled)
    }
}
