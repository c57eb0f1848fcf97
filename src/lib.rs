//! diun-dashboard: receives DIUN webhooks, keeps them in SQLite or PostgreSQL, and serves a
//! dashboard of the image updates waiting.

pub mod changes;
pub mod config;
pub mod http;
pub mod json_text;
pub mod limits;
pub mod listing;
pub mod logging;
pub mod model;
pub mod retention;
pub mod server;
pub mod store;
pub mod time;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub mod transfer;

pub use server::serve;
