#!/usr/bin/env bash
# The demo, in two parts:
#  1. the plugin sandbox: build the example plugins into plugins/*.wasm (the
#     folder the server watches) and run GitHub events through
#     `github-issues` with `hookhost invoke`, showing its log lines and the
#     counters it keeps in its key-value store;
#  2. the server: start `hookhost serve` with a signed GitHub source and
#     the example plugins, send a signed webhook twice with `hookhost send`
#     (a durable 200, then a duplicate), watch the plugins handle it with
#     `hookhost events show` and `hookhost plugins list`, and stop it with
#     SIGTERM (a clean drain).
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

echo; echo "== 2. hookhost serve: a signed GitHub source, the example plugins, and the local loop"
cat > "$work/hookhost.toml" <<TOML
[server]
data_dir = "$work/data"
plugins_dir = "$PWD/plugins"

[[source]]
name = "github"
scheme = "github"
secrets = ["env:GITHUB_WEBHOOK_SECRET"]
TOML
export GITHUB_WEBHOOK_SECRET="demo-secret-$RANDOM$RANDOM"
hh="$hh --config $work/hookhost.toml"
$hh serve 2>"$work/server.log" &
server=$!
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:8081/readyz >/dev/null && break
  sleep 0.1
done
echo "readyz: $(curl -s http://127.0.0.1:8081/readyz)"
echo "\$ hookhost send --source github --file opened.json --kind issues.opened --id demo-1   (twice: the second is a duplicate)"
sent=$($hh send --source github --file "$work/opened.json" --kind issues.opened --id demo-1)
echo "$sent"
$hh send --source github --file "$work/opened.json" --kind issues.opened --id demo-1
id=$(echo "$sent" | sed -n 's/^received: \(evt_[0-9a-z_]*\).*/\1/p' | head -1)
sleep 0.5
echo; echo "\$ hookhost events show $id"
$hh events show "$id"
echo; echo "\$ hookhost plugins list"
$hh plugins list
echo; echo "GET /admin/plugins/github-issues/kv (what github-issues counted):"
curl -s http://127.0.0.1:8081/admin/plugins/github-issues/kv; echo
kill -TERM "$server"
wait "$server" && echo "server drained and exited 0"
server=""
