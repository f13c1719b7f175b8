#!/usr/bin/env bash
# Load benchmark: tools/call through the gateway, measured side by side in one run against
#   1. the upstream directly,
#   2. the gateway with --auth none,
#   3. the gateway with --auth jwt (RS256, the same token on every request, as a client sends),
#      audit log off,
#   4. the same with the audit log on and written to stdout (the default configuration; stdout
#      goes to a file),
#   5. the same with an authorization policy (20 rules: globs, annotations, scopes, one CEL
#      expression that runs) and the audit log written to a file.
# Rate limits are off in every gateway (rate_limit = []): one token sends tens of thousands of
# calls a second here, far beyond the default allowance.
# The upstream is trivial (a fixed JSON-RPC reply) so that the gateway's own cost shows.
# Needs wrk (Debian package `wrk`). Prints a Markdown table; see docs/performance.md.
#
#   [ROUNDS=3] bench/load.sh [DURATION_SECONDS] [CONNECTIONS]
# Each target is measured ROUNDS times, interleaved, and the medians are reported, because this
# machine is shared and noisy: compare the ratios, not the absolute figures.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-6}"
CONNS="${2:-32}"
ROUNDS="${ROUNDS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mcpgate-target}"
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p mcpgate -p mcpgate-testkit --bin mcpgate --bin fixed-upstream --bin mint-token
BIN="$CARGO_TARGET_DIR/release"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

source bench/common.sh

UP_PORT=$(free_port); NONE_PORT=$(free_port); JWT_PORT=$(free_port); POL_PORT=$(free_port); AUD_PORT=$(free_port)
export MCPGATE_AUDIT_OUTPUT=off MCPGATE_RATE_LIMIT='[]' 
"$BIN/fixed-upstream" --listen "127.0.0.1:$UP_PORT" >/dev/null & PIDS+=($!); UP_PID=$!
UPSTREAM="http://127.0.0.1:$UP_PORT/mcp"
ISS="https://idp.example"
"$BIN/mcpgate" serve --listen "127.0.0.1:$NONE_PORT" --auth none --upstream-url "$UPSTREAM" 2>"$WORK/none.log" & PIDS+=($!); NONE_PID=$!
"$BIN/mcpgate" serve --listen "127.0.0.1:$JWT_PORT" --auth jwt --issuer-url "$ISS" \
  --jwt-public-key crates/testkit/keys/rsa1.pub.pem --upstream-url "$UPSTREAM" 2>"$WORK/jwt.log" & PIDS+=($!); JWT_PID=$!
POLICY='['
for i in $(seq 1 12); do POLICY+="{ name = \"svc$i\", match = [\"svc${i}_*\"], scopes_all = [\"scope$i\"] },"; done
for i in $(seq 1 6); do POLICY+="{ name = \"ann$i\", match = [\"tool${i}*\"], annotations = { destructiveHint = true }, scopes_all = [\"write\"] },"; done
POLICY+="{ name = \"deny\", effect = \"deny\", match = [\"drop_*\"] },"
POLICY+="{ name = \"echo\", match = [\"echo\"], when = \"subject != 'mallory' && method == 'tools/call'\" }]"
MCPGATE_AUDIT_OUTPUT=stdout "$BIN/mcpgate" serve --listen "127.0.0.1:$AUD_PORT" --auth jwt --issuer-url "$ISS" \
  --jwt-public-key crates/testkit/keys/rsa1.pub.pem --upstream-url "$UPSTREAM" >"$WORK/audit-stdout.jsonl" 2>"$WORK/aud.log" & PIDS+=($!); AUD_PID=$!
MCPGATE_POLICY="$POLICY" MCPGATE_AUDIT_OUTPUT="$WORK/audit.jsonl" "$BIN/mcpgate" serve --listen "127.0.0.1:$POL_PORT" --auth jwt --issuer-url "$ISS" \
  --jwt-public-key crates/testkit/keys/rsa1.pub.pem --upstream-url "$UPSTREAM" 2>"$WORK/pol.log" & PIDS+=($!); POL_PID=$!
wait_http "http://127.0.0.1:$NONE_PORT/healthz"; wait_http "http://127.0.0.1:$JWT_PORT/healthz"; wait_http "http://127.0.0.1:$POL_PORT/healthz"; wait_http "http://127.0.0.1:$AUD_PORT/healthz"
TOKEN=$("$BIN/mint-token" "$ISS" "http://127.0.0.1:$JWT_PORT/mcp")
AUD_TOKEN=$("$BIN/mint-token" "$ISS" "http://127.0.0.1:$AUD_PORT/mcp")
POL_TOKEN=$("$BIN/mint-token" "$ISS" "http://127.0.0.1:$POL_PORT/mcp")

write_call_lua "$WORK/call.lua"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
TICK=$(getconf CLK_TCK)

# run NAME URL PID TOKEN -> one raw line in $WORK/rows
run() {
  local name=$1 url=$2 pid=$3 token=$4
  TOKEN="$token" wrk -t1 -c4 -d1s -s "$WORK/call.lua" "$url" >/dev/null   # warm-up
  local before after up_before up_after
  before=$(cpu_ticks "$pid"); up_before=$(cpu_ticks "$UP_PID")
  TOKEN="$token" wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/call.lua" "$url" >"$WORK/tput"
  after=$(cpu_ticks "$pid"); up_after=$(cpu_ticks "$UP_PID")
  TOKEN="$token" wrk -t1 -c1 -d3s --latency -s "$WORK/call.lua" "$url" >"$WORK/c1"
  local reqs
  reqs=$(awk '/requests in/ {print $1}' "$WORK/tput")
  printf '%s|%s|%s|%s|%s|%s|%s|%s\n' "$name" \
    "$(awk '/Requests\/sec/ {print $2}' "$WORK/tput")" \
    "$(awk '$1=="50%" {print $2}' "$WORK/tput")" "$(awk '$1=="99%" {print $2}' "$WORK/tput")" \
    "$(awk '$1=="50%" {print $2}' "$WORK/c1")" "$(awk '$1=="99%" {print $2}' "$WORK/c1")" \
    "$(python3 -c "print(($after-$before)/$TICK/$reqs*1e6)")" \
    "$(python3 -c "print(($up_after-$up_before)/$TICK/$reqs*1e6)")" >>"$WORK/rows"
}

NONE_IDLE=$(rss_kib "$NONE_PID"); JWT_IDLE=$(rss_kib "$JWT_PID")
echo "Connections: $CONNS, ${DURATION}s per measurement, $ROUNDS interleaved rounds (medians shown), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for round in $(seq "$ROUNDS"); do
  run "upstream direct" "$UPSTREAM" "$UP_PID" ""
  run "gateway, auth none" "http://127.0.0.1:$NONE_PORT/mcp" "$NONE_PID" ""
  run "gateway, auth jwt" "http://127.0.0.1:$JWT_PORT/mcp" "$JWT_PID" "$TOKEN"
  run "gateway, auth jwt + audit to stdout (default)" "http://127.0.0.1:$AUD_PORT/mcp" "$AUD_PID" "$AUD_TOKEN"
  run "gateway, auth jwt + policy + audit" "http://127.0.0.1:$POL_PORT/mcp" "$POL_PID" "$POL_TOKEN"
done
echo
python3 - "$WORK/rows" <<'PY'
import statistics, sys
def us(v):
    for unit, f in (("us", 1.0), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, c50, c99, cpu, up_cpu = line.strip().split("|")
    rows.setdefault(name, []).append((float(rps), us(p50), us(p99), us(c50), us(c99), float(cpu), float(up_cpu)))
med = {n: [statistics.median(col) for col in zip(*v)] for n, v in rows.items()}
print("| target | req/s | p50 | p99 | p50 @c=1 | p99 @c=1 | process CPU µs/req | upstream CPU µs/req, same requests |")
print("|---|---|---|---|---|---|---|---|")
for name, (rps, p50, p99, c50, c99, cpu, up_cpu) in med.items():
    print(f"| {name} | {rps:.0f} | {p50:.0f} µs | {p99:.0f} µs | {c50:.0f} µs | {c99:.0f} µs | {cpu:.1f} | {up_cpu:.1f} |")
up, none, jwt = med["upstream direct"], med["gateway, auth none"], med["gateway, auth jwt"]
print()
print(f"- auth jwt / auth none throughput: {jwt[0] / none[0] * 100:.0f}%")
pol = med["gateway, auth jwt + policy + audit"]
aud = med["gateway, auth jwt + audit to stdout (default)"]
print(f"- audit to stdout (default) / audit off, auth jwt: throughput {aud[0] / jwt[0] * 100:.0f}% (target ≥ 95 %); CPU per request {aud[5]:.1f} vs {jwt[5]:.1f} µs")
print(f"- policy + audit to a file / off (auth jwt): throughput {pol[0] / jwt[0] * 100:.0f}% (target ≥ 90 %); CPU per request {pol[5]:.1f} vs {jwt[5]:.1f} µs; p50 at c=1 {pol[3]:.0f} vs {jwt[3]:.0f} µs")
print(f"- gateway CPU per forwarded tools/call, auth jwt, audit off, against the upstream serving the same requests at the same moment: {jwt[5]:.1f} µs = {jwt[5] / jwt[6]:.2f}× the upstream's {jwt[6]:.1f} µs (target ≤ 2.5×)")
print(f"- the same against the upstream driven flat out by wrk (a higher request rate, so fewer wake-ups per request): {jwt[5] / up[5]:.2f}× its {up[5]:.1f} µs at {up[0]:.0f} req/s")
print(f"- added p50 latency at concurrency 1: auth none {none[3] - up[3]:.0f} µs, auth jwt {jwt[3] - up[3]:.0f} µs")
PY
echo "- gateway RSS: idle $((NONE_IDLE / 1024)) MiB (none) / $((JWT_IDLE / 1024)) MiB (jwt); after load $(( $(rss_kib "$NONE_PID") / 1024 )) MiB / $(( $(rss_kib "$JWT_PID") / 1024 )) MiB"
