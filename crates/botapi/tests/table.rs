//! The method table against the Bot API's own list of methods (`bot_api_methods.txt`): every
//! listed method is classified by the table itself, not by the fallback for unknown names,
//! and the table holds nothing the list does not.

use std::collections::BTreeSet;

use shardgate_botapi::{Class, METHODS, classify, method};

fn listed() -> BTreeSet<&'static str> {
    include_str!("bot_api_methods.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn every_listed_method_is_classified_explicitly() {
    let missing: Vec<&str> = listed()
        .into_iter()
        .filter(|m| method(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "methods missing from the table: {missing:?}"
    );
}

#[test]
fn the_table_holds_only_listed_methods() {
    let listed = listed();
    let extra: Vec<&str> = METHODS
        .iter()
        .map(|m| m.name)
        .filter(|m| !listed.contains(m))
        .collect();
    assert!(
        extra.is_empty(),
        "table rows not in the Bot API list: {extra:?}"
    );
    assert_eq!(METHODS.len(), listed.len());
}

#[test]
fn send_family_follows_the_naming_rule() {
    // Every send* method is send-type except the two that deliver no message.
    for name in listed().into_iter().filter(|m| m.starts_with("send")) {
        let expected = match name {
            "sendChatAction" | "sendChatJoinRequestWebApp" => Class::Other,
            "sendMediaGroup" => continue,
            _ => Class::SendOne,
        };
        assert_eq!(classify(name), expected, "{name}");
    }
    assert!(matches!(classify("sendMediaGroup"), Class::SendMany(_)));
    // Every editMessage* is an edit.
    for name in listed()
        .into_iter()
        .filter(|m| m.starts_with("editMessage"))
    {
        assert_eq!(classify(name), Class::Edit, "{name}");
    }
}
