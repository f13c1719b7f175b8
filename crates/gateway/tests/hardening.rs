//! The holes a black-box attack on the gateway found, each closed as a class and tested through
//! the public interface only: the real `mcpgate` binary on 127.0.0.1, raw HTTP and TCP, in
//! front of a permissive upstream that runs whatever reaches it ([`Spy`]) — so that "refused"
//! means the upstream never saw it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Gateway;
use mcpgate_testkit::{Behaviour, Spy};
use serde_json::{Value, json};

const TOKENS: &str = r#"[{token="alice-token", subject="alice", scopes=["mcp", "read"]}, {token="bob-token", subject="bob", scopes=["mcp"]}]"#;

async fn gateway(upstream: &str, env: &[(&str, &str)]) -> Gateway {
    let mut all = vec![
        ("MCPGATE_AUTH_STATIC_TOKENS", TOKENS),
        ("MCPGATE_AUDIT_OUTPUT", "off"),
    ];
    all.extend_from_slice(env);
    Gateway::start(
        &["--auth", "static", "--dev", "--upstream-url", upstream],
        &all,
    )
    .await
}

/// A POST to `/mcp`: status, headers and body text.
async fn post(gw: &Gateway, token: &str, body: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = send(gw, token, body).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// A POST to `/mcp`, answered up to its headers.
async fn send(gw: &Gateway, token: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// The JSON-RPC messages of a JSON or SSE body.
fn messages(text: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return vec![v];
    }
    let mut out = Vec::new();
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        if data.is_empty() || data.iter().all(|d| d.trim().is_empty()) {
            continue;
        }
        out.push(
            serde_json::from_str(&data.join("\n"))
                .unwrap_or_else(|e| panic!("event is not JSON ({e}): {event:?}")),
        );
    }
    out
}

fn error_code(text: &str) -> Option<i64> {
    messages(text)
        .iter()
        .find_map(|m| m["error"]["code"].as_i64())
}

const DENY_SECRETS: &str = r#"[
  { name = "no secret tools", effect = "deny", match = ["secret_*"] },
  { name = "no private files", effect = "deny", kind = ["resource"], match = ["file:///private/*", "config://secrets*"] },
  { name = "no secret prompts", effect = "deny", kind = ["prompt"], match = ["secret_*"] }
]"#;

#[tokio::test]
async fn governed_requests_that_cannot_be_decided_never_reach_the_upstream() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(&spy.url, &[("MCPGATE_POLICY", DENY_SECRETS)]).await;
    let undecidable = [
        // Not a request: no id, or a null one, or an id MCP does not allow.
        (
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":[1],"method":"tools/call","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"file:///private/keys"}}"#,
            -32600,
        ),
        // Positional or missing params.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["secret_tool",{}]}"#,
            -32602,
        ),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, -32602),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":"secret_prompt"}"#,
            -32602,
        ),
        // Targets that are not strings, or missing.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["secret_tool"]}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":{"n":"secret_tool"}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":["file:///private/keys"]}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":null}}"#,
            -32602,
        ),
        // Repeated members: readers disagree on which one counts.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"secret_tool"}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"arguments":{"x":1}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/readme","uri":"file:///private/keys"}}"#,
            -32602,
        ),
        // Another spelling of a member: some readers (Go's encoding/json) match members
        // case-insensitively, the last one winning.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"secret_tool"}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"secret_tool"}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"Arguments":{"x":1}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/readme","URI":"file:///private/keys"}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"Params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method\u017f":"x","meth\u006fd":"tools/call"}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","paramſ":1,"nam\u0065":"x"}}"#,
            -32602,
        ),
        // Another spelling of a governed method.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call ","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"RESOURCES/READ","params":{"uri":"file:///private/keys"}}"#,
            -32600,
        ),
        // Look-alikes a careless upstream could read as a governed method: cut at NUL,
        // slashes collapsed, trimmed, or letters that look the same.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call\u0000","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools//call","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"/tools/call","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"\ttools/call","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tooIs/call","params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/rea\u0064\u200b","params":{"uri":"file:///private/keys"}}"#,
            -32600,
        ),
        // A method that is not a string.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":5,"result":{},"params":{"name":"secret_tool"}}"#,
            -32600,
        ),
        // completion/complete refs read strictly.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"ok","name":"secret_prompt"},"argument":{"name":"a","value":""}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"secret_prompt","uri":"x:y"},"argument":{"name":"a","value":""}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"ok","extra":"secret_prompt"},"argument":{"name":"a","value":""}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":5},"argument":{"name":"a","value":""}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/other","name":"secret_prompt"}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":["ref/prompt","secret_prompt"]}}"#,
            -32602,
        ),
    ];
    for (body, code) in undecidable {
        let (status, _, text) = post(&gw, "alice-token", body).await;
        assert_eq!(error_code(&text), Some(code), "{body}: {status} {text}");
        assert!(status == 400 || status == 200, "{body}: {status}");
    }
    for method in [
        "tools/call",
        "resources/read",
        "resources/subscribe",
        "prompts/get",
        "completion/complete",
    ] {
        assert!(
            spy.calls(method).is_empty(),
            "{method} reached the upstream: {:?}",
            spy.calls(method)
        );
    }
    // What can be decided is, and what is allowed goes through.
    let (_, _, text) = post(&gw, "alice-token", r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"secret_tool","arguments":{}}}"#).await;
    assert!(text.contains("Unknown tool"), "{text}");
    let (_, _, text) = post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
    )
    .await;
    assert!(text.contains("ran tools/call"), "{text}");
    assert_eq!(spy.calls("tools/call").len(), 1);
}

#[tokio::test]
async fn a_subject_refused_globally_cannot_slip_a_call_past_as_a_notification() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[(
            "MCPGATE_AUTHORIZATION_GLOBAL",
            r#"{ scopes_all = ["read"] }"#,
        )],
    )
    .await;
    for body in [
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["echo"]}"#,
    ] {
        let (status, _, _) = post(&gw, "bob-token", body).await;
        assert!(status >= 400 || status == 200, "{status}");
    }
    let (status, headers, _) = post(
        &gw,
        "bob-token",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"scope="read"#)
    );
    assert!(spy.calls("tools/call").is_empty(), "{:?}", spy.seen());
}

async fn read(gw: &Gateway, uri: &str) -> (u16, String) {
    let body =
        json!({"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri": uri}}).to_string();
    let (status, _, text) = post(gw, "alice-token", &body).await;
    (status, text)
}

const PRIVATE_SPELLINGS: &[&str] = &[
    // RFC 8089: other spellings of the same local file.
    "file:/private/keys",
    "file://localhost/private/keys",
    "file://LOCALHOST/private/keys",
    "file:/public/../private/keys",
    // Empty port, trailing dot of the host.
    "config://secrets:",
    "config://secrets.",
    "file:///public/../private/keys",
    "file:///public/./../private/keys",
    "FILE:///private/keys",
    "File:///private/keys",
    "file:///%70rivate/keys",
    "file:///%70%72ivate/keys",
    "file:///private//keys",
    "file:////private/keys",
    "file:///private/keys#fragment",
    "file:///private/./keys",
    "config://SECRETS",
    "CONFIG://secrets",
    "config://secrets#x",
    "config://Secrets/",
];

const AMBIGUOUS_SPELLINGS: &[&str] = &[
    // User information: hosts read differently by different readers.
    "config://user@secrets",
    "config://@secrets",
    "config://secrets:x",
    "file:///public/%2e%2e/private/keys",
    "file:///public/%2E%2E/private/keys",
    "file:///public/..%2fprivate/keys",
    "file:///private%2Fkeys",
    "file:///public\\..\\private\\keys",
    "file:///../private/keys",
    "file:///private/keys%00",
    "file:///private/\u{1b}keys",
    "file:///private/%zzkeys",
    "/private/keys",
];

#[tokio::test]
async fn equivalent_spellings_of_a_resource_uri_are_decided_alike() {
    let spy = Spy::start(Behaviour::default()).await;
    // A deny list …
    let deny = gateway(&spy.url, &[("MCPGATE_POLICY", DENY_SECRETS)]).await;
    // … an allow list with default deny, and a conditional allow rule.
    let allow = gateway(
        &spy.url,
        &[
            ("MCPGATE_AUTHORIZATION_DEFAULT", "deny"),
            (
                "MCPGATE_POLICY",
                r#"[{ kind = ["resource"], match = ["file:///public/*"] }, { kind = ["tool"] }, { kind = ["resource"], match = ["config://public*"], when = "subject == 'alice'" }]"#,
            ),
        ],
    )
    .await;
    for gw in [&deny, &allow] {
        for uri in PRIVATE_SPELLINGS {
            let (_, text) = read(gw, uri).await;
            assert_eq!(error_code(&text), Some(-32002), "{uri}: {text}");
        }
        for uri in AMBIGUOUS_SPELLINGS {
            let (_, text) = read(gw, uri).await;
            assert_eq!(error_code(&text), Some(-32602), "{uri}: {text}");
        }
    }
    assert!(
        spy.calls("resources/read").is_empty(),
        "{:?}",
        spy.calls("resources/read")
    );
    // An allowed resource goes upstream in the spelling that was decided on.
    for gw in [&deny, &allow] {
        let (_, text) = read(gw, "FILE:///public/./sub/../readme#top").await;
        assert!(text.contains("ran resources/read"), "{text}");
    }
    let reads = spy.calls("resources/read");
    assert_eq!(reads.len(), 2);
    for r in reads {
        assert_eq!(r["params"]["uri"], "file:///public/readme", "{r}");
    }
}

#[tokio::test]
async fn ip_hosts_are_decided_in_one_spelling_and_ipv4_inside_ipv6_is_refused() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[(
            "MCPGATE_POLICY",
            r#"[{ name = "no local admin", effect = "deny", kind = ["resource"], match = ["http://127.0.0.1/*", "http://[[]::1[]]/*"] }]"#,
        )],
    )
    .await;
    for uri in [
        "http://127.0.0.1/admin",
        "http://[::1]/admin",
        "http://[0::1]/admin",
        "http://[::0001]/admin",
        "http://[0:0:0:0:0:0:0:1]:80/admin",
    ] {
        let (_, text) = read(&gw, uri).await;
        assert_eq!(error_code(&text), Some(-32002), "{uri}: {text}");
    }
    // The IPv4 host inside IPv6, and a port past 65535 (65616 is 80 in 16 bits).
    for uri in [
        "http://[::ffff:127.0.0.1]/admin",
        "http://[::ffff:7f00:1]/admin",
        "http://[0:0:0:0:0:ffff:127.0.0.1]/admin",
        "http://127.0.0.1:65616/admin",
    ] {
        let (_, text) = read(&gw, uri).await;
        assert_eq!(error_code(&text), Some(-32602), "{uri}: {text}");
    }
    assert!(spy.calls("resources/read").is_empty());
    let (_, text) = read(&gw, "http://[2001:DB8:0::1]/x").await;
    assert!(text.contains("ran resources/read"), "{text}");
    assert_eq!(
        spy.calls("resources/read")[0]["params"]["uri"],
        "http://[2001:db8::1]/x"
    );
}

#[tokio::test]
async fn members_spelt_with_a_dotless_or_dotted_i_are_other_spellings() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(&spy.url, &[("MCPGATE_POLICY", DENY_SECRETS)]).await;
    for body in [
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"resources/read\",\"params\":{\"uri\":\"file:///public/a\",\"ur\u{131}\":\"file:///private/keys\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"resources/read\",\"params\":{\"uri\":\"file:///public/a\",\"ur\u{130}\":\"file:///private/keys\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"\u{131}d\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}",
    ] {
        let (_, _, text) = post(&gw, "alice-token", body).await;
        assert!(
            matches!(error_code(&text), Some(-32600 | -32602)),
            "{body}: {text}"
        );
    }
    assert!(spy.calls("resources/read").is_empty());
    assert!(spy.calls("tools/call").is_empty());
}

#[tokio::test]
async fn lists_hide_resources_under_any_spelling() {
    let spy = Spy::start(Behaviour {
        resources: vec![
            json!({"uri": "FILE:///public/../private/keys", "name": "a"}),
            json!({"uri": "file:///%70rivate/keys", "name": "b"}),
            json!({"uri": "config://SECRETS#x", "name": "c"}),
            json!({"uri": "file:///public/%2e%2e/private/keys", "name": "d"}),
            json!({"uri": "file:///public/readme", "name": "ok"}),
        ],
        ..Behaviour::default()
    })
    .await;
    let gw = gateway(&spy.url, &[("MCPGATE_POLICY", DENY_SECRETS)]).await;
    let (_, _, text) = post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#,
    )
    .await;
    let listed: Vec<String> = messages(&text)[0]["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["ok"], "{text}");
}

#[tokio::test]
async fn argument_validation_refuses_what_it_cannot_check() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[("MCPGATE_AUTHORIZATION_VALIDATE_ARGUMENTS", "true")],
    )
    .await;
    let call = |args: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{args}}}}}"#
        )
    };
    // Never listed: its schema is unknown.
    let (_, _, text) = post(&gw, "alice-token", &call(r#"{"message":"hi"}"#)).await;
    assert_eq!(error_code(&text), Some(-32602), "{text}");
    assert!(text.contains("list tools"), "{text}");
    post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    // Now it checks.
    let (_, _, text) = post(&gw, "alice-token", &call(r#"{"message":"hi"}"#)).await;
    assert!(text.contains("ran tools/call"), "{text}");
    let (_, _, text) = post(&gw, "alice-token", &call(r#"{"message":5}"#)).await;
    assert_eq!(error_code(&text), Some(-32602), "{text}");
    // Arguments it cannot read for certain.
    let (_, _, text) = post(&gw, "alice-token", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"},"arguments":{"message":5}}}"#).await;
    assert_eq!(error_code(&text), Some(-32602), "{text}");
    let (_, _, text) = post(&gw, "alice-token", &call(r#"{"message":"hi","n":1e400}"#)).await;
    assert_eq!(error_code(&text), Some(-32602), "{text}");
    let deep = format!(
        r#"{{"message":"hi","x":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let (status, _, text) = post(&gw, "alice-token", &call(&deep)).await;
    assert_eq!((status, error_code(&text)), (400, Some(-32600)), "{text}");
    assert_eq!(spy.calls("tools/call").len(), 1, "only the valid call ran");
}

#[tokio::test]
async fn only_a_real_list_changed_notification_makes_the_gateway_forget_what_it_learnt() {
    let spy = Spy::start(Behaviour {
        sse: true,
        result_text: Some(
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#.into(),
        ),
        ..Behaviour::default()
    })
    .await;
    let gw = gateway(
        &spy.url,
        &[("MCPGATE_AUTHORIZATION_VALIDATE_ARGUMENTS", "true")],
    )
    .await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"notifications/tools/list_changed"}}}"#;
    post(
        &gw,
        "bob-token",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    // A result that merely contains the words changes nothing …
    for _ in 0..2 {
        let (_, _, text) = post(&gw, "bob-token", call).await;
        assert!(text.contains("ran tools/call"), "{text}");
    }
    // … a real notification from the upstream does.
    spy.set(|b| b.notifications_first = vec!["notifications/tools/list_changed".into()]);
    let (_, _, text) = post(&gw, "bob-token", call).await;
    assert!(text.contains("ran tools/call"), "{text}");
    spy.set(|b| b.notifications_first.clear());
    let (_, _, text) = post(&gw, "bob-token", call).await;
    assert!(text.contains("list tools"), "forgotten: {text}");
}

#[tokio::test]
async fn list_answers_that_cannot_be_filtered_are_refused_never_passed_on() {
    for sse in [false, true] {
        // Larger than upstream.max_response_bytes.
        let spy = Spy::start(Behaviour {
            sse,
            list_padding: 200 * 1024,
            ..Behaviour::default()
        })
        .await;
        let gw = gateway(
            &spy.url,
            &[
                ("MCPGATE_POLICY", DENY_SECRETS),
                ("MCPGATE_UPSTREAM_MAX_RESPONSE_BYTES", "65536"),
            ],
        )
        .await;
        let (status, _, text) = post(
            &gw,
            "alice-token",
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#,
        )
        .await;
        assert!(
            !text.contains("secret_tool"),
            "sse={sse}: a hidden tool was delivered"
        );
        let m = messages(&text);
        assert_eq!(m.last().unwrap()["id"], 9, "sse={sse}: {text:.300}");
        assert!(m.last().unwrap()["error"].is_object(), "sse={sse}");
        if !sse {
            assert_eq!(status, 502);
        }
        // A list member given twice (a client may read the second).
        spy.set(|b| {
            b.list_padding = 0;
            b.repeated_list = true;
        });
        let (_, _, text) = post(
            &gw,
            "alice-token",
            r#"{"jsonrpc":"2.0","id":10,"method":"tools/list"}"#,
        )
        .await;
        assert!(!text.contains("secret_tool"), "sse={sse}: {text}");
        assert!(
            messages(&text).last().unwrap()["error"].is_object(),
            "sse={sse}: {text}"
        );
    }
}

#[tokio::test]
async fn filtered_sse_events_spanning_several_data_lines_stay_well_formed() {
    let spy = Spy::start(Behaviour {
        sse: true,
        split_data_lines: true,
        ..Behaviour::default()
    })
    .await;
    let gw = gateway(&spy.url, &[("MCPGATE_POLICY", DENY_SECRETS)]).await;
    let (_, _, text) = post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    let m = messages(&text);
    let names: Vec<&str> = m[0]["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "deep"]);
}

#[tokio::test]
async fn upstream_answers_that_are_not_this_requests_answer_are_refused() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(&spy.url, &[]).await;
    let call = r#"{"jsonrpc":"2.0","id":"mine","method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    for (sse, reply) in [
        (false, "<html>not json</html>"),
        (
            false,
            r#"{"jsonrpc":"2.0","id":"someone-else","result":{"content":[]}}"#,
        ),
        (
            false,
            r#"{"jsonrpc":"2.0","id":{id},"result":{},"error":{"code":1,"message":"x"}}"#,
        ),
        (true, "<html>not json</html>"),
        (
            true,
            r#"{"jsonrpc":"2.0","id":"someone-else","result":{"content":[]}}"#,
        ),
    ] {
        spy.set(|b| {
            b.sse = sse;
            b.raw_reply = Some(reply.into());
        });
        let (status, _, text) = post(&gw, "alice-token", call).await;
        let last = messages(&text).pop().unwrap();
        assert_eq!(last["id"], "mine", "{reply}: {text}");
        assert!(last["error"].is_object(), "{reply}: {text}");
        assert!(!text.contains("someone-else"));
        if !sse {
            assert_eq!(status, 502, "{reply}");
        }
    }
}

#[tokio::test]
async fn a_silent_sse_answer_ends_with_a_json_rpc_error_not_a_cut_stream() {
    let spy = Spy::start(Behaviour {
        sse: true,
        silent: true,
        ..Behaviour::default()
    })
    .await;
    let gw = gateway(&spy.url, &[("MCPGATE_UPSTREAM_IDLE_TIMEOUT", "1s")]).await;
    let (status, _, text) = post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo"}}"#,
    )
    .await;
    assert_eq!(status, 200);
    let last = messages(&text).pop().unwrap();
    assert_eq!(last["id"], 5, "{text}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("idle_timeout"),
        "{text}"
    );
}

#[tokio::test]
async fn bodies_that_are_not_utf8_are_refused_before_anything_reads_them() {
    // Found by the jsonrpc fuzz target: raw bytes that are not UTF-8 inside a member the
    // gateway skips were forwarded for the upstream to read in its own way.
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(&spy.url, &[]).await;
    let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"x":""#.to_vec();
    body.extend_from_slice(&[0x88, 0x88, 0xff]);
    body.extend_from_slice(br#""}}"#);
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth("alice-token")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.text().await.unwrap()), Some(-32700));
    assert!(spy.seen().is_empty());
}

#[tokio::test]
async fn one_depth_limit_applies_to_the_whole_message() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(&spy.url, &[]).await;
    let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    for body in [
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"x":{}}}}}}}"#,
            nest(80)
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x/y","params":{{"a":{}}}}}"#,
            nest(80)
        ),
        format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/x","params":{{"a":{}}}}}"#,
            nest(80)
        ),
    ] {
        let (status, _, text) = post(&gw, "alice-token", &body).await;
        assert_eq!((status, error_code(&text)), (400, Some(-32600)), "{text}");
    }
    assert!(spy.seen().is_empty(), "{:?}", spy.seen());
    // Moderate nesting is fine.
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"x":{}}}}}}}"#,
        nest(40)
    );
    let (status, _, _) = post(&gw, "alice-token", &body).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn refusals_are_json_rpc_errors_too_large_bodies_and_two_hosts_included() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(&spy.url, &[("MCPGATE_HTTP_MAX_BODY_BYTES", "1024")]).await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"x":"{}"}}}}}}"#,
        "y".repeat(4096)
    );
    let (status, headers, text) = post(&gw, "alice-token", &big).await;
    assert_eq!(status, 413);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(error_code(&text), Some(-32600), "{text}");
    // Two Host headers (or a Host that differs from the request target): refused.
    for head in [
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\nHost: evil.example\r\nAuthorization: Bearer alice-token\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
            gw.port
        ),
        format!(
            "POST http://127.0.0.1:{0}/mcp HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer alice-token\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
            gw.port
        ),
    ] {
        let reply = raw_exchange(gw.port, head.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        assert!(reply.contains("\"error\""), "{reply}");
    }
    assert!(spy.seen().is_empty());
}

/// Sends `bytes` on a fresh connection and reads what comes back until the server closes or
/// five seconds pass.
fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closes `s` within `limit` (reads return 0 or fail with reset).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn slow_heads_and_stalled_bodies_do_not_hold_connections() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[
            ("MCPGATE_HTTP_HEADER_TIMEOUT", "1s"),
            ("MCPGATE_HTTP_BODY_TIMEOUT", "1s"),
        ],
    )
    .await;
    let port = gw.port;
    tokio::task::spawn_blocking(move || {
        // A head that never ends.
        let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
        slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
        assert!(closed_within(&mut slow, Duration::from_secs(10)), "slow head kept open");
        // A connection that says nothing at all.
        let mut mute = TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(closed_within(&mut mute, Duration::from_secs(10)), "silent connection kept open");
        // A body that stalls: 408 with a JSON-RPC error.
        let mut stall = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stall
            .write_all(format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer alice-token\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\"").as_bytes())
            .unwrap();
        stall.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = vec![0u8; 4096];
        let n = stall.read(&mut reply).unwrap_or(0);
        let reply = String::from_utf8_lossy(&reply[..n]).into_owned();
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        // An idle kept-alive connection is closed too.
        let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
        idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 1024];
        idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(idle.read(&mut buf).unwrap() > 0);
        assert!(closed_within(&mut idle, Duration::from_secs(10)), "idle keep-alive kept open");
    })
    .await
    .unwrap();
    assert!(spy.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answer_is_let_go_and_its_share_freed() {
    // A 24 MiB answer, more than loopback's buffers take, with room for one such answer in
    // flight: a client that never reads holds it until the gateway lets the client go.
    let spy = Spy::start(Behaviour {
        result_text: Some("y".repeat(24 << 20)),
        ..Behaviour::default()
    })
    .await;
    let room = (32 << 20).to_string();
    let gw = gateway(
        &spy.url,
        &[
            ("MCPGATE_HTTP_BODY_TIMEOUT", "3s"),
            ("MCPGATE_UPSTREAM_MAX_RESPONSE_BYTES", &room),
            ("MCPGATE_UPSTREAM_MAX_RESPONSE_BYTES_IN_FLIGHT", &room),
        ],
    )
    .await;
    let call =
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let port = gw.port;
    // A small receive buffer (set before connecting, it is not grown by the kernel): the
    // answer cannot all sit in the client's socket unread.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect(&to.into()).unwrap();
    let mut mute: TcpStream = socket.into();
    mute.write_all(format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer alice-token\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{call}", call.len()).as_bytes()).unwrap();
    // It reads nothing: while the gateway holds its answer, another caller's does not fit …
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, text) = post(&gw, "alice-token", call).await;
        if status == 503 {
            break;
        }
        assert_eq!(status, 200, "{text:.300}");
        assert!(
            Instant::now() < deadline,
            "the silent client's answer was never held"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // … until, the body timeout after its last read, the gateway closes it and frees its share.
    loop {
        let (status, _, text) = post(&gw, "alice-token", call).await;
        if status == 200 {
            assert!(text.contains(&"y".repeat(1000)), "{text:.300}");
            break;
        }
        assert_eq!(status, 503, "{text:.300}");
        assert!(
            Instant::now() < deadline,
            "a client that reads nothing holds the replies' budget for ever"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(mute);
}

#[test]
fn serving_threads_must_be_a_sensible_number() {
    let check = |threads: &str| {
        common::run(
            &[
                "check-config",
                "--auth",
                "none",
                "--upstream-url",
                "http://127.0.0.1:9/mcp",
            ],
            &[("TOKIO_WORKER_THREADS", threads)],
        )
    };
    for bad in [
        "0",
        "-1",
        "abc",
        "",
        "2.5",
        "1000000",
        "99999999999999999999",
    ] {
        let (code, _, err) = check(bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(
            err.contains("TOKIO_WORKER_THREADS must be a whole number from 1 to 1024"),
            "{bad:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{bad:?}: {err}");
    }
    for good in ["1", " 2 ", "64"] {
        let (code, _, err) = check(good);
        assert_eq!(code, 0, "{good:?}: {err}");
    }
}

/// A connection from `from` (a loopback address) to the gateway.
fn connect_from(from: &str, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    let remote: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect(&remote.into()).unwrap();
    socket.into()
}

fn healthz_from(from: &str, port: u16) -> String {
    let mut s = connect_from(from, port);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[tokio::test]
async fn connection_floods_get_a_clear_refusal_and_others_are_still_served() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[
            ("MCPGATE_HTTP_HEADER_TIMEOUT", "30s"),
            ("MCPGATE_HTTP_MAX_CONNECTIONS", "12"),
            ("MCPGATE_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "4"),
        ],
    )
    .await;
    let port = gw.port;
    let outcome = tokio::task::spawn_blocking(move || {
        // (The start-up probe's connection is gone by now.)
        std::thread::sleep(Duration::from_millis(200));
        // One address opens as many connections as it may and sends nothing …
        let held: Vec<TcpStream> = (0..4).map(|_| connect_from("127.0.0.3", port)).collect();
        std::thread::sleep(Duration::from_millis(300));
        // … the next from it is refused with 429 …
        let reply = healthz_from("127.0.0.3", port);
        assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
        assert!(reply.contains("\"error\""), "{reply}");
        // … while another address is served.
        assert!(healthz_from("127.0.0.4", port).starts_with("HTTP/1.1 200"));
        // Many addresses together reach the total: 503, and a clear one.
        let more: Vec<TcpStream> = ["127.0.0.5", "127.0.0.6"]
            .iter()
            .flat_map(|a| (0..4).map(move |_| connect_from(a, port)))
            .collect();
        // (Under load the listener may take a moment to count them all; and when this
        // machine is busy with other tests, a connection the gateway has not accepted yet
        // is not counted: a few more held connections, from other addresses, make up for
        // it without changing what is checked — that the total is enforced, with a 503.)
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut extra = Vec::new();
        let reply = loop {
            std::thread::sleep(Duration::from_millis(100));
            let reply = healthz_from("127.0.0.7", port);
            if reply.starts_with("HTTP/1.1 503") || Instant::now() > deadline {
                break reply;
            }
            if extra.len() < 4 {
                extra.push(connect_from(&format!("127.0.1.{}", extra.len() + 1), port));
            }
        };
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        drop(extra);
        drop(more);
        drop(held);
        // Once they go, new clients are served again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !healthz_from("127.0.0.7", port).starts_with("HTTP/1.1 200") {
            assert!(Instant::now() < deadline, "not served again");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await;
    assert!(outcome.is_ok(), "{}", gw.log());
}

#[tokio::test]
async fn an_address_without_valid_credentials_is_slowed_down() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[("MCPGATE_HTTP_UNAUTHENTICATED_PER_ADDRESS", "3/minute")],
    )
    .await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let mut statuses = Vec::new();
    for token in [
        "wrong-1",
        "wrong-2",
        "wrong-3",
        "wrong-4",
        "wrong-5",
        "alice-token",
    ] {
        let (status, headers, text) = post(&gw, token, body).await;
        if status == 429 {
            assert!(headers.contains_key("retry-after"));
            assert_eq!(error_code(&text), Some(-32029), "{text}");
        }
        statuses.push(status);
    }
    // Blocked — but a token the gateway knows to be good (here a configured one) still passes.
    assert_eq!(statuses, [401, 401, 401, 401, 429, 200]);
}

#[tokio::test]
async fn tool_calls_are_rate_limited_with_429_retry_after_audit_and_metrics() {
    let spy = Spy::start(Behaviour::default()).await;
    let audit = std::env::temp_dir().join(format!("mcpgate-rl-{}.jsonl", std::process::id()));
    let audit_s = audit.display().to_string();
    let gw = gateway(
        &spy.url,
        &[
            (
                "MCPGATE_RATE_LIMIT",
                r#"[{ name = "two per minute", rate = "2/minute" }]"#,
            ),
            ("MCPGATE_AUDIT_OUTPUT", &audit_s),
        ],
    )
    .await;
    let call =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    for _ in 0..2 {
        let (status, _, _) = post(&gw, "alice-token", call).await;
        assert_eq!(status, 200);
    }
    let (status, headers, text) = post(&gw, "alice-token", call).await;
    assert_eq!(status, 429);
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(error_code(&text), Some(-32029), "{text}");
    // Bob has his own allowance; lists are not counted.
    assert_eq!(post(&gw, "bob-token", call).await.0, 200);
    assert_eq!(
        post(
            &gw,
            "alice-token",
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#
        )
        .await
        .0,
        200
    );
    assert_eq!(spy.calls("tools/call").len(), 3);
    let metrics = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"mcpgate_rate_limited_total{rule="two per minute"} 1"#),
        "{metrics}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.contains(r#""decision":"rate_limited""#) {
            assert!(text.contains(r#""rule":"two per minute""#), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no audit record: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn a_request_that_times_out_is_cancelled_upstream() {
    let spy = Spy::start(Behaviour {
        delay: Some(Duration::from_secs(3)),
        ..Behaviour::default()
    })
    .await;
    let gw = gateway(&spy.url, &[("MCPGATE_UPSTREAM_TIMEOUT", "300ms")]).await;
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth("alice-token")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth("alice-token")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .body(r#"{"jsonrpc":"2.0","id":"slow-1","method":"tools/call","params":{"name":"echo","arguments":{}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cancelled = spy.calls("notifications/cancelled");
        if let Some(c) = cancelled.first() {
            assert_eq!(c["params"]["requestId"], "slow-1", "{c}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream never heard of the cancellation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn upstream_replies_held_at_once_are_bounded_for_all_callers_together() {
    // An event that never ends: 700 KiB held by the gateway while the upstream stays open.
    let mut endless = b"data: ".to_vec();
    endless.extend(std::iter::repeat_n(b'x', 700 * 1024));
    let spy = Spy::start(Behaviour {
        sse: true,
        silent: true,
        sse_prefix: endless,
        ..Behaviour::default()
    })
    .await;
    let mib = (1024 * 1024).to_string();
    let gw = gateway(
        &spy.url,
        &[
            ("MCPGATE_UPSTREAM_MAX_RESPONSE_BYTES", &mib),
            ("MCPGATE_UPSTREAM_MAX_RESPONSE_BYTES_IN_FLIGHT", &mib),
        ],
    )
    .await;
    let call =
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let first = send(&gw, "alice-token", call).await;
    assert_eq!(first.status(), 200);
    // Wait until the gateway holds the first event's bytes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A second stream's event does not fit: an error event for its id, not unbounded memory.
    let (status, _, text) = post(&gw, "alice-token", call).await;
    assert_eq!(status, 200);
    let m = &messages(&text)[0];
    assert_eq!(m["id"], 5, "{text:.300}");
    assert!(
        m["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many upstream replies"),
        "{text:.300}"
    );
    // Nor does a JSON reply of the same size: 503 with Retry-After.
    spy.set(|b| {
        b.sse = false;
        b.silent = false;
        b.sse_prefix.clear();
        b.result_text = Some("y".repeat(700 * 1024));
    });
    let (status, headers, text) = post(&gw, "alice-token", call).await;
    assert_eq!(status, 503, "{text:.300}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(messages(&text)[0]["id"], 5, "{text:.300}");
    // Once the first caller goes away, its share is free again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, text) = post(&gw, "alice-token", call).await;
        if status == 200 {
            assert!(text.contains(&"y".repeat(1000)), "{text:.300}");
            break;
        }
        assert!(Instant::now() < deadline, "the share was never given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn targets_longer_than_the_gateway_decides_on_are_refused() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(&spy.url, &[]).await;
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name": "delete_".to_owned() + &"x".repeat(9000)}}).to_string();
    let (_, _, text) = post(&gw, "alice-token", &body).await;
    assert_eq!(error_code(&text), Some(-32602), "{text:.200}");
    assert!(spy.seen().is_empty());
}

#[tokio::test]
async fn any_success_status_must_carry_the_answer_and_lists_are_filtered_whatever_the_status() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(&spy.url, &[("MCPGATE_POLICY", DENY_SECRETS)]).await;
    for status in [201, 203, 206, 299] {
        spy.set(|b| b.status = Some(status));
        let (got, _, text) = post(
            &gw,
            "alice-token",
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        )
        .await;
        assert_eq!(got, status, "{text}");
        assert!(!text.contains("secret_tool"), "{status}: {text}");
        spy.set(|b| {
            b.raw_reply = Some(r#"{"jsonrpc":"2.0","id":999,"result":{"content":[]}}"#.into())
        });
        let (got, _, text) = post(
            &gw,
            "alice-token",
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#,
        )
        .await;
        assert_eq!(got, 502, "{status}: {text}");
        spy.set(|b| b.raw_reply = None);
    }
    // A refusal's body passes only when it is a JSON-RPC error.
    for (status, body, passes) in [
        (
            500,
            r#"{"jsonrpc":"2.0","id":{id},"error":{"code":-32603,"message":"boom"}}"#,
            true,
        ),
        (
            400,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}"#,
            true,
        ),
        (404, "<html>not here</html>", false),
        (
            500,
            r#"{"jsonrpc":"2.0","id":{id},"result":{"tools":[{"name":"secret_tool"}]}}"#,
            false,
        ),
        // An error with a result under another spelling (case-insensitive readers take it),
        // or with the error given twice: not exactly an error, so replaced.
        (
            500,
            r#"{"jsonrpc":"2.0","id":{id},"error":{"code":-1,"message":"x"},"Result":{"tools":[{"name":"secret_tool"}]}}"#,
            false,
        ),
        (
            500,
            r#"{"jsonrpc":"2.0","id":{id},"error":{"code":-1,"message":"x"},"error":{"code":-2,"message":"secret_tool"}}"#,
            false,
        ),
    ] {
        spy.set(|b| {
            b.status = Some(status);
            b.raw_reply = Some(body.into());
        });
        let (got, _, text) = post(
            &gw,
            "alice-token",
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
        )
        .await;
        assert_eq!(got, status);
        let m = &messages(&text)[0];
        assert!(m["error"].is_object(), "{status}: {text}");
        assert!(!text.contains("secret_tool"));
        if passes {
            assert!(
                text.contains(
                    body.split("message\":\"")
                        .nth(1)
                        .unwrap()
                        .split('"')
                        .next()
                        .unwrap()
                ),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn sse_answers_are_read_as_clients_read_them() {
    let spy = Spy::start(Behaviour {
        sse: true,
        sse_prefix: b"\xEF\xBB\xBF".to_vec(),
        ..Behaviour::default()
    })
    .await;
    let gw = gateway(&spy.url, &[("MCPGATE_POLICY", DENY_SECRETS)]).await;
    // A byte-order mark first: stripped as SSE readers do, and the list still filtered.
    let (_, _, text) = post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    assert!(!text.contains("secret_tool"), "{text}");
    assert!(text.contains("\"echo\""), "{text}");
    // An answer that also says it is a request: refused.
    spy.set(|b| {
        b.sse_prefix.clear();
        b.raw_reply = Some(r#"{"jsonrpc":"2.0","id":{id},"method":"x","result":{"tools":[{"name":"secret_tool"}]}}"#.into());
    });
    let (_, _, text) = post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    assert!(!text.contains("secret_tool"), "{text}");
    assert!(messages(&text).last().unwrap()["error"].is_object());
    // A stream that ends without the answer ends with an error, not cut off …
    spy.set(|b| {
        b.raw_reply =
            Some(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#.into())
    });
    let (_, _, text) = post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo"}}"#,
    )
    .await;
    let last = messages(&text).pop().unwrap();
    assert_eq!(
        (last["id"].clone(), last["error"].is_object()),
        (json!(4), true),
        "{text}"
    );
    // … and a second answer to the same request is dropped.
    spy.set(|b| {
        b.raw_reply = None;
        b.notifications_first = vec![];
    });
}

#[tokio::test]
async fn refused_subjects_send_nothing_upstream_not_even_notifications() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[(
            "MCPGATE_AUTHORIZATION_GLOBAL",
            r#"{ scopes_all = ["read"] }"#,
        )],
    )
    .await;
    for body in [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
        r#"{"jsonrpc":"2.0","method":"anything/at/all","params":{"name":"secret_tool"}}"#,
        r#"{"jsonrpc":"2.0","id":42,"result":{}}"#,
    ] {
        let (status, _, text) = post(&gw, "bob-token", body).await;
        assert_eq!(status, 403, "{body}: {text}");
        assert!(messages(&text)[0]["error"].is_object(), "{text}");
    }
    assert!(spy.seen().is_empty(), "{:?}", spy.seen());
    // Alice (who holds the scope) still can.
    let (status, _, _) = post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn what_the_gateway_learns_about_tools_is_per_caller() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[("MCPGATE_AUTHORIZATION_VALIDATE_ARGUMENTS", "true")],
    )
    .await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#;
    post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    // Alice listed; Bob did not: his call cannot be checked yet, hers can.
    let (_, _, text) = post(&gw, "bob-token", call).await;
    assert!(text.contains("list tools"), "{text}");
    let (_, _, text) = post(&gw, "alice-token", call).await;
    assert!(text.contains("ran tools/call"), "{text}");
    // A list_changed on Bob's stream makes Bob's knowledge stale, not Alice's.
    post(
        &gw,
        "bob-token",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    spy.set(|b| {
        b.sse = true;
        b.notifications_first = vec!["notifications/tools/list_changed".into()];
    });
    post(&gw, "bob-token", call).await;
    spy.set(|b| {
        b.sse = false;
        b.notifications_first.clear();
    });
    let (_, _, text) = post(&gw, "bob-token", call).await;
    assert!(text.contains("list tools"), "{text}");
    let (_, _, text) = post(&gw, "alice-token", call).await;
    assert!(text.contains("ran tools/call"), "{text}");
}

#[tokio::test]
async fn arguments_that_another_reader_could_read_otherwise_are_refused() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[("MCPGATE_AUTHORIZATION_VALIDATE_ARGUMENTS", "true")],
    )
    .await;
    post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    for args in [
        r#"{"message":5,"message":"hi"}"#,
        r#"{"message":"hi","Message":5}"#,
        r#"{"message":"hi","n":10.0000000000000000001}"#,
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{args}}}}}"#
        );
        let (_, _, text) = post(&gw, "alice-token", &body).await;
        assert_eq!(error_code(&text), Some(-32602), "{args}: {text}");
    }
    assert!(spy.calls("tools/call").is_empty());
}

#[tokio::test]
async fn a_blocked_address_still_serves_callers_whose_token_is_known_good() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[("MCPGATE_HTTP_UNAUTHENTICATED_PER_ADDRESS", "2/minute")],
    )
    .await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    // Alice has been served before the address got blocked; Bob has not.
    assert_eq!(post(&gw, "alice-token", body).await.0, 200);
    for t in ["bad-1", "bad-2", "bad-3"] {
        post(&gw, t, body).await;
    }
    assert_eq!(post(&gw, "bad-4", body).await.0, 429);
    assert_eq!(post(&gw, "alice-token", body).await.0, 200);
}

#[tokio::test]
async fn step_up_challenges_and_other_methods_answer_with_json_rpc_errors() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[(
            "MCPGATE_POLICY",
            r#"[{ match = ["echo"], scopes_all = ["admin"], on_deny = "challenge" }]"#,
        )],
    )
    .await;
    let (status, headers, text) = post(
        &gw,
        "alice-token",
        r#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"echo"}}"#,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    let m = &messages(&text)[0];
    assert_eq!(m["id"], "c-1", "{text}");
    assert!(
        m["error"]["message"].as_str().unwrap().contains("admin"),
        "{text}"
    );
    let r = reqwest::Client::new()
        .put(&gw.mcp)
        .bearer_auth("alice-token")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("allow"));
    assert!(messages(&r.text().await.unwrap())[0]["error"].is_object());
}

#[tokio::test]
async fn mirrored_headers_go_upstream_only_where_they_were_checked() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(&spy.url, &[]).await;
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth("alice-token")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "secret_tool")
        .header("mcp-param-x", "y")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = &spy.headers_seen()[0];
    assert!(
        !headers.iter().any(|(k, _)| k.starts_with("mcp-name")
            || k.starts_with("mcp-method")
            || k.starts_with("mcp-param")),
        "{headers:?}"
    );
}

#[tokio::test]
async fn many_bodies_arriving_at_once_are_bounded_in_all() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[
            ("MCPGATE_HTTP_MAX_BODY_BYTES", "65536"),
            ("MCPGATE_HTTP_MAX_BODY_BYTES_IN_FLIGHT", "65536"),
            ("MCPGATE_HTTP_BODY_TIMEOUT", "20s"),
        ],
    )
    .await;
    let port = gw.port;
    tokio::task::spawn_blocking(move || {
        // Two bodies of 60 KB arrive slowly: the first 40 KB of each are held …
        let head = format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer alice-token\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 60000\r\n\r\n");
        let chunk = "x".repeat(40_000);
        let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
        first.write_all(head.as_bytes()).unwrap();
        first.write_all(chunk.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
        second.write_all(head.as_bytes()).unwrap();
        second.write_all(chunk.as_bytes()).unwrap();
        // … which together with the first is more than the gateway holds: 503 at once.
        second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = vec![0u8; 2048];
        let n = second.read(&mut reply).unwrap_or(0);
        let reply = String::from_utf8_lossy(&reply[..n]).into_owned();
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(reply.to_ascii_lowercase().contains("retry-after"), "{reply}");
        drop(first);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn refused_connections_do_not_pile_up_as_open_files() {
    let spy = Spy::start(Behaviour::default()).await;
    let gw = gateway(
        &spy.url,
        &[
            ("MCPGATE_HTTP_MAX_CONNECTIONS", "4"),
            ("MCPGATE_HTTP_HEADER_TIMEOUT", "30s"),
        ],
    )
    .await;
    let (port, pid) = (gw.port, gw.pid());
    let files = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(200));
        let held: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // A flood of connections beyond the limit, none of which sends anything.
        let flood: Vec<TcpStream> = (0..300)
            .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let files = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        drop(flood);
        drop(held);
        files
    })
    .await
    .unwrap();
    // The four it serves, the refusals it answers at once (at most 64), and its own files.
    assert!(files < 4 + 64 + 64, "{files} open files");
}

#[test]
fn configuration_errors_never_print_secret_values() {
    for (var, value) in [
        (
            "MCPGATE_AUTH_STATIC_TOKENS",
            r#"[{token="STATICSECRET-5", subject="a""#,
        ),
        (
            "MCPGATE_UPSTREAM_HEADERS",
            r#"{ "X-Api-Key" = "HDRSECRET2 }"#,
        ),
        ("MCPGATE_SESSION_KEY", "KEYSECRET-not-base64"),
    ] {
        let (code, out, err) = common::run(
            &[
                "check-config",
                "--auth",
                "static",
                "--dev",
                "--upstream-url",
                "http://127.0.0.1:9/mcp",
            ],
            &[(var, value)],
        );
        assert_ne!(code, 0, "{var}");
        let secret = value
            .split('"')
            .find(|p| p.contains("SECRET"))
            .unwrap_or(value);
        assert!(
            !out.contains("SECRET") && !err.contains("SECRET"),
            "{var}: {err}"
        );
        assert!(
            err.contains(
                &var["MCPGATE_".len()..]
                    .to_ascii_lowercase()
                    .replacen('_', ".", 1)
            ) || !secret.is_empty(),
            "{err}"
        );
    }
    let dir = std::env::temp_dir().join(format!("mcpgate-secret-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[session]\nkey = \"FILESESSIONKEYSECRET\n").unwrap();
    let (code, _, err) = common::run(
        &["check-config", "--config", &path.display().to_string()],
        &[],
    );
    assert_ne!(code, 0);
    assert!(!err.contains("FILESESSIONKEYSECRET"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

// Multi-threaded: the raw exchanges block a thread while the upstream (in this process)
// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_is_one_exact_path_and_every_method_on_it_is_guarded() {
    // The endpoint is `/mcp` and, behind a path prefix, `/team-a/mcp`, spelt exactly: any other
    // spelling is another path (404, through the same Host check), never the endpoint.
    let spy = Spy::start(Behaviour::default()).await;
    let (gw, public) = Gateway::start_under(
        "/team-a",
        &["--auth", "static", "--dev", "--upstream-url", &spy.url],
        &[
            ("MCPGATE_AUTH_STATIC_TOKENS", TOKENS),
            ("MCPGATE_AUDIT_OUTPUT", "off"),
        ],
    )
    .await;
    let port = gw.port;
    let call =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let raw = |method: &str, target: &str, host: &str| {
        format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer alice-token\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{call}",
            call.len()
        )
    };
    let host = format!("127.0.0.1:{port}");
    for target in [
        "/mcp/",
        "//mcp",
        "/MCP",
        "/%6Dcp",
        "/mcp%2F",
        "/./mcp",
        "/x/../mcp",
        "/mcp/.",
        "/team-a//mcp",
        "/team-a/mcp/",
        "/team-amcp",
        "/Team-A/mcp",
        "/team-a/%6dcp",
        "/mcp;x",
    ] {
        let reply = raw_exchange(port, raw("POST", target, &host).as_bytes());
        assert!(reply.starts_with("HTTP/1.1 404"), "{target}: {reply}");
    }
    assert!(spy.seen().is_empty(), "{:?}", spy.seen());
    // Another path passes the front door too: a foreign Host is refused there.
    let reply = raw_exchange(port, raw("POST", "/mcp/", "evil.example").as_bytes());
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    // The exact spellings are the endpoint, with or without a query.
    for target in ["/mcp", "/team-a/mcp", "/mcp?x=1"] {
        let reply = raw_exchange(port, raw("POST", target, &host).as_bytes());
        assert!(reply.starts_with("HTTP/1.1 200"), "{target}: {reply}");
    }
    assert_eq!(spy.seen().len(), 3);
    // Every method on the endpoint meets the guard first; then only POST, GET and DELETE are
    // served (405 with `Allow` for the others, HEAD included).
    let http = reqwest::Client::new();
    for url in [gw.mcp.clone(), format!("{public}/mcp")] {
        for method in [
            "PUT", "PATCH", "HEAD", "OPTIONS", "GET", "DELETE", "TRACE", "FOO",
        ] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = http.request(method.clone(), &url).send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {url}");
            assert!(
                r.headers().contains_key("www-authenticate"),
                "{method} {url}"
            );
            let r = http
                .request(method.clone(), &url)
                .bearer_auth("alice-token")
                .send()
                .await
                .unwrap();
            if !matches!(method.as_str(), "GET" | "DELETE") {
                assert_eq!(r.status(), 405, "{method} {url}");
                assert_eq!(r.headers()["allow"], "GET, POST, DELETE", "{method} {url}");
            }
        }
    }
    assert_eq!(spy.seen().len(), 3);
}
