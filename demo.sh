#!/usr/bin/env bash
# The demo: builds the example plugins into plugins/*.wasm (the folder the
# server will watch), then runs GitHub events through `github-issues` with
# `hookhost invoke`, showing its log lines and the counters it keeps.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true

(cd plugins && cargo build --release --target wasm32-wasip2 -p echo -p github-issues -p stripe-billing)
for p in echo github-issues stripe-billing; do
  cp "plugins/target/wasm32-wasip2/release/${p//-/_}.wasm" "plugins/$p.wasm"
done
cargo build --release -p hookhost
hh=target/release/hookhost
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT

$hh check plugins/github-issues.wasm
body=$(mktemp); trap 'rm -rf "$data" "$body"' EXIT
echo '{"action":"opened","issue":{"number":1},"repository":{"full_name":"acme/rockets"}}' > "$body"
for i in 1 2; do
  $hh invoke plugins/github-issues.wasm --source github --kind issues.opened --body "$body" --data-dir "$data"
done
echo '{"action":"closed","repository":{"full_name":"acme/rockets"}}' > "$body"
$hh invoke plugins/github-issues.wasm --source github --kind issues.closed --body "$body" --data-dir "$data"
