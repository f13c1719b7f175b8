#!/usr/bin/env bash
# Load benchmark for stdio upstreams: tools/call through the gateway, measured side by side in
# one run, to
#   1. an HTTP upstream (fixed-upstream, the baseline of bench/load.sh),
#   2. a stdio upstream, per-session mode (one process per session),
#   3. a stdio upstream, shared mode (one process for all sessions),
#   4. a real rmcp stdio server (stdio-upstream, the test fixture), per-session mode.
# Targets 1–3 answer with the same fixed reply (fixed-upstream, fixed-stdio-upstream), so the
# difference is the gateway's stdio path. All run with --auth none (auth cost is in load.sh).
# Then: session creation time (initialize, spawn to first answer) and memory per idle session.
# Needs wrk. Prints Markdown; see docs/performance.md.
#
#   [ROUNDS=3] bench/stdio.sh [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-6}"
CONNS="${2:-32}"
ROUNDS="${ROUNDS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mcpgate-target}"
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p mcpgate -p mcpgate-testkit --bin mcpgate --bin fixed-upstream \
  --bin fixed-stdio-upstream --bin stdio-upstream
BIN="$CARGO_TARGET_DIR/release"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

source bench/common.sh

UP_PORT=$(free_port)
"$BIN/fixed-upstream" --listen "127.0.0.1:$UP_PORT" >/dev/null & PIDS+=($!)
gateway() { # NAME PORT ARGS... -> starts a gateway, records its pid in $WORK/NAME.pid
  local name=$1 port=$2; shift 2
  "$BIN/mcpgate" serve --listen "127.0.0.1:$port" --auth none "$@" 2>"$WORK/$name.log" & PIDS+=($!)
  echo $! >"$WORK/$name.pid"
  wait_http "http://127.0.0.1:$port/healthz"
}
HTTP_PORT=$(free_port); PER_PORT=$(free_port); SHARED_PORT=$(free_port); RMCP_PORT=$(free_port)
gateway http "$HTTP_PORT" --upstream-url "http://127.0.0.1:$UP_PORT/mcp"
MCPGATE_UPSTREAM_MAX_CHILDREN=64 gateway per "$PER_PORT" --upstream-cmd "$BIN/fixed-stdio-upstream"
MCPGATE_UPSTREAM_SESSION_MODE=shared gateway shared "$SHARED_PORT" --upstream-cmd "$BIN/fixed-stdio-upstream"
MCPGATE_UPSTREAM_MAX_CHILDREN=64 gateway rmcp "$RMCP_PORT" --upstream-cmd "$BIN/stdio-upstream"

INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'
H=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
session() { # PORT -> prints a new session id
  curl -s -D - -o /dev/null "${H[@]}" "http://127.0.0.1:$1/mcp" -d "$INIT" \
    | awk 'tolower($1)=="mcp-session-id:" {print $2}' | tr -d '\r'
}
# One session per wrk thread (2 threads).
sids() { echo "$(session "$1"),$(session "$1")"; }
HTTP_SIDS=$(sids "$HTTP_PORT"); PER_SIDS=$(sids "$PER_PORT"); SHARED_SIDS=$(sids "$SHARED_PORT"); RMCP_SIDS=$(sids "$RMCP_PORT")

cat > "$WORK/call.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"ok"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
local sids = {}
for s in string.gmatch(os.getenv("SIDS") or "", "[^,]+") do table.insert(sids, s) end
local n = 0
function setup(thread)
  n = n + 1
  thread:set("sid", sids[((n - 1) % #sids) + 1])
end
function init(args)
  if sid ~= nil then wrk.headers["Mcp-Session-Id"] = sid end
  req = wrk.format()
end
function request() return req end
LUA

children_ticks() { local t=0; for c in $(pgrep -P "$1"); do t=$((t + $(cpu_ticks "$c"))); done; echo $t; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
TICK=$(getconf CLK_TCK)

run() { # NAME PORT SIDS
  local name=$1 port=$2 sids=$3 pid
  pid=$(cat "$WORK/$name.pid")
  local url="http://127.0.0.1:$port/mcp"
  SIDS="$sids" wrk -t2 -c4 -d1s -s "$WORK/call.lua" "$url" >/dev/null
  local before cbefore after cafter
  before=$(cpu_ticks "$pid"); cbefore=$(children_ticks "$pid")
  SIDS="$sids" wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/call.lua" "$url" >"$WORK/tput"
  after=$(cpu_ticks "$pid"); cafter=$(children_ticks "$pid")
  SIDS="$sids" wrk -t1 -c1 -d3s --latency -s "$WORK/call.lua" "$url" >"$WORK/c1"
  local reqs errs
  reqs=$(awk '/requests in/ {print $1}' "$WORK/tput")
  errs=$(awk '/Non-2xx/ {print $5}' "$WORK/tput"); errs=${errs:-0}
  printf '%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$name" \
    "$(awk '/Requests\/sec/ {print $2}' "$WORK/tput")" \
    "$(awk '$1=="50%" {print $2}' "$WORK/tput")" "$(awk '$1=="99%" {print $2}' "$WORK/tput")" \
    "$(awk '$1=="50%" {print $2}' "$WORK/c1")" "$(awk '$1=="99%" {print $2}' "$WORK/c1")" \
    "$(python3 -c "print(($after-$before)/$TICK/$reqs*1e6)")" \
    "$(python3 -c "print(($cafter-$cbefore)/$TICK/$reqs*1e6)")" "$errs" >>"$WORK/rows"
}

echo "Connections: $CONNS over 2 sessions, ${DURATION}s per measurement, $ROUNDS interleaved rounds (medians shown), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for round in $(seq "$ROUNDS"); do
  run http "$HTTP_PORT" "$HTTP_SIDS"
  run per "$PER_PORT" "$PER_SIDS"
  run shared "$SHARED_PORT" "$SHARED_SIDS"
  run rmcp "$RMCP_PORT" "$RMCP_SIDS"
done
echo
python3 - "$WORK/rows" <<'PY'
import statistics, sys
def us(v):
    for unit, f in (("us", 1.0), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
names = {"http": "HTTP upstream (fixed reply)", "per": "stdio, per-session (fixed reply)",
         "shared": "stdio, shared (fixed reply)", "rmcp": "stdio, per-session (rmcp server)"}
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, c50, c99, cpu, ccpu, errs = line.strip().split("|")
    rows.setdefault(name, []).append((float(rps), us(p50), us(p99), us(c50), us(c99), float(cpu), float(ccpu), float(errs)))
med = {n: [statistics.median(col) for col in zip(*v)] for n, v in rows.items()}
print("| gateway → | req/s | p50 | p99 | p50 @c=1 | p99 @c=1 | gateway CPU µs/req | child CPU µs/req | non-2xx |")
print("|---|---|---|---|---|---|---|---|---|")
for name, (rps, p50, p99, c50, c99, cpu, ccpu, errs) in med.items():
    child = f"{ccpu:.1f}" if name != "http" else "–"
    print(f"| {names[name]} | {rps:.0f} | {p50:.0f} µs | {p99:.0f} µs | {c50:.0f} µs | {c99:.0f} µs | {cpu:.1f} | {child} | {errs:.0f} |")
h, p, s = med["http"], med["per"], med["shared"]
print()
print(f"- stdio ÷ HTTP throughput: per-session {p[0] / h[0] * 100:.0f}%, shared {s[0] / h[0] * 100:.0f}%")
print(f"- p50 at concurrency 1: HTTP {h[3]:.0f} µs, stdio per-session {p[3]:.0f} µs, shared {s[3]:.0f} µs")
PY

# Session creation: initialize, from spawn to the first answer, 20 times each.
create() { # PORT -> median ms
  local port=$1 t
  for _ in $(seq 20); do
    curl -s -o /dev/null -w '%{time_total}\n' "${H[@]}" "http://127.0.0.1:$port/mcp" -d "$INIT"
  done | python3 -c 'import sys, statistics; v=[float(x)*1000 for x in sys.stdin]; print(f"{statistics.median(v):.1f} ms (p90 {sorted(v)[17]:.1f} ms)")'
}
echo
echo "- session creation (initialize through a new process, median of 20): fixed stdio program $(create "$PER_PORT"), rmcp stdio server $(create "$RMCP_PORT")"

# Memory per idle session: 20 more sessions of the rmcp server.
RMCP_PID=$(cat "$WORK/rmcp.pid")
kids_rss() { local t=0; for c in $(pgrep -P "$1"); do t=$((t + $(rss_kib "$c"))); done; echo $t; }
G0=$(rss_kib "$RMCP_PID"); K0=$(kids_rss "$RMCP_PID"); N0=$(pgrep -P "$RMCP_PID" | wc -l)
for _ in $(seq 20); do session "$RMCP_PORT" >/dev/null; done
sleep 0.5
G1=$(rss_kib "$RMCP_PID"); K1=$(kids_rss "$RMCP_PID"); N1=$(pgrep -P "$RMCP_PID" | wc -l)
python3 -c "n=$N1-$N0; print(f'- memory per idle session ({n} sessions of the rmcp server): gateway {($G1-$G0)/n:.0f} KiB, the session\'s process {($K1-$K0)/n/1024:.1f} MiB resident')"
