#!/usr/bin/env bash
# The demo, in two parts:
#  1. the plugin sandbox: build the example plugins into plugins/*.wasm (the
#     folder the server watches) and run GitHub events through
#     `github-issues` with `hookhost invoke`, showing its log lines and the
#     counters it keeps in its key-value store;
#  2. the server: start `hookhost serve` with zero config (the unsigned
#     "demo" source on loopback) and the example plugins, post a webhook
#     twice (a durable 200, then a duplicate), watch `echo` handle it in the
#     admin API, and stop it with SIGTERM (a clean drain).
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true

(cd plugins && cargo build --release --target wasm32-wasip2 -p echo -p github-issues -p stripe-billing)
for p in echo github-issues stripe-billing; do
  cp "plugins/target/wasm32-wasip2/release/${p//-/_}.wasm" "plugins/$p.wasm"
done
cargo build --release -p hookhost
hh="$PWD/target/release/hookhost"
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo; echo "== 1. the plugin sandbox"
$hh check plugins/github-issues.wasm
echo '{"action":"opened","issue":{"number":1},"repository":{"full_name":"acme/rockets"}}' > "$work/opened.json"
echo '{"action":"closed","repository":{"full_name":"acme/rockets"}}' > "$work/closed.json"
for f in opened opened closed; do
  $hh invoke plugins/github-issues.wasm --source github --kind "issues.$f" \
    --body "$work/$f.json" --data-dir "$work/invoke" 2>/dev/null
done

echo; echo "== 2. hookhost serve (zero config: source \"demo\", unsigned, loopback only; plugins from ./plugins)"
(plugins="$PWD/plugins"; cd "$work" && HOOKHOST_SERVER__PLUGINS_DIR="$plugins" exec "$hh" serve) &
server=$!
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:8081/readyz >/dev/null && break
  sleep 0.1
done
echo "readyz: $(curl -s http://127.0.0.1:8081/readyz)"
for attempt in first again; do
  echo "POST /webhooks/demo ($attempt):"
  curl -s -X POST http://127.0.0.1:8080/webhooks/demo \
    -H 'content-type: application/json' -H 'x-webhook-id: demo-1' \
    --data '{"type":"greeting","hello":"world"}'
  echo
done
sleep 0.5
echo "GET /admin/stats:"
curl -s http://127.0.0.1:8081/admin/stats; echo
echo "GET /admin/events/evt_0000000000000001 (the event, its deliveries and their attempts):"
curl -s http://127.0.0.1:8081/admin/events/evt_0000000000000001; echo
echo "GET /admin/plugins/echo/kv (what echo counted):"
curl -s http://127.0.0.1:8081/admin/plugins/echo/kv; echo
kill -TERM "$server"
wait "$server" && echo "server drained and exited 0"
server=""
