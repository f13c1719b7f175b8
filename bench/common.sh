# Helpers the benchmark scripts share; sourced, not run.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until URL answers HTTP at all (any status), up to SECONDS (default 10); else exits.
wait_http() {
  local tries=$(( ${2:-10} * 20 ))
  for _ in $(seq "$tries"); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "no answer from $1" >&2; exit 1
}

# User + system CPU ticks of process PID so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Writes the wrk script of a legacy-revision tools/call (110 bytes of JSON) to FILE; it sends
# `Authorization: Bearer $TOKEN` when TOKEN is set and not empty.
write_call_lua() {
  cat > "$1" <<'LUA'
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
if os.getenv("TOKEN") ~= nil and os.getenv("TOKEN") ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
end
LUA
}
