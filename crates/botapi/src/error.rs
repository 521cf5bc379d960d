//! What is wrong with a call's parameters, its uploads or a send's rich fields. Every
//! variant names the field (or parameter, or upload) at fault, so the gateway can answer
//! `INVALID_ARGUMENT` with a message a caller can act on.

/// A refusal at the door: the call or message is not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The field does not parse as JSON.
    #[error("{field}: not valid JSON ({reason})")]
    InvalidJson {
        /// The field or parameter.
        field: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// The field parses, but is not a JSON object.
    #[error("{field}: must be a JSON object")]
    NotAnObject {
        /// The field or parameter.
        field: &'static str,
    },
    /// A parameter the method needs is absent.
    #[error("{field}: required")]
    Missing {
        /// The parameter.
        field: &'static str,
    },
    /// `chat_id` (or `user_id` standing for a private chat) is neither a non-zero integer
    /// nor an `@username`.
    #[error("{field}: must be a non-zero integer or an @username")]
    InvalidChat {
        /// The parameter.
        field: &'static str,
    },
    /// A message id is not a positive integer.
    #[error("{field}: message ids must be positive integers")]
    InvalidMessageId {
        /// The parameter.
        field: &'static str,
    },
    /// A list parameter is not an array, or holds too few or too many items.
    #[error("{field}: must be an array of {min} to {max} items, got {got}")]
    ItemCount {
        /// The parameter.
        field: &'static str,
        /// Items found (0 when it is not an array).
        got: usize,
        /// Fewest accepted.
        min: u32,
        /// Most accepted.
        max: u32,
    },
    /// A parameter refers to `attach://<name>` but no upload has that name.
    #[error("attach://{name}: no upload has that name")]
    MissingUpload {
        /// The name referred to.
        name: String,
    },
    /// An upload that no parameter uses (neither `attach://<name>` nor a file parameter of
    /// that name).
    #[error("upload {name}: no parameter refers to it")]
    UnusedUpload {
        /// The upload's name.
        name: String,
    },
    /// Two uploads share a name.
    #[error("upload {name}: the name is given twice")]
    DuplicateUpload {
        /// The upload's name.
        name: String,
    },
    /// An upload has no name, or one that cannot be referred to.
    #[error("upload {name:?}: names are 1 to 64 of A-Z, a-z, 0-9, _ and -")]
    InvalidUploadName {
        /// The name as given.
        name: String,
    },
    /// An upload over Telegram's size limit.
    #[error("upload {name}: {size} bytes is over Telegram's limit of {limit} bytes for {kind}")]
    UploadTooLarge {
        /// The upload's name.
        name: String,
        /// Its size.
        size: u64,
        /// The limit that applies.
        limit: u64,
        /// "photos" or "files".
        kind: &'static str,
    },
    /// A key of `params_json` that a typed field of the send request owns.
    #[error("{field}: key {key:?} is a field of its own; set that field instead")]
    ReservedKey {
        /// The field holding the key (`params_json`).
        field: &'static str,
        /// The key.
        key: String,
    },
    /// `reply_markup_json` is not one of Telegram's reply markup shapes.
    #[error("{field}: {reason}")]
    InvalidReplyMarkup {
        /// The field (`reply_markup_json`).
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

impl ParamError {
    /// The field, parameter or upload at fault.
    pub fn field(&self) -> &str {
        match self {
            ParamError::InvalidJson { field, .. }
            | ParamError::NotAnObject { field }
            | ParamError::Missing { field }
            | ParamError::InvalidChat { field }
            | ParamError::InvalidMessageId { field }
            | ParamError::ItemCount { field, .. }
            | ParamError::ReservedKey { field, .. }
            | ParamError::InvalidReplyMarkup { field, .. } => field,
            ParamError::MissingUpload { name }
            | ParamError::UnusedUpload { name }
            | ParamError::DuplicateUpload { name }
            | ParamError::InvalidUploadName { name }
            | ParamError::UploadTooLarge { name, .. } => name,
        }
    }
}
