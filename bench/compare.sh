#!/usr/bin/env bash
# Two gateway binaries side by side: each one's CPU per forwarded tools/call (--auth jwt, audit
# off, rate limits off) against the upstream's CPU for the same requests, measured in
# interleaved rounds in one run, so that a change can be judged on this shared, noisy machine.
#
#   [ROUNDS=6] [SECONDS_PER_RUN=5] bench/compare.sh OLD_MCPGATE NEW_MCPGATE [ENV=VALUE ...]
#
# ENV=VALUE pairs are set for the gateways (TOKIO_WORKER_THREADS=1, say). Needs wrk; the
# upstream and mint-token come from the release build (cargo build --release -p mcpgate-testkit).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2
shift 2
ROUNDS="${ROUNDS:-6}"
SECS="${SECONDS_PER_RUN:-5}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mcpgate-target}"
cargo build --release -q -p mcpgate-testkit --bin fixed-upstream --bin mint-token
BIN="$CARGO_TARGET_DIR/release"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
source bench/common.sh
TICK=$(getconf CLK_TCK)
ISS="https://idp.example"
UP_PORT=$(free_port)
"$BIN/fixed-upstream" --listen "127.0.0.1:$UP_PORT" >/dev/null & PIDS+=($!); UP_PID=$!
UPSTREAM="http://127.0.0.1:$UP_PORT/mcp"
OLD_PORT=$(free_port); NEW_PORT=$(free_port)
env MCPGATE_AUDIT_OUTPUT=off MCPGATE_RATE_LIMIT='[]' "$@" "$OLD" serve --listen "127.0.0.1:$OLD_PORT" --auth jwt \
  --issuer-url "$ISS" --jwt-public-key crates/testkit/keys/rsa1.pub.pem --upstream-url "$UPSTREAM" 2>/dev/null & PIDS+=($!); OLD_PID=$!
env MCPGATE_AUDIT_OUTPUT=off MCPGATE_RATE_LIMIT='[]' "$@" "$NEW" serve --listen "127.0.0.1:$NEW_PORT" --auth jwt \
  --issuer-url "$ISS" --jwt-public-key crates/testkit/keys/rsa1.pub.pem --upstream-url "$UPSTREAM" 2>/dev/null & PIDS+=($!); NEW_PID=$!
wait_http "http://127.0.0.1:$OLD_PORT/healthz"; wait_http "http://127.0.0.1:$NEW_PORT/healthz"
write_call_lua "$WORK/call.lua"
# one NAME PORT PID -> "name req/s cpu_us upstream_cpu_us"
one() {
  local name=$1 port=$2 pid=$3 token before after ub ua reqs
  token=$("$BIN/mint-token" "$ISS" "http://127.0.0.1:$port/mcp")
  TOKEN="$token" wrk -t1 -c4 -d1s -s "$WORK/call.lua" "http://127.0.0.1:$port/mcp" >/dev/null
  before=$(cpu_ticks "$pid"); ub=$(cpu_ticks "$UP_PID")
  TOKEN="$token" wrk -t2 -c32 -d"${SECS}s" -s "$WORK/call.lua" "http://127.0.0.1:$port/mcp" >"$WORK/out"
  after=$(cpu_ticks "$pid"); ua=$(cpu_ticks "$UP_PID")
  reqs=$(awk '/requests in/ {print $1}' "$WORK/out")
  echo "$name $(awk '/Requests\/sec/ {print $2}' "$WORK/out") $(python3 -c "print(($after-$before)/$TICK/$reqs*1e6, ($ua-$ub)/$TICK/$reqs*1e6)")" >>"$WORK/rows"
}
for _ in $(seq "$ROUNDS"); do
  one old "$OLD_PORT" "$OLD_PID"
  one new "$NEW_PORT" "$NEW_PID"
done
python3 - "$WORK/rows" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, cpu, up = line.split()
    rows.setdefault(name, []).append((float(rps), float(cpu), float(up)))
for name, v in rows.items():
    ratios = sorted(c / u for _, c, u in v)
    print(f"{name}: req/s {statistics.median(r for r, _, _ in v):.0f}, CPU {statistics.median(c for _, c, _ in v):.1f} µs/req, "
          f"upstream {statistics.median(u for _, _, u in v):.1f} µs/req, ratio median {statistics.median(ratios):.2f}x "
          f"(range {ratios[0]:.2f}–{ratios[-1]:.2f}x)")
PY
