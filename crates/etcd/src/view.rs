//! The [`Fleet`] snapshot the gateway routes on, built from the mirror, the
//! bots this instance holds and its session.

use std::collections::{BTreeMap, BTreeSet};

use shardgate_registry::{BotView, Fleet, Health, Member, SessionStatus};

use crate::mirror::{Mirror, same_bot_reason};

/// The fleet as this instance sees it. `owned` is already filtered by the
/// session (empty when it is not live); only bots that exist are kept.
pub(crate) fn build(mirror: &Mirror, owned: BTreeSet<String>, session: SessionStatus) -> Fleet {
    let nodes = mirror.member_nodes();
    let skipped = mirror.same_bot_skipped();
    let bots = mirror
        .bots
        .iter()
        .map(|(name, bot)| {
            let view = BotView {
                spec: bot.value.clone(),
                health: mirror.effective_health(name),
                owner: mirror
                    .owners
                    .get(name)
                    .map(|o| o.instance.clone())
                    .filter(|o| !o.is_empty()),
                desired_owner: mirror.desired_owner(name, &nodes).map(str::to_owned),
            };
            (name.clone(), skip_if_same_bot(view, &skipped))
        })
        .collect::<std::collections::BTreeMap<_, _>>();
    let owned = owned
        .into_iter()
        .filter(|name| bots.contains_key(name) && !skipped.contains_key(name.as_str()))
        .collect();
    let members = mirror
        .members
        .iter()
        .map(|(id, m)| Member {
            instance_id: id.clone(),
            grpc: m.value.grpc.clone(),
        })
        .collect();
    Fleet {
        bots,
        members,
        owned,
        session,
    }
}

/// A second entry of one Telegram bot shows as disabled, saying why (in
/// `Status` and `bot list`); nobody routes to it or drives it.
pub(crate) fn skip_if_same_bot(mut view: BotView, skipped: &BTreeMap<&str, &str>) -> BotView {
    if let Some(kept) = skipped.get(view.spec.name.as_str()) {
        view.spec.enabled = false;
        view.health = Health {
            reason: same_bot_reason(view.spec.token.bot_id(), kept),
            ..Health::healthy()
        };
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keys;
    use crate::mirror::KvMeta;

    #[test]
    fn fleet_shows_owner_desired_owner_and_only_existing_owned_bots() {
        let k = Keys::new("c").expect("keys");
        let mut m = Mirror::default();
        let meta = |rev| KvMeta {
            mod_revision: rev,
            create_revision: rev,
            lease: 0,
        };
        m.apply_put(
            &k,
            k.bot("a").as_bytes(),
            br#"{"token":"123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
            meta(2),
        );
        m.apply_put(
            &k,
            k.member("gw-1").as_bytes(),
            br#"{"grpc":"h:1"}"#,
            meta(3),
        );
        m.apply_put(&k, k.owner("a").as_bytes(), b"gw-1", meta(4));
        let owned: BTreeSet<String> = ["a".to_string(), "gone".to_string()].into();
        let fleet = build(&m, owned, SessionStatus::Ok);
        assert_eq!(fleet.bots["a"].owner.as_deref(), Some("gw-1"));
        assert_eq!(fleet.bots["a"].desired_owner.as_deref(), Some("gw-1"));
        assert_eq!(fleet.owned.iter().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(fleet.members[0].grpc, "h:1");
    }
}
