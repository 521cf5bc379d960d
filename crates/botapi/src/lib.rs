//! The Telegram Bot API as data, for the gateway to hold every method to its limits: no
//! I/O, no clock.
//!
//! - [`classify`] tells which limits a method meets ([`Class`]), from one table
//!   ([`METHODS`]) held against the Bot API's own list of methods by a test.
//! - [`parse_params`], [`chat_target`], [`item_count`] and [`edit_target`] read what the
//!   limits need from a call's parameters: its chat (`chat_id` as an integer, a string of
//!   digits or an `@username`), how many messages it carries, the message an edit names.
//! - [`check_uploads`] holds a call's uploads against its `attach://` references and
//!   Telegram's size limits (10 MB photos, 50 MB other files).
//! - [`check_reply_markup`] and [`check_send_params`] check a send request's rich fields.
//!
//! - [`inspect`] reads all of that at once into a [`Shape`], with the rules that tie it
//!   together (a send needs a chat, an edit its message).
//!
//! Every refusal is a [`ParamError`] naming the field at fault.

mod call;
mod error;
mod params;
mod send;
mod table;
mod uploads;

pub use call::{Shape, inspect};
pub use error::ParamError;
pub use params::{
    ChatTarget, EditTarget, Params, chat_target, edit_target, item_count, parse_chat, parse_params,
};
pub use send::{
    PARAMS_FIELD, REPLY_MARKUP_FIELD, ReplyMarkupKind, TYPED_SEND_PARAMS, check_reply_markup,
    check_send_params, reply_markup_kind,
};
pub use table::{
    BOT_API_VERSION, Class, Items, MEDIA_GROUP, MESSAGE_IDS, METHODS, Method, classify, method,
    takes_paid_broadcast,
};
pub use uploads::{
    MAX_FILE_BYTES, MAX_PHOTO_BYTES, Reference, UPLOAD_PARAMS, Upload, UploadKind, UsedUpload,
    attach_references, check_uploads, is_upload_param,
};
