//! The audit log's cost on the request path: building one record and writing it (formatted
//! into the shared batch; the writer thread does the I/O).
//!
//! ```sh
//! cargo bench -p mcpgate --bench audit
//! ```

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpgate::audit::{Audit, Output};
use mcpgate_guard::policy::{Decision, Verdict};
use mcpgate_guard::{ClientId, Principal, Scope, Subject};

fn bench(c: &mut Criterion) {
    let who = Arc::new(
        Principal::builder(Subject::new("alice@example.com"))
            .client_id(ClientId::new("claude-desktop"))
            .scopes([Scope::new("mcp"), Scope::new("read")])
            .build(),
    );
    let decision = Decision {
        verdict: Verdict::Allow,
        rule: "read-only tools for readers".into(),
    };
    let audit = Audit::start(Output::File("/dev/null".into()), false).unwrap();
    c.bench_function("audit record: build, decide, answer, write", |b| {
        b.iter(|| {
            let mut r = audit.record(&who, Some("mcpgate-session-3f9a1c0e2b7d4a55"), "tools/call");
            r.target = Some("get_user".into());
            r.decide(&decision);
            r.forwarded();
            r.answered(200);
            audit.write(black_box(r));
        })
    });
    c.bench_function("audit record: line formatting only", |b| {
        let mut r = audit.record(&who, None, "tools/call");
        r.target = Some("get_user".into());
        r.decide(&decision);
        r.answered(200);
        let mut line = Vec::with_capacity(512);
        b.iter(|| {
            line.clear();
            r.write_line(&mut line);
            black_box(&line);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
