//! The operator commands against a real etcd: add, rotate, revoke, enable,
//! list, import; names and tokens validated; tokens never in rows or errors;
//! values readable with `etcdctl get`; a running registry follows them.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use shardgate_etcd::{Admin, EtcdError};
use shardgate_registry::{BotState, BotsFile, Registry};

const LIMIT: Duration = Duration::from_secs(15);

fn no_secret(text: &str) {
    for i in 0..20 {
        assert!(!text.contains(&secret(i)), "token leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_ops_round_trip() {
    let server = etcd().await;
    let client = server.client().await;
    let admin = Admin::connect(&server.endpoints(), "a1", &server.access())
        .await
        .expect("admin");

    admin.add("alpha", &token(1)).await.expect("add");
    admin.add("beta", &token(2)).await.expect("add");
    let err = admin.add("alpha", &token(3)).await.expect_err("exists");
    assert!(matches!(err, EtcdError::AlreadyExists(_)), "{err}");
    let err = admin.add("bad name", &token(3)).await.expect_err("name");
    assert!(matches!(err, EtcdError::InvalidName(_)), "{err}");
    let err = admin
        .add("gamma", &format!("{}!", token(4)))
        .await
        .expect_err("token shape");
    assert!(matches!(err, EtcdError::InvalidToken { .. }), "{err}");
    no_secret(&err.to_string());
    let err = admin
        .rotate("nobody", &token(5))
        .await
        .expect_err("unknown");
    assert!(matches!(err, EtcdError::UnknownBot(_)), "{err}");

    // Values are readable JSON (what `etcdctl get` prints).
    let got = client
        .kv_client()
        .get("/shardgate/a1/bots/alpha", None)
        .await
        .expect("get");
    let text = String::from_utf8_lossy(got.kvs()[0].value()).into_owned();
    assert_eq!(
        text,
        format!(r#"{{"token":"{}","enabled":true}}"#, token(1))
    );

    // A registry follows the operator.
    let reg = start(config(&server.endpoint(), "a1", "i1")).await;
    assert!(reg.wait_settled(LIMIT).await);

    admin
        .revoke("alpha", "leaked in a paste")
        .await
        .expect("revoke");
    let rows = admin.list().await.expect("list");
    let alpha = rows.iter().find(|r| r.name == "alpha").expect("row");
    assert_eq!(alpha.state, "revoked");
    assert!(alpha.reason.contains("leaked in a paste"));
    assert_eq!(alpha.token_redacted, "100001:***");
    assert_eq!(alpha.owner.as_deref(), Some("i1"));
    wait_for("registry sees the revoke", LIMIT, || {
        fleet(&reg).bots["alpha"].state(0) == BotState::Revoked
    })
    .await;

    admin.rotate("alpha", &token(11)).await.expect("rotate");
    let rows = admin.list().await.expect("list");
    let alpha = rows.iter().find(|r| r.name == "alpha").expect("row");
    assert_eq!(alpha.state, "healthy");
    assert_eq!(alpha.token_redacted, "100011:***");
    wait_for("registry sees the rotation", LIMIT, || {
        let f = fleet(&reg);
        f.bots["alpha"].state(0) == BotState::Healthy
            && f.bots["alpha"].spec.token.expose() == token(11)
    })
    .await;

    admin.enable("beta", false).await.expect("disable");
    assert_eq!(state_of(&admin, "beta").await, "disabled");
    wait_for("registry sees disabled", LIMIT, || {
        fleet(&reg).bots["beta"].state(0) == BotState::Disabled
    })
    .await;
    admin.revoke("beta", "").await.expect("revoke");
    admin.enable("beta", true).await.expect("enable");
    assert_eq!(
        state_of(&admin, "beta").await,
        "healthy",
        "enable resets health"
    );

    // Import: one new, one rotated, one toggled, one unchanged.
    let file = BotsFile::parse(
        Path::new("bots.toml"),
        &format!(
            "[[bot]]\nname=\"alpha\"\ntoken=\"{}\"\n\
             [[bot]]\nname=\"beta\"\ntoken=\"{}\"\nenabled=false\n\
             [[bot]]\nname=\"delta\"\ntoken=\"{}\"\n\
             [[bot]]\nname=\"omega\"\ntoken=\"{}\"\n",
            token(11),
            token(2),
            token(7),
            token(8)
        ),
    )
    .expect("file");
    admin.add("omega", &token(9)).await.expect("add");
    let report = admin.import(&file).await.expect("import");
    assert_eq!(report.added, vec!["delta"]);
    assert_eq!(report.rotated, vec!["omega"]);
    assert_eq!(report.toggled, vec!["beta"]);
    assert_eq!(report.unchanged, vec!["alpha"]);
    let again = admin.import(&file).await.expect("import");
    assert_eq!(again.unchanged.len(), 4, "{again:?}");

    // A malformed value shows up as invalid, not as an error.
    client
        .kv_client()
        .put("/shardgate/a1/bots/broken", "{oops", None)
        .await
        .expect("put");
    let rows = admin.list().await.expect("list");
    assert_eq!(
        rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        vec!["alpha", "beta", "broken", "delta", "omega"]
    );
    assert_eq!(rows[2].state, "invalid");
    let dump = format!(
        "{rows:?} {}",
        serde_json::to_string(&rows).expect("rows serialise")
    );
    no_secret(&dump);
    let members = admin.members().await.expect("members");
    assert_eq!(members.len(), 1);
    wait_for("registry has every valid bot", LIMIT, || {
        fleet(&reg).bots.len() == 4
    })
    .await;
    reg.shutdown().await;
    no_secret(&logs());
}

async fn state_of(admin: &Admin, name: &str) -> String {
    admin
        .list()
        .await
        .expect("list")
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.state)
        .unwrap_or_default()
}

/// Two names for one Telegram bot (the same token, or the same bot id before
/// the colon) would be two limiters driving one bot: `add`, `rotate` and
/// `import` refuse them, and an entry put behind their back is skipped and
/// reported, never a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_telegram_bot_under_two_names_is_refused_or_skipped() {
    let server = etcd().await;
    let client = server.client().await;
    let admin = Admin::connect(&server.endpoints(), "dup", &server.access())
        .await
        .expect("admin");
    admin.add("alpha", &token(1)).await.expect("add");
    admin.add("beta", &token(2)).await.expect("add");
    let same_id = format!("{}:OTHERSECRETxxxxxxxxxxxxxxxxxxxxxx", 100_001);
    for t in [token(1), same_id.clone()] {
        let err = admin.add("gamma", &t).await.expect_err("same bot");
        let text = err.to_string();
        assert!(matches!(err, EtcdError::SameBot { .. }), "{text}");
        assert!(
            text.contains("\"gamma\"") && text.contains("\"alpha\""),
            "{text}"
        );
        assert!(text.contains("100001"), "{text}");
        no_secret(&text);
        assert!(!text.contains("OTHERSECRET"), "{text}");
    }
    let err = admin.rotate("beta", &token(1)).await.expect_err("same bot");
    assert!(matches!(err, EtcdError::SameBot { .. }), "{err}");
    // Rotating a bot to another token of its own id is fine.
    admin.rotate("alpha", &same_id).await.expect("own id");
    let file = BotsFile::parse(
        Path::new("bots.toml"),
        &format!(
            "[[bot]]\nname=\"delta\"\ntoken=\"{}\"\n[[bot]]\nname=\"epsilon\"\ntoken=\"{}\"\n",
            token(4),
            token(2)
        ),
    )
    .expect("file");
    let err = admin.import(&file).await.expect_err("epsilon is beta");
    assert!(
        err.to_string().contains("\"epsilon\"") && err.to_string().contains("\"beta\""),
        "{err}"
    );
    assert_eq!(
        state_of(&admin, "delta").await,
        "",
        "a refused import writes nothing"
    );

    // Behind the commands' back: the newer entry is skipped and reported.
    let reg = start(config(&server.endpoint(), "dup", "i1")).await;
    assert!(reg.wait_settled(LIMIT).await);
    client
        .kv_client()
        .put(
            "/shardgate/dup/bots/zeta",
            format!(r#"{{"token":"{}"}}"#, token(2)),
            None,
        )
        .await
        .expect("put");
    wait_for("registry skips the second name", LIMIT, || {
        fleet(&reg)
            .bots
            .get("zeta")
            .is_some_and(|z| z.state(0) == BotState::Disabled)
    })
    .await;
    let f = fleet(&reg);
    assert!(
        f.bots["zeta"].health.reason.contains("\"beta\""),
        "{:?}",
        f.bots["zeta"].health
    );
    assert_eq!(
        f.bots["beta"].state(0),
        BotState::Healthy,
        "the older one stays"
    );
    assert!(!f.owned.contains("zeta"), "nobody drives the skipped one");
    let rows = admin.list().await.expect("list");
    let zeta = rows.iter().find(|r| r.name == "zeta").expect("row");
    assert_eq!(zeta.state, "disabled");
    assert!(zeta.reason.contains("\"beta\""), "{zeta:?}");
    assert!(
        logs().contains("same Telegram bot"),
        "the skipped entry is reported in the log"
    );
    reg.shutdown().await;
    no_secret(&logs());
}
