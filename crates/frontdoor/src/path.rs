//! The request line of the Bot API: `/bot<key>/<method>`.
//!
//! Telegram's URL holds the bot token where ours holds a caller's key (any
//! string with auth off), so a Bot API library points at Shardgate by its
//! base URL alone. The key is a secret like a token: it is never logged, and
//! an error about the path never repeats it.

/// What the path names: the caller's key and the Bot API method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The caller's key; `None` when the path carries none (`/bot/getMe`).
    pub key: Option<&'a str>,
    /// The method, as the client spelled it (the Bot API ignores case).
    pub method: &'a str,
}

/// Longest key read from a path: keys are 43 characters (32 random bytes,
/// base64url); tokens pasted by habit are under 64.
const MAX_KEY: usize = 256;

/// Reads `/bot<key>/<method>`. Anything else is `None` (answered 404, as
/// Telegram answers a path it does not serve).
pub fn parse(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix("/bot")?;
    let (key, method) = rest.split_once('/')?;
    if method.is_empty() || method.contains('/') || key.len() > MAX_KEY {
        return None;
    }
    let key = (!key.is_empty()).then_some(key);
    Some(Target { key, method })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_and_the_method_come_from_the_bot_api_path() {
        assert_eq!(
            parse("/botk3y:abc/sendMessage"),
            Some(Target {
                key: Some("k3y:abc"),
                method: "sendMessage"
            })
        );
        assert_eq!(
            parse("/bot/getMe"),
            Some(Target {
                key: None,
                method: "getMe"
            })
        );
    }

    #[test]
    fn other_paths_are_not_the_bot_api() {
        for p in [
            "/",
            "/bot",
            "/botkey",
            "/botkey/",
            "/file/botkey/photos/1.jpg",
            "/botkey/send/Message",
            "/metrics",
        ] {
            assert_eq!(parse(p), None, "{p}");
        }
        let long = format!("/bot{}/getMe", "k".repeat(MAX_KEY + 1));
        assert_eq!(parse(&long), None);
    }
}
