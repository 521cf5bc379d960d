//! The method table: every Bot API method and the class of limits it meets, as data in one
//! place. A new Bot API release is one line per new method here (and in the test list of
//! methods, `tests/bot_api_methods.txt`, which a test holds this table against).
//!
//! The classes follow what Telegram counts. Send-type methods put one message into a chat
//! (every `send*` but `sendChatAction` and `sendChatJoinRequestWebApp`, which deliver no
//! message, plus `copyMessage` and `forwardMessage`). Albums and the copy/forward of many
//! messages put one message per item into the chat in a single request. Edits, deletes, pins
//! and poll stops share the chat's budget with sends (Telegram counts them against the same
//! per-chat budget) and name a message of one bot, so they never fail over. Methods that
//! belong to the bot's own process (updates and webhooks, logging out) are refused. The rest
//! meet the bot's limit only. A name the table does not hold is classified [`Class::Other`]:
//! a method newer than this table still goes through (forward compatible).
//!
//! Drafts (`sendMessageDraft`, `sendRichMessageDraft`) are counted as sends: Telegram
//! publishes no limit for them, and counting them can only make the gateway slower, never
//! earn a 429.

/// The Bot API release the table describes.
pub const BOT_API_VERSION: &str = "10.1";

/// How many items a many-message call carries, read from one parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Items {
    /// The parameter holding the items (a JSON array).
    pub field: &'static str,
    /// Fewest items Telegram accepts.
    pub min: u32,
    /// Most items Telegram accepts.
    pub max: u32,
}

/// `sendMediaGroup`: 2 to 10 `InputMedia` items in `media`.
pub const MEDIA_GROUP: Items = Items {
    field: "media",
    min: 2,
    max: 10,
};

/// `copyMessages` / `forwardMessages` (and `deleteMessages`): 1 to 100 ids in `message_ids`.
pub const MESSAGE_IDS: Items = Items {
    field: "message_ids",
    min: 1,
    max: 100,
};

/// Which limits a method meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// One message into `chat_id`: the chat, group and bot limits.
    SendOne,
    /// One message per item into `chat_id`, in one request (all or none).
    SendMany(Items),
    /// An edit, delete, pin or stop of a message one bot sent: counted like a message in its
    /// chat, sent by that bot only (never fails over).
    Edit,
    /// The bot's limit only (`chat_id`, when present, still picks the bot).
    Other,
    /// Never sent: the method belongs to the bot's own process.
    Refused,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Method {
    /// The method's name as the Bot API spells it.
    pub name: &'static str,
    /// Its class.
    pub class: Class,
    /// Whether it takes `allow_paid_broadcast` (the paid lane's bot rate).
    pub paid_broadcast: bool,
}

const SEND_ONE: Class = Class::SendOne;
const EDIT: Class = Class::Edit;
const OTHER: Class = Class::Other;
const REFUSED: Class = Class::Refused;

const fn m(name: &'static str, class: Class) -> Method {
    Method {
        name,
        class,
        paid_broadcast: false,
    }
}

/// A method that takes `allow_paid_broadcast`.
const fn paid(name: &'static str, class: Class) -> Method {
    Method {
        name,
        class,
        paid_broadcast: true,
    }
}

/// Every Bot API method, in alphabetical order.
pub static METHODS: &[Method] = &[
    m("addStickerToSet", OTHER),
    m("answerCallbackQuery", OTHER),
    m("answerChatJoinRequestQuery", OTHER),
    m("answerGuestQuery", OTHER),
    m("answerInlineQuery", OTHER),
    m("answerPreCheckoutQuery", OTHER),
    m("answerShippingQuery", OTHER),
    m("answerWebAppQuery", OTHER),
    m("approveChatJoinRequest", OTHER),
    m("approveSuggestedPost", OTHER),
    m("banChatMember", OTHER),
    m("banChatSenderChat", OTHER),
    m("close", REFUSED),
    m("closeForumTopic", OTHER),
    m("closeGeneralForumTopic", OTHER),
    m("convertGiftToStars", OTHER),
    paid("copyMessage", SEND_ONE),
    m("copyMessages", Class::SendMany(MESSAGE_IDS)),
    m("createChatInviteLink", OTHER),
    m("createChatSubscriptionInviteLink", OTHER),
    m("createForumTopic", OTHER),
    m("createInvoiceLink", OTHER),
    m("createNewStickerSet", OTHER),
    m("declineChatJoinRequest", OTHER),
    m("declineSuggestedPost", OTHER),
    m("deleteAllMessageReactions", OTHER),
    m("deleteBusinessMessages", OTHER),
    m("deleteChatPhoto", OTHER),
    m("deleteChatStickerSet", OTHER),
    m("deleteForumTopic", OTHER),
    m("deleteMessage", EDIT),
    m("deleteMessageReaction", OTHER),
    m("deleteMessages", EDIT),
    m("deleteMyCommands", OTHER),
    m("deleteStickerFromSet", OTHER),
    m("deleteStickerSet", OTHER),
    m("deleteStory", OTHER),
    m("deleteWebhook", REFUSED),
    m("editChatInviteLink", OTHER),
    m("editChatSubscriptionInviteLink", OTHER),
    m("editForumTopic", OTHER),
    m("editGeneralForumTopic", OTHER),
    m("editMessageCaption", EDIT),
    m("editMessageChecklist", EDIT),
    m("editMessageLiveLocation", EDIT),
    m("editMessageMedia", EDIT),
    m("editMessageReplyMarkup", EDIT),
    m("editMessageText", EDIT),
    m("editStory", OTHER),
    m("editUserStarSubscription", OTHER),
    m("exportChatInviteLink", OTHER),
    m("forwardMessage", SEND_ONE),
    m("forwardMessages", Class::SendMany(MESSAGE_IDS)),
    m("getAvailableGifts", OTHER),
    m("getBusinessAccountGifts", OTHER),
    m("getBusinessAccountStarBalance", OTHER),
    m("getBusinessConnection", OTHER),
    m("getChat", OTHER),
    m("getChatAdministrators", OTHER),
    m("getChatGifts", OTHER),
    m("getChatMember", OTHER),
    m("getChatMemberCount", OTHER),
    m("getChatMenuButton", OTHER),
    m("getCustomEmojiStickers", OTHER),
    m("getFile", OTHER),
    m("getForumTopicIconStickers", OTHER),
    m("getGameHighScores", OTHER),
    m("getManagedBotAccessSettings", OTHER),
    m("getManagedBotToken", OTHER),
    m("getMe", OTHER),
    m("getMyCommands", OTHER),
    m("getMyDefaultAdministratorRights", OTHER),
    m("getMyDescription", OTHER),
    m("getMyName", OTHER),
    m("getMyShortDescription", OTHER),
    m("getMyStarBalance", OTHER),
    m("getStarTransactions", OTHER),
    m("getStickerSet", OTHER),
    m("getUpdates", REFUSED),
    m("getUserChatBoosts", OTHER),
    m("getUserGifts", OTHER),
    m("getUserPersonalChatMessages", OTHER),
    m("getUserProfileAudios", OTHER),
    m("getUserProfilePhotos", OTHER),
    m("getWebhookInfo", OTHER),
    m("giftPremiumSubscription", OTHER),
    m("hideGeneralForumTopic", OTHER),
    m("leaveChat", OTHER),
    m("logOut", REFUSED),
    m("pinChatMessage", EDIT),
    m("postStory", OTHER),
    m("promoteChatMember", OTHER),
    m("readBusinessMessage", OTHER),
    m("refundStarPayment", OTHER),
    m("removeBusinessAccountProfilePhoto", OTHER),
    m("removeChatVerification", OTHER),
    m("removeMyProfilePhoto", OTHER),
    m("removeUserVerification", OTHER),
    m("reopenForumTopic", OTHER),
    m("reopenGeneralForumTopic", OTHER),
    m("replaceManagedBotToken", OTHER),
    m("replaceStickerInSet", OTHER),
    m("repostStory", OTHER),
    m("restrictChatMember", OTHER),
    m("revokeChatInviteLink", OTHER),
    m("savePreparedInlineMessage", OTHER),
    m("savePreparedKeyboardButton", OTHER),
    paid("sendAnimation", SEND_ONE),
    paid("sendAudio", SEND_ONE),
    m("sendChatAction", OTHER),
    m("sendChatJoinRequestWebApp", OTHER),
    m("sendChecklist", SEND_ONE),
    paid("sendContact", SEND_ONE),
    paid("sendDice", SEND_ONE),
    paid("sendDocument", SEND_ONE),
    paid("sendGame", SEND_ONE),
    m("sendGift", SEND_ONE),
    paid("sendInvoice", SEND_ONE),
    paid("sendLivePhoto", SEND_ONE),
    paid("sendLocation", SEND_ONE),
    paid("sendMediaGroup", Class::SendMany(MEDIA_GROUP)),
    paid("sendMessage", SEND_ONE),
    m("sendMessageDraft", SEND_ONE),
    paid("sendPaidMedia", SEND_ONE),
    paid("sendPhoto", SEND_ONE),
    paid("sendPoll", SEND_ONE),
    paid("sendRichMessage", SEND_ONE),
    m("sendRichMessageDraft", SEND_ONE),
    paid("sendSticker", SEND_ONE),
    paid("sendVenue", SEND_ONE),
    paid("sendVideo", SEND_ONE),
    paid("sendVideoNote", SEND_ONE),
    paid("sendVoice", SEND_ONE),
    m("setBusinessAccountBio", OTHER),
    m("setBusinessAccountGiftSettings", OTHER),
    m("setBusinessAccountName", OTHER),
    m("setBusinessAccountProfilePhoto", OTHER),
    m("setBusinessAccountUsername", OTHER),
    m("setChatAdministratorCustomTitle", OTHER),
    m("setChatDescription", OTHER),
    m("setChatMemberTag", OTHER),
    m("setChatMenuButton", OTHER),
    m("setChatPermissions", OTHER),
    m("setChatPhoto", OTHER),
    m("setChatStickerSet", OTHER),
    m("setChatTitle", OTHER),
    m("setCustomEmojiStickerSetThumbnail", OTHER),
    m("setGameScore", OTHER),
    m("setManagedBotAccessSettings", OTHER),
    m("setMessageReaction", OTHER),
    m("setMyCommands", OTHER),
    m("setMyDefaultAdministratorRights", OTHER),
    m("setMyDescription", OTHER),
    m("setMyName", OTHER),
    m("setMyProfilePhoto", OTHER),
    m("setMyShortDescription", OTHER),
    m("setPassportDataErrors", OTHER),
    m("setStickerEmojiList", OTHER),
    m("setStickerKeywords", OTHER),
    m("setStickerMaskPosition", OTHER),
    m("setStickerPositionInSet", OTHER),
    m("setStickerSetThumbnail", OTHER),
    m("setStickerSetTitle", OTHER),
    m("setUserEmojiStatus", OTHER),
    m("setWebhook", REFUSED),
    m("stopMessageLiveLocation", EDIT),
    m("stopPoll", EDIT),
    m("transferBusinessAccountStars", OTHER),
    m("transferGift", OTHER),
    m("unbanChatMember", OTHER),
    m("unbanChatSenderChat", OTHER),
    m("unhideGeneralForumTopic", OTHER),
    m("unpinAllChatMessages", OTHER),
    m("unpinAllForumTopicMessages", OTHER),
    m("unpinAllGeneralForumTopicMessages", OTHER),
    m("unpinChatMessage", EDIT),
    m("upgradeGift", OTHER),
    m("uploadStickerFile", OTHER),
    m("verifyChat", OTHER),
    m("verifyUser", OTHER),
];

/// The table's row for `name`, compared case-insensitively like the Bot API does; `None`
/// for a name the table does not hold.
pub fn method(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

/// Whether `name` takes `allow_paid_broadcast` (case-insensitive; unknown names do not).
pub fn takes_paid_broadcast(name: &str) -> bool {
    method(name).is_some_and(|m| m.paid_broadcast)
}

/// The class of `name` (case-insensitive); a name the table does not hold is
/// [`Class::Other`], so methods newer than the table go through on the bot's limit.
pub fn classify(name: &str) -> Class {
    method(name).map_or(Class::Other, |m| m.class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_what_telegram_counts() {
        assert_eq!(classify("sendMessage"), Class::SendOne);
        assert_eq!(classify("sendPhoto"), Class::SendOne);
        assert_eq!(classify("copyMessage"), Class::SendOne);
        assert_eq!(classify("forwardMessage"), Class::SendOne);
        assert_eq!(classify("sendChatAction"), Class::Other);
        assert_eq!(classify("sendMediaGroup"), Class::SendMany(MEDIA_GROUP));
        assert_eq!(classify("copyMessages"), Class::SendMany(MESSAGE_IDS));
        assert_eq!(classify("forwardMessages"), Class::SendMany(MESSAGE_IDS));
        for edit in [
            "editMessageText",
            "editMessageCaption",
            "editMessageMedia",
            "editMessageReplyMarkup",
            "deleteMessage",
            "deleteMessages",
            "stopPoll",
            "pinChatMessage",
            "unpinChatMessage",
        ] {
            assert_eq!(classify(edit), Class::Edit, "{edit}");
        }
        for refused in [
            "getUpdates",
            "setWebhook",
            "deleteWebhook",
            "logOut",
            "close",
        ] {
            assert_eq!(classify(refused), Class::Refused, "{refused}");
        }
        assert_eq!(classify("answerCallbackQuery"), Class::Other);
        assert_eq!(classify("getMe"), Class::Other);
    }

    #[test]
    fn the_paid_lane_is_for_sends_albums_and_copy_message() {
        assert!(takes_paid_broadcast("sendMessage"));
        assert!(takes_paid_broadcast("sendmediagroup"));
        assert!(takes_paid_broadcast("copyMessage"));
        for not in [
            "copyMessages",
            "forwardMessage",
            "forwardMessages",
            "editMessageText",
            "sendChatAction",
            "sendHologram",
        ] {
            assert!(!takes_paid_broadcast(not), "{not}");
        }
        for m in METHODS.iter().filter(|m| m.paid_broadcast) {
            assert!(
                matches!(m.class, Class::SendOne | Class::SendMany(_)),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn names_compare_case_insensitively() {
        assert_eq!(classify("SENDMESSAGE"), Class::SendOne);
        assert_eq!(classify("getupdates"), Class::Refused);
        assert_eq!(
            method("EditMessageText").map(|m| m.name),
            Some("editMessageText")
        );
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method("sendHologram"), None);
        assert_eq!(classify("sendHologram"), Class::Other);
        assert_eq!(classify(""), Class::Other);
    }

    #[test]
    fn table_is_sorted_without_duplicates() {
        for pair in METHODS.windows(2) {
            assert!(
                pair[0].name.to_ascii_lowercase() < pair[1].name.to_ascii_lowercase(),
                "{} then {}",
                pair[0].name,
                pair[1].name
            );
        }
    }
}
