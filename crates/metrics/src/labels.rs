//! Label sets and the small enums used as label values. Every value is a
//! bot name or a fixed word: never a chat id, never a token.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// Where a message entered the gateway.
    Entry {
        /// `Send`.
        Unary => "unary",
        /// One item of `SendStream` from a client.
        Stream => "stream",
        /// From a peer instance (its forwarding stream).
        Forwarded => "forwarded",
        /// The Bot API-compatible HTTP front door.
        Http => "http",
    }
}

label_enum! {
    /// What a 429 applied to.
    Scope429 {
        /// One chat cooled down (`retry_after` under the bot threshold).
        Chat => "chat",
        /// The whole bot throttled.
        Bot => "bot",
    }
}

label_enum! {
    /// A bot's state, as `Status` reports it.
    BotState {
        Healthy => "healthy",
        Throttled => "throttled",
        Revoked => "revoked",
        Disabled => "disabled",
    }
}

label_enum! {
    /// Bot API failures other than 429 (`kind` label).
    TelegramError {
        /// 401 Unauthorized or 404 Not Found: the token is unusable.
        Unauthorized => "unauthorized",
        /// 403: blocked by the user, kicked from the chat.
        Forbidden => "forbidden",
        /// Other 4xx (chat not found, message too long, ...).
        BadRequest => "bad_request",
        /// 5xx from the Bot API.
        ServerError => "server_error",
        /// No complete answer in time.
        Timeout => "timeout",
        /// Connect failure, broken connection, unreadable answer.
        Transport => "transport",
    }
}

label_enum! {
    /// Direction of a forwarded message.
    Direction {
        /// Sent to the instance that owns the bot.
        Out => "out",
        /// Received from a peer.
        In => "in",
    }
}

label_enum! {
    /// How the idempotency cache answered.
    IdempotentHit {
        /// With the result of an earlier delivery.
        Answered => "answered",
        /// By joining a send of the same key still in flight.
        Joined => "joined",
    }
}

/// A gRPC code as its canonical name (`OK`, `INVALID_ARGUMENT`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct GrpcCode(pub tonic::Code);

impl GrpcCode {
    pub(crate) const ALL: [GrpcCode; 17] = [
        GrpcCode(tonic::Code::Ok),
        GrpcCode(tonic::Code::Cancelled),
        GrpcCode(tonic::Code::Unknown),
        GrpcCode(tonic::Code::InvalidArgument),
        GrpcCode(tonic::Code::DeadlineExceeded),
        GrpcCode(tonic::Code::NotFound),
        GrpcCode(tonic::Code::AlreadyExists),
        GrpcCode(tonic::Code::PermissionDenied),
        GrpcCode(tonic::Code::ResourceExhausted),
        GrpcCode(tonic::Code::FailedPrecondition),
        GrpcCode(tonic::Code::Aborted),
        GrpcCode(tonic::Code::OutOfRange),
        GrpcCode(tonic::Code::Unimplemented),
        GrpcCode(tonic::Code::Internal),
        GrpcCode(tonic::Code::Unavailable),
        GrpcCode(tonic::Code::DataLoss),
        GrpcCode(tonic::Code::Unauthenticated),
    ];

    pub(crate) fn as_str(self) -> &'static str {
        use tonic::Code::*;
        match self.0 {
            Ok => "OK",
            Cancelled => "CANCELLED",
            Unknown => "UNKNOWN",
            InvalidArgument => "INVALID_ARGUMENT",
            DeadlineExceeded => "DEADLINE_EXCEEDED",
            NotFound => "NOT_FOUND",
            AlreadyExists => "ALREADY_EXISTS",
            PermissionDenied => "PERMISSION_DENIED",
            ResourceExhausted => "RESOURCE_EXHAUSTED",
            FailedPrecondition => "FAILED_PRECONDITION",
            Aborted => "ABORTED",
            OutOfRange => "OUT_OF_RANGE",
            Unimplemented => "UNIMPLEMENTED",
            Internal => "INTERNAL",
            Unavailable => "UNAVAILABLE",
            DataLoss => "DATA_LOSS",
            Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl EncodeLabelValue for GrpcCode {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct BotLabels {
    pub bot: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct EntryLabels {
    pub entry: Entry,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct SendLabels {
    pub entry: Entry,
    pub code: GrpcCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct FailedLabels {
    pub bot: String,
    pub code: GrpcCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ScopeLabels {
    pub bot: String,
    pub scope: Scope429,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct TelegramErrorLabels {
    pub bot: String,
    pub kind: TelegramError,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct BotStateLabels {
    pub bot: String,
    pub state: BotState,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct DirectionLabels {
    pub direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct IdempotentLabels {
    pub kind: IdempotentHit,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct VersionLabels {
    pub version: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct CallerLabels {
    pub caller: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct CallerKindLabels {
    pub caller: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct CallerRefusedLabels {
    pub caller: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct AuthFailureLabels {
    pub reason: &'static str,
}
