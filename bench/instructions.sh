#!/usr/bin/env bash
# Instructions per forwarded tools/call, counted by callgrind (which counts instructions, not
# time, so the figure does not depend on what else the machine is doing).
#
#   [BIN=DIR] bench/instructions.sh [SECONDS] [-- extra mcpgate serve arguments]
#
# The gateway's environment passes through (MCPGATE_POLICY, say); the audit log is off unless
# MCPGATE_AUDIT_OUTPUT is set.
#
# Runs, under `valgrind --tool=callgrind`:
#   1. the gateway (--auth jwt, RS256 key, audit off, rate limits off) with no request at all,
#      to count what starting and stopping cost;
#   2. the same gateway with wrk at 8 connections for SECONDS (default 10), the same 800-byte
#      token on every call (as bench/load.sh sends);
#   3. the bare upstream (fixed-upstream) in the same two ways.
# and prints each one's instructions per request, the start-up subtracted, and their ratio.
# The callgrind files are left in $OUT (default /tmp/mcpgate-callgrind) for callgrind_annotate.
# Needs wrk and valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_LOADED="${1:-10}"
shift || true
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mcpgate-target}"
OUT="${OUT:-/tmp/mcpgate-callgrind}"
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is required" >&2; exit 1; }
# BIN=DIR uses binaries already built there (mcpgate, fixed-upstream, mint-token).
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p mcpgate -p mcpgate-testkit --bin mcpgate --bin fixed-upstream --bin mint-token
  BIN="$CARGO_TARGET_DIR/release"
fi
mkdir -p "$OUT"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
source bench/common.sh
ISS="https://idp.example"
export MCPGATE_AUDIT_OUTPUT="${MCPGATE_AUDIT_OUTPUT:-off}" MCPGATE_RATE_LIMIT='[]'
write_call_lua "$WORK/call.lua"
total() { awk '/^summary:/ {print $2}' "$1"; }

# measure NAME LOADED(0|1) -> prints "instructions requests"
UP_PORT=$(free_port)
"$BIN/fixed-upstream" --listen "127.0.0.1:$UP_PORT" >/dev/null & PIDS+=($!)
UPSTREAM="http://127.0.0.1:$UP_PORT/mcp"
wait_http "$UPSTREAM"

gateway() {
  local name=$1 loaded=$2 port pid reqs=0
  port=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" \
    "$BIN/mcpgate" serve --listen "127.0.0.1:$port" --auth jwt --issuer-url "$ISS" \
    --jwt-public-key crates/testkit/keys/rsa1.pub.pem --upstream-url "$UPSTREAM" "${EXTRA[@]}" \
    2>"$WORK/$name.log" &
  pid=$!
  wait_http "http://127.0.0.1:$port/healthz" 60
  if [ "$loaded" = 1 ]; then
    TOKEN=$("$BIN/mint-token" "$ISS" "http://127.0.0.1:$port/mcp") \
      wrk -t1 -c8 -d"${SECONDS_LOADED}s" -s "$WORK/call.lua" "http://127.0.0.1:$port/mcp" >"$WORK/$name.wrk"
    reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
  fi
  kill -TERM "$pid"; wait "$pid" || true
  echo "$(total "$OUT/$name.out") $reqs"
}

upstream() {
  local name=$1 loaded=$2 port pid reqs=0
  port=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" \
    "$BIN/fixed-upstream" --listen "127.0.0.1:$port" >/dev/null 2>"$WORK/$name.log" &
  pid=$!
  wait_http "http://127.0.0.1:$port/mcp" 60
  if [ "$loaded" = 1 ]; then
    wrk -t1 -c8 -d"${SECONDS_LOADED}s" -s "$WORK/call.lua" "http://127.0.0.1:$port/mcp" >"$WORK/$name.wrk"
    reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
  fi
  kill -TERM "$pid"; wait "$pid" || true
  echo "$(total "$OUT/$name.out") $reqs"
}

read -r g0 _ < <(gateway gateway-idle 0)
read -r g1 greqs < <(gateway gateway 1)
read -r u0 _ < <(upstream upstream-idle 0)
read -r u1 ureqs < <(upstream upstream 1)
python3 - "$g0" "$g1" "$greqs" "$u0" "$u1" "$ureqs" <<'PY'
import sys
g0, g1, gr, u0, u1, ur = map(int, sys.argv[1:])
g = (g1 - g0) / gr
u = (u1 - u0) / ur
print(f"gateway (auth jwt):            {g:,.0f} instructions per tools/call ({gr} calls)")
print(f"bare upstream:                 {u:,.0f} instructions per request ({ur} requests)")
print(f"ratio: {g / u:.2f}x (user space only; the kernel's share is about 2x by construction)")
PY
echo "callgrind files: $OUT/gateway.out, $OUT/upstream.out (callgrind_annotate --inclusive=yes ...)"
