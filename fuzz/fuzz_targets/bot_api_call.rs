//! A Bot API call as a caller gives it (a method name and its parameters
//! as JSON, or a reply markup): the method table, parameter parsing and
//! `attach://` references answer or refuse, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "<method>\n<params json>"; the whole input is also tried as markup.
    let (method, json) = text.split_once('\n').unwrap_or(("sendMessage", text));
    let _ = shardgate_botapi::check_reply_markup(text);
    let _ = shardgate_botapi::check_send_params(json);
    if let Ok(params) = shardgate_botapi::parse_params("params_json", json) {
        let _ = shardgate_botapi::inspect(method, &params);
        let _ = shardgate_botapi::attach_references(&params);
        let _ = shardgate_botapi::chat_target(&params);
        let _ = shardgate_botapi::edit_target(&params);
    }
});
