//! The Bot API-compatible HTTP front door (`shardgate serve --http-listen`).
//!
//! A service that already talks to Telegram through a Bot API library
//! (python-telegram-bot, aiogram, grammY, teloxide, ...) moves onto
//! Shardgate by changing the library's base URL: `GET|POST
//! /bot<key>/<method>` with the Bot API's encodings, answered in the Bot
//! API's shape, through exactly the routing, admission and limits of the
//! gRPC `Call` (the request becomes the same `CallRequest`).
//!
//! Map of the crate:
//! - [`path`], the request line `/bot<key>/<method>`;
//! - [`body`], query string, JSON, forms and multipart uploads, bounded;
//! - [`request`], the `CallRequest` with Shardgate's optional headers;
//! - [`answer`], outcomes in the Bot API's words and codes;
//! - `door`, one request end to end, with the door's body budget;
//! - `serve`, the port (TLS, HTTP/1.1 and HTTP/2, time limits, stop).

pub mod answer;
pub mod body;
mod door;
pub mod path;
pub mod request;
mod serve;

pub use door::{BODIES_MAX_BYTES, Door};
pub use serve::{DoorLimits, DoorOptions, SHUTDOWN_GRACE, serve};
