//! Bot API emulator: real URL shape, strict limits, fault injection, control endpoints.
//!
//! [`MockServer`] speaks the Telegram Bot API at `/bot<token>/<method>` (GET or POST;
//! parameters from the query string, a JSON body, an `application/x-www-form-urlencoded`
//! body or `multipart/form-data` with uploads; unknown parameters are ignored; `chat_id` may
//! be a number or a numeric string; structured parameters may be JSON text, as in forms;
//! method names are case-insensitive). Answers have Telegram's shapes:
//! `{"ok":true,"result":...}` or
//! `{"ok":false,"error_code":N,"description":"...","parameters":{...}}`.
//!
//! A bot is identified by its numeric id (the part of the token before `:`). Any well-formed
//! token (`<digits>:<20..64 of [A-Za-z0-9_-]>`) is accepted unless revoked; [`test_token`]
//! mints one. Tokens are never logged or returned: logs carry the bot id, and anything that
//! must mention a token writes `123456:***` ([`redact`]).
//!
//! # Methods
//! - `getMe`.
//! - `sendMessage` (`text`, `parse_mode`, `entities`, `reply_markup`, `message_thread_id`,
//!   `allow_paid_broadcast`; any other parameter accepted), `sendPhoto`, `sendDocument`
//!   (an upload in the file parameter's own form field or by `attach://<name>`, a `file_id`
//!   answered before, or an `http(s)://` URL; `caption`): a `Message`, with `photo` sizes or
//!   a `document`, each with its `file_id`. Uploads are kept byte-exact ([`Control::file`],
//!   `GET /_mock/files/<file_id>`).
//! - `sendMediaGroup` (2 to 10 `photo`, `video`, `audio` or `document` items): an array of
//!   `Message`s sharing a `media_group_id`, counted one message per item against every limit,
//!   all or none.
//! - `copyMessage` (a `MessageId`), `copyMessages` (`[MessageId]`), `forwardMessage` (a
//!   `Message` with `forward_origin`), `forwardMessages` (`[MessageId]`): a new message per
//!   source message found, counted per message (the many-message forms skip ids not found).
//! - `editMessageText`, `editMessageCaption`, `editMessageReplyMarkup`: only a message this
//!   bot sent into that chat (else 400 "Bad Request: message to edit not found"), counted
//!   against the chat's limits like a send; the edited `Message`, with `edit_date`.
//! - `deleteMessage` (the bot's own message, else 400 "Bad Request: message to delete not
//!   found"), `deleteMessages` (1 to 100 ids, missing ones skipped): `true`, counted like a
//!   message.
//! - `answerCallbackQuery`: `true`, not rate limited.
//!
//! Any other method answers 404 "Not Found", as Telegram does for unknown ones.
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
//!    unsupported parse_mode" (allowed: none, HTML, Markdown, MarkdownV2), "Bad Request:
//!    message caption is too long" (over 1024), "Bad Request: can't parse reply keyboard
//!    markup JSON object", "Bad Request: there is no photo in the request", and so on; a
//!    body over 54 MB → 413 "Request Entity Too Large", a photo over 10 MB → 400.
//! 6. Chat state → 400 "Bad Request: chat not found", 403 "Forbidden: bot was blocked by the
//!    user", 403 "Forbidden: bot was kicked from the group chat" ("supergroup chat" for
//!    `-100…` ids), 400 "Bad Request: group chat was upgraded to a supergroup chat" with
//!    `parameters.migrate_to_chat_id`. Then what needs the state: the message to edit, copy
//!    or delete, a `file_id` → 400.
//! 7. Rate limits per bot id at the arrival time ([`Limits`]): per (bot, chat) token bucket,
//!    per (bot, group) sliding window for `chat_id < 0`, per bot sliding window (with
//!    `allow_paid_broadcast`: [`PAID_BOT_MAX`] per window once the free rate is used) → 429
//!    with `retry_after` = seconds until the request would pass, rounded up, at least 1. A
//!    request of n messages needs room for min(n, capacity) and is charged n. A rejected
//!    request consumes nothing.
//!
//! Then the message is delivered: `message_id` counts per chat from 1, and the delivery log
//! records it (album items and copies one entry each, with the caption as text). Injected
//! latency (uniform `min..=max` ms) is applied after the decision, before answering. `getMe`
//! goes through steps 1 to 3 only.
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
//! | `POST /_mock/faults` | optional bot + `"error_5xx":P,"drop":P,"latency_ms":[MIN,MAX]`, `"retry_after":N` (any number: every send → 429 with it), or `"clear":true` | global or per-bot faults |
//! | `GET /_mock/faults?bot_id=N` | | faults in effect |
//! | `POST /_mock/chat` | `{"chat_id":C,"state":"ok"\|"missing"\|"blocked"\|"kicked"}` or `{"chat_id":C,"state":"migrated","to":NEW}` | chat state |
//! | `GET /_mock/limits` | | `{"enabled":true,"chat_burst":3,"chat_rate_per_s":1.0,"group_max":20,"group_window_secs":60.0,"bot_max":30,"bot_window_ms":1000,"paid_bot_max":1000}` |
//! | `POST /_mock/limits` | any of those fields (missing ones unchanged), or `{"enabled":false}` | replace limits (bookkeeping restarts) |
//! | `GET /_mock/message?chat_id=C&message_id=M` | | the delivered `Message` as now (edits applied), 404 if unknown or deleted |
//! | `GET /_mock/files` | | `[FileInfo]`: every file held (`file_id`, size, `sha256`, ...) |
//! | `GET /_mock/files/<file_id>` | | the file's bytes as received, SHA-256 in header `x-sha256` |
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
mod files;
mod http;
mod limits;
mod messages;
mod methods;
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
pub use files::FileInfo;
pub use limits::{Admitted, Limiter, Limits, PAID_BOT_MAX, RateLimited, Scope};
pub use server::MockServer;
pub use state::{ChatState, Delivery};
pub use stats::{Counters, Stats};
pub use token::{bot_id, redact, test_token};
