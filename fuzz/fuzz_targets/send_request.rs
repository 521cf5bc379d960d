//! SendRequest validation on any protobuf bytes: an answer, never a panic,
//! and an accepted pinned bot is a valid bot name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use shardgate_gateway::Message;
use shardgate_proto::v1::SendRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = SendRequest::decode(data) else {
        return;
    };
    if let Ok(m) = Message::from_request(req) {
        if let Some(bot) = &m.bot {
            assert!(shardgate_registry::valid_bot_name(bot));
        }
    }
});
