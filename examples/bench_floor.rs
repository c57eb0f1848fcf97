//! The floor of `cargo xtask bench`: the least a server can do for a DIUN webhook on this
//! machine. It accepts `POST /webhook`, parses the body into the same [`DiunEvent`] the
//! service parses (validation included), and answers 200 with the same small JSON body, on the
//! same warp and tokio runtime, but stores nothing and logs nothing. The service's ingest rate
//! is reported as a ratio to this one, measured in the same run.
//!
//! `PORT` (default 8081) and `BIND` (default 127.0.0.1) choose the address; SIGTERM or SIGINT
//! stop it.

use std::net::{IpAddr, SocketAddr};

use diun_dashboard::model::DiunEvent;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::Reply;

fn main() {
    let port = std::env::var("PORT").ok().and_then(|port| port.parse().ok()).unwrap_or(8081);
    let bind: IpAddr =
        std::env::var("BIND").ok().and_then(|bind| bind.parse().ok()).unwrap_or([127, 0, 0, 1].into());
    let webhook =
        warp::path!("webhook").and(warp::post()).and(warp::body::bytes()).map(|body: bytes::Bytes| {
            match DiunEvent::from_json(&body) {
                Ok(event) => {
                    std::hint::black_box(event);
                    diun_dashboard::http::webhook_stored()
                }
                Err(message) => warp::reply::with_status(
                    warp::reply::json(&serde_json::json!({ "error": message })),
                    StatusCode::BAD_REQUEST,
                )
                .into_response(),
            }
        });
    let healthz = warp::path!("healthz").map(|| warp::reply::json(&serde_json::json!({ "status": "ok" })));
    let routes = webhook.or(healthz);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the async runtime")
        .block_on(async {
            let stop = async {
                let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("listen for SIGTERM");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            };
            warp::serve(routes).bind(SocketAddr::new(bind, port)).await.graceful(stop).run().await;
        });
}
