#!/usr/bin/env bash
# Load benchmark of `--auth issuer`, side by side in one run:
#   1. the gateway with --auth jwt and a static ES256 key (the token minted by the test kit),
#   2. the gateway with --auth issuer, calling with a token it issued (ES256, client
#      credentials), verified in process through the issuer's key ring and revocation check,
#   3. the same while a login flood runs: another load generator posts the sign-in form
#      as fast as it can, each time with a random user name and a wrong password.
# Same upstream (fixed-upstream), audit log off, rate limits off, tools/call as in
# bench/load.sh. Needs wrk, curl, jq. Prints a Markdown table; see docs/performance.md.
#
#   [ROUNDS=3] bench/issuer-load.sh [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-6}"
CONNS="${2:-32}"
ROUNDS="${ROUNDS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mcpgate-target}"
for tool in wrk curl jq; do command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }; done

cargo build --release -q -p mcpgate -p mcpgate-testkit --bin mcpgate --bin fixed-upstream --bin mint-token
BIN="$CARGO_TARGET_DIR/release"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
source bench/common.sh

UP_PORT=$(free_port); JWT_PORT=$(free_port); ISS_PORT=$(free_port)
export MCPGATE_AUDIT_OUTPUT=off MCPGATE_RATE_LIMIT='[]'
"$BIN/fixed-upstream" --listen "127.0.0.1:$UP_PORT" >/dev/null & PIDS+=($!)
UPSTREAM="http://127.0.0.1:$UP_PORT/mcp"
"$BIN/mcpgate" serve --listen "127.0.0.1:$JWT_PORT" --auth jwt --issuer-url https://idp.example \
  --jwt-public-key crates/testkit/keys/ec1.pub.pem --upstream-url "$UPSTREAM" 2>"$WORK/jwt.log" & PIDS+=($!); JWT_PID=$!
ISS="http://127.0.0.1:$ISS_PORT"
"$BIN/mcpgate" serve --listen "127.0.0.1:$ISS_PORT" --auth issuer --data-dir "$WORK/data" \
  --required-scopes mcp --upstream-url "$UPSTREAM" 2>"$WORK/iss.log" & PIDS+=($!); ISS_PID=$!
wait_http "http://127.0.0.1:$JWT_PORT/healthz"; wait_http "$ISS/healthz"
echo "a-long-enough-password-for-alice" | "$BIN/mcpgate" users add alice --password-stdin --data-dir "$WORK/data" >/dev/null

JWT_TOKEN=$(MINT_ALG=ES256 "$BIN/mint-token" https://idp.example "http://127.0.0.1:$JWT_PORT/mcp")
# A machine client, admitted by the operator (registrations cannot take client_credentials).
MACHINE_SECRET=$("$BIN/mcpgate" clients add --client-id bench --name bench --auth-method client_secret_basic \
  --grant-type client_credentials --data-dir "$WORK/data" | sed -n 's/^client_secret: //p')
ISS_TOKEN=$(curl -s "$ISS/token" -u "bench:$MACHINE_SECRET" \
  -d grant_type=client_credentials -d scope=mcp --data-urlencode "resource=$ISS/mcp" | jq -r .access_token)

# The sign-in form of a real pending authorization request, posted again and again.
PUBLIC=$(curl -s "$ISS/register" -H 'content-type: application/json' \
  -d '{"client_name":"flood","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}' | jq -r .client_id)
curl -s -c "$WORK/jar" -o "$WORK/sign-in.html" -G "$ISS/authorize" -d response_type=code -d "client_id=$PUBLIC" \
  --data-urlencode redirect_uri=http://127.0.0.1:5000/cb -d code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM \
  -d code_challenge_method=S256 -d state=s --data-urlencode "resource=$ISS/mcp" -d scope=mcp
field() { sed -n "s/.*name=\"$1\" value=\"\([^\"]*\)\".*/\1/p" "$WORK/sign-in.html" | head -1; }
CSRF=$(field csrf); REQUEST=$(field request)
COOKIE=$(awk '!/^#/ && NF >= 7 {printf "%s=%s; ", $6, $7}' "$WORK/jar")
[ -n "$CSRF" ] && [ -n "$REQUEST" ] || { echo "no sign-in form" >&2; exit 1; }
cat > "$WORK/flood.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "$COOKIE"
request = function()
  local body = "csrf=$CSRF&request=$REQUEST&username=user" .. math.random(1, 1000000000) .. "&password=wrong" .. math.random()
  return wrk.format("POST", "/authorize/sign-in", nil, body)
end
LUA
write_call_lua "$WORK/call.lua"
# Both tokens must pass before anything is measured.
for pair in "$JWT_PORT:$JWT_TOKEN" "$ISS_PORT:$ISS_TOKEN"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${pair%%:*}/mcp" -H "authorization: Bearer ${pair#*:}" \
    -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2025-11-25' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}')
  [ "$code" = 200 ] || { echo "token refused on port ${pair%%:*}: $code" >&2; exit 1; }
done

TICK=$(getconf CLK_TCK)
run() { # NAME PORT PID TOKEN [flood]
  local name=$1 port=$2 pid=$3 token=$4 flood=${5:-} fpid=""
  TOKEN="$token" wrk -t1 -c4 -d1s -s "$WORK/call.lua" "http://127.0.0.1:$port/mcp" >/dev/null
  if [ -n "$flood" ]; then
    wrk -t1 -c16 -d"$((DURATION + 2))s" -s "$WORK/flood.lua" "$ISS" >"$WORK/flood.out" & fpid=$!
    sleep 1
  fi
  local before after
  before=$(cpu_ticks "$pid")
  TOKEN="$token" wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/call.lua" "http://127.0.0.1:$port/mcp" >"$WORK/tput"
  after=$(cpu_ticks "$pid")
  local flood_rps="-"
  if [ -n "$fpid" ]; then wait "$fpid"; flood_rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/flood.out"); fi
  printf '%s|%s|%s|%s|%s|%s\n' "$name" "$(awk '/Requests\/sec/ {print $2}' "$WORK/tput")" \
    "$(awk '$1=="50%" {print $2}' "$WORK/tput")" "$(awk '$1=="99%" {print $2}' "$WORK/tput")" \
    "$(python3 -c "print(($after-$before)/$TICK/$(awk '/requests in/ {print $1}' "$WORK/tput")*1e6)")" "$flood_rps" >>"$WORK/rows"
}
echo "Connections: $CONNS, ${DURATION}s per measurement, $ROUNDS interleaved rounds (medians shown), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for round in $(seq "$ROUNDS"); do
  run "auth jwt (static ES256 key)" "$JWT_PORT" "$JWT_PID" "$JWT_TOKEN"
  run "auth issuer (its own ES256 token)" "$ISS_PORT" "$ISS_PID" "$ISS_TOKEN"
  run "auth issuer, login flood running" "$ISS_PORT" "$ISS_PID" "$ISS_TOKEN" flood
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
    name, rps, p50, p99, cpu, flood = line.strip().split("|")
    rows.setdefault(name, []).append((float(rps), us(p50), us(p99), float(cpu), float(flood) if flood != "-" else 0.0))
med = {n: [statistics.median(c) for c in zip(*v)] for n, v in rows.items()}
print("| target | MCP req/s | p50 | p99 | gateway CPU µs/req | sign-in posts/s |")
print("|---|---|---|---|---|---|")
for n, (rps, p50, p99, cpu, flood) in med.items():
    print(f"| {n} | {rps:.0f} | {p50:.0f} µs | {p99:.0f} µs | {cpu:.1f} | {flood:.0f} |" if flood else f"| {n} | {rps:.0f} | {p50:.0f} µs | {p99:.0f} µs | {cpu:.1f} | – |")
jwt, iss, flood = (med[k] for k in ("auth jwt (static ES256 key)", "auth issuer (its own ES256 token)", "auth issuer, login flood running"))
print()
print(f"- issuer / jwt throughput: {iss[0] / jwt[0] * 100:.0f}% (target ≥ 95 %)")
print(f"- with a login flood / without: {flood[0] / iss[0] * 100:.0f}% (target ≥ 80 %)")
PY
grep -c "sign-in" "$WORK/iss.log" >/dev/null 2>&1 || true
