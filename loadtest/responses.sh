#!/usr/bin/env bash
# The Responses API beside chat, through the gateway (release build) and the mock: the same
# question as loadtest/body-json.json asked as chat and as a Responses request (stored and with
# `store: false`), JSON and streamed. Prints requests/s, p50 and the gateway's mean own time per
# request (tollgate_overhead_seconds) for each, ROUNDS times, alternating.
#
#   cargo build --release && bash loadtest/responses.sh
#   CONNECTIONS=32 DURATION=15 ROUNDS=3 bash loadtest/responses.sh
#
# Needs wrk and python3. Loopback only; everything it starts is stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release/tollgate}
CONNECTIONS=${CONNECTIONS:-16}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-2}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MP=$(port); GP=$(port); AP=$(port)

python3 - "$HERE/body-json.json" "$WORK" <<'PY'
import json, sys
chat = json.load(open(sys.argv[1])); out = sys.argv[2]
sys_prompt, question = chat["messages"][0]["content"], chat["messages"][1]["content"]
resp = {"model": chat["model"], "instructions": sys_prompt, "input": question,
        "max_output_tokens": chat["max_tokens"], "temperature": chat["temperature"], "user": chat["user"]}
bodies = {"chat": chat, "chat-stream": dict(chat, stream=True, stream_options={"include_usage": True}),
          "resp": resp, "resp-nostore": dict(resp, store=False), "resp-stream": dict(resp, stream=True)}
for name, b in bodies.items():
    json.dump(b, open(f"{out}/{name}.json", "w"))
PY
cat >"$WORK/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"; wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
LUA
cat >"$WORK/gw.yaml" <<YAML
server: { listen: "127.0.0.1:$GP", admin_listen: "127.0.0.1:$AP", threads: 1, shutdown_grace: 1s, reload_poll: 0s }
usage: { access_log: "off" }
auth: { anonymous_keys: [test] }
providers:
  mock: { kind: openai_compatible, base_url: "http://127.0.0.1:$MP/v1", api_keys: ["mock-key"] }
models:
  demo: { targets: [ { provider: mock, model: mock-gpt } ] }
YAML
"$BIN" mock-provider --listen "127.0.0.1:$MP" --threads 1 --record-limit 1 --chunks 16 >"$WORK/mock.log" 2>&1 &
"$BIN" run --config "$WORK/gw.yaml" --runtime-dir "$WORK" >"$WORK/gw.log" 2>&1 &
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$AP/health" >/dev/null 2>&1 && break; sleep 0.1; done
overhead() { curl -fsS "http://127.0.0.1:$AP/metrics" | awk '/^tollgate_overhead_seconds_sum / { s = $2 } /^tollgate_overhead_seconds_count / { c = $2 } END { printf "%s %s", s + 0, c + 0 }'; }
for round in $(seq "$ROUNDS"); do
    for c in chat:/v1/chat/completions resp:/v1/responses resp-nostore:/v1/responses chat-stream:/v1/chat/completions resp-stream:/v1/responses; do
        name=${c%%:*} path=${c#*:}
        read -r s0 c0 <<<"$(overhead)"
        out=$(BODY_FILE="$WORK/$name.json" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$GP$path")
        read -r s1 c1 <<<"$(overhead)"
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        p50=$(awk '/ 50%/ {print $2}' <<<"$out")
        errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
        gw=$(python3 -c "print(round(($s1 - $s0) / max(1, $c1 - $c0) * 1e6, 1))")
        printf 'round=%s %-13s req/s=%-9s p50=%-7s gateway_us=%-6s non2xx=%s\n' "$round" "$name" "$rps" "$p50" "$gw" "${errors:-0}"
    done
done
