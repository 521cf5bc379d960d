//! Bot API emulator: real URL shape, strict limits, fault injection, control endpoints.
//!
//! [`MockServer`] speaks the Telegram Bot API's `sendMessage` and `getMe` at
//! `/bot<token>/<method>` (GET or POST; parameters from the query string, a JSON body, an
//! `application/x-www-form-urlencoded` body or `multipart/form-data`; unknown parameters are
//! ignored; `chat_id` may be a number or a numeric string; method names are
//! case-insensitive). Answers have Telegram's shapes: `{"ok":true,"result":...}` or
//! `{"ok":false,"error_code":N,"description":"...","parameters":{...}}`.
//!
//! A bot is identified by its numeric id (the part of the token before `:`). Any well-formed
//! token (`<digits>:<20..64 of [A-Za-z0-9_-]>`) is accepted unless revoked; [`test_token`]
//! mints one. Tokens are never logged or returned: logs carry the bot id, and anything that
//! must mention a token writes `123456:***` ([`redact`]).
//!
//! # Checks, in order
//! 1. Injected faults (global, or the bot's own): drop the connection without an answer, or
//!    answer 500 "Internal Server Error" / 502 "Bad Gateway". Nothing is counted against a
//!    limit or delivered, so a client retry is always safe.
//! 2. Malformed token → 404 "Not Found" (an unknown method too, after step 3).
//! 3. Revoked bot → 401 "Unauthorized".
//! 4. Forced throttle → 429 "Too Many Requests: retry after N", `parameters.retry_after`.
//! 5. Validation → 400: "Bad Request: chat_id is empty", "Bad Request: message text is
//!    empty", "Bad Request: message is too long" (over 4096 characters), "Bad Request:
//!    unsupported parse_mode" (allowed: none, HTML, Markdown, MarkdownV2).
//! 6. Chat state → 400 "Bad Request: chat not found", 403 "Forbidden: bot was blocked by the
//!    user", 403 "Forbidden: bot was kicked from the group chat" ("supergroup chat" for
//!    `-100…` ids), 400 "Bad Request: group chat was upgraded to a supergroup chat" with
//!    `parameters.migrate_to_chat_id`.
//! 7. Rate limits per bot id at the arrival time ([`Limits`]): per (bot, chat) token bucket,
//!    per (bot, group) sliding window for `chat_id < 0`, per bot sliding window → 429 with
//!    `retry_after` = seconds until the request would pass, rounded up, at least 1. A
//!    rejected request consumes nothing.
//!
//! Then the message is delivered: `message_id` counts per chat from 1, and the delivery log
//! records it. Injected latency (uniform `min..=max` ms) is applied after the decision,
//! before answering. `getMe` goes through steps 1 to 3 only.
//!
//! # Control endpoints (same port, JSON)
//! Mutations answer `{"ok":true}`, or 400 `{"ok":false,"error":"..."}`. A bot is named by
//! `"bot_id": N` or `"token": "..."`.
//!
//! | Endpoint | Body / query | Effect |
//! |---|---|---|
//! | `GET /_mock/health` | | `{"ok":true}` |
//! | `GET /_mock/stats` | | [`Stats`] as JSON |
//! | `GET /_mock/deliveries?since=SEQ&limit=N` | | `[Delivery]` with `seq > SEQ` |
//! | `POST /_mock/revoke` | `{"bot_id":N}` or `{"token":"..."}` | 401 from now on |
//! | `POST /_mock/unrevoke` | same | undo |
//! | `POST /_mock/throttle` | bot + `"retry_after":S`, optional `"for_secs":F` or `"for_ms":M` | every send → 429 |
//! | `POST /_mock/unthrottle` | bot | undo |
//! | `POST /_mock/faults` | optional bot + `"error_5xx":P,"drop":P,"latency_ms":[MIN,MAX]`, or `"clear":true` | global or per-bot faults |
//! | `GET /_mock/faults?bot_id=N` | | faults in effect |
//! | `POST /_mock/chat` | `{"chat_id":C,"state":"ok"\|"missing"\|"blocked"\|"kicked"}` or `{"chat_id":C,"state":"migrated","to":NEW}` | chat state |
//! | `GET /_mock/limits` | | `{"enabled":true,"chat_burst":3,"chat_rate_per_s":1.0,"group_max":20,"group_window_secs":60.0,"bot_max":30,"bot_window_ms":1000}` |
//! | `POST /_mock/limits` | any of those fields (missing ones unchanged), or `{"enabled":false}` | replace limits (bookkeeping restarts) |
//! | `POST /_mock/reset` | | back to the starting configuration, empty log and counters |
//!
//! The same operations are available in process through [`Control`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use shardgate_mock::{MockConfig, MockServer, test_token};
//! let server = MockServer::start(MockConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! let url = format!("{}/bot{}/sendMessage?chat_id=1&text=hi", server.base_url(), test_token(1));
//! // ... send to `url`, then:
//! assert_eq!(server.control().deliveries(0).len(), 1);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod cli;
mod config;
mod control;
mod control_http;
mod faults;
mod http;
mod limits;
mod params;
mod reply;
mod server;
mod state;
mod stats;
mod token;

pub use cli::{MockArgs, serve_until};
pub use config::MockConfig;
pub use control::Control;
pub use faults::Faults;
pub use limits::{Limiter, Limits, RateLimited, Scope};
pub use server::MockServer;
pub use state::{ChatState, Delivery};
pub use stats::{Counters, Stats};
pub use token::{bot_id, redact, test_token};
