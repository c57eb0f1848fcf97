//! diun-dashboard: receives DIUN webhooks, keeps them in SQLite or PostgreSQL, and serves a
//! dashboard of the image updates waiting.

pub mod config;
pub mod http;
pub mod model;
pub mod store;
pub mod time;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

/// How long in-flight requests may take to finish once shutdown has begun.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `state` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish (for at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    state: http::AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stopping.send(());
    };
    let server = warp::serve(http::routes(state)).incoming(listener).graceful(signal).run();
    let deadline = async {
        if stopped.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            log::warn!("requests still open after {} s; closing them", SHUTDOWN_GRACE.as_secs());
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = server => {}
        () = deadline => {}
    }
}
