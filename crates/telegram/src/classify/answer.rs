//! The borrowed answer reader: the parts of a Bot API answer that
//! classification reads, deserialized straight from the body bytes (strings
//! borrowed unless escaped), every other field skipped unread.

use super::object::object;
use super::scalar::Scalar;

/// The parts of a Bot API answer that classification reads, deserialized
/// straight from the body (no `serde_json::Value` tree): `ok`, `result.message_id`,
/// `result.chat.id`, `error_code`, `description` and `parameters.retry_after` /
/// `parameters.migrate_to_chat_id`. Every other field is skipped unread. Each field
/// accepts any JSON value (a wrong type reads as "not there", as with a `Value`),
/// and a repeated key keeps its last value, as `serde_json::Value` does.
#[derive(Debug, Default)]
pub(super) struct Answer<'a> {
    pub(super) ok: Scalar<'a>,
    pub(super) error_code: Scalar<'a>,
    pub(super) description: Scalar<'a>,
    pub(super) result: SentMessage<'a>,
    pub(super) parameters: Parameters<'a>,
}

impl Answer<'_> {
    /// A Bot API answer has a boolean `ok` or a numeric `error_code`.
    pub(super) fn is_telegram_shaped(&self) -> bool {
        matches!(self.ok, Scalar::Bool(_)) || self.error_code.is_number()
    }
}

/// `result` of `sendMessage`: a Message (only its id and chat id are read).
#[derive(Debug, Default)]
pub(super) struct SentMessage<'a> {
    pub(super) message_id: Scalar<'a>,
    /// `result.chat.id`.
    pub(super) chat_id: Scalar<'a>,
}

/// `result.chat`: a Chat (only its id is read).
#[derive(Debug, Default)]
struct Chat<'a> {
    id: Scalar<'a>,
}

/// `parameters`: a ResponseParameters.
#[derive(Debug, Default)]
pub(super) struct Parameters<'a> {
    pub(super) retry_after: Scalar<'a>,
    pub(super) migrate_to_chat_id: Scalar<'a>,
}

object!(Answer, true, |m, o| [
    "ok" => o.ok = m.next_value()?,
    "error_code" => o.error_code = m.next_value()?,
    "description" => o.description = m.next_value()?,
    "result" => o.result = m.next_value()?,
    "parameters" => o.parameters = m.next_value()?,
]);
object!(SentMessage, false, |m, o| [
    "message_id" => o.message_id = m.next_value()?,
    "chat" => o.chat_id = m.next_value::<Chat<'de>>()?.id,
]);
object!(Chat, false, |m, o| [
    "id" => o.id = m.next_value()?,
]);
object!(Parameters, false, |m, o| [
    "retry_after" => o.retry_after = m.next_value()?,
    "migrate_to_chat_id" => o.migrate_to_chat_id = m.next_value()?,
]);
