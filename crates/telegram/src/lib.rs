//! Telegram Bot API client for Shardgate: `sendMessage` / `getMe` over one shared
//! connection pool, the pure classification of every Bot API answer into an
//! [`Outcome`], bot-token handling that never leaks the secret, a defence-in-depth
//! [`redact_tokens`] for log writers, and the retry [`Backoff`].
//!
//! The crate is deliberately free of policy: it says what an answer *means*
//! (delivered, throttled, revoked, ...) and leaves what to *do* about it to the
//! gateway's dispatcher.
//!
//! ```no_run
//! use shardgate_telegram::{Backoff, BotToken, Client, ClientConfig, Outcome, SendMessage};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(ClientConfig::default())?;
//! let token = BotToken::parse("123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")?;
//! assert_eq!(token.to_string(), "123456:***");
//! let msg = SendMessage { chat_id: 42, text: "hello".into(), ..Default::default() };
//! let backoff = Backoff::default();
//! let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
//! let mut rng = rand::rng();
//! let mut attempts = 0;
//! loop {
//!     let outcome = client.send_message(&token, &msg).await;
//!     attempts += 1;
//!     match outcome {
//!         Outcome::Delivered { message_id, .. } => break println!("sent {message_id}"),
//!         Outcome::Transient { .. } => {
//!             let left = deadline.saturating_duration_since(tokio::time::Instant::now());
//!             match backoff.within(attempts, Some(left), &mut rng) {
//!                 Some(delay) => tokio::time::sleep(delay).await,
//!                 None => break, // the next attempt would start past the deadline
//!             }
//!         }
//!         other => break eprintln!("{other}"), // RetryAfter goes to the dispatcher's cooldowns
//!     }
//! }
//! # Ok(()) }
//! ```

mod backoff;
mod call;
mod classify;
mod client;
mod extras;
mod message;
mod outcome;
mod redact;
mod token;

pub use backoff::Backoff;
pub use call::{CallFile, CallResult, MethodNameError, check_method_name, read_answer};
pub use classify::{DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER, classify};
pub use client::{Client, ClientConfig, ClientError};
pub use extras::{Extras, ExtrasError, MAX_JSON_BYTES};
pub use message::{BotInfo, ParseMode, ParseModeError, SendMessage};
pub use outcome::{Outcome, TransientKind};
pub use redact::redact_tokens;
pub use token::{BotToken, TokenError};
