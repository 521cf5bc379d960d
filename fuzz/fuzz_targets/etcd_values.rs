//! Every etcd value decoder on any bytes: an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardgate_etcd::keys;

fuzz_target!(|data: &[u8]| {
    let _ = keys::decode_bot("bot-1", data);
    let _ = keys::decode_health("bot-1", data);
    let _ = keys::decode_member("gw-1", data);
    let _ = keys::decode_owner("bot-1", data);
});
