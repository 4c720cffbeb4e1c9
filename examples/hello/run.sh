#!/usr/bin/env bash
# Quick start: build Nimbus, run it with the embedded store, deploy this example's two
# functions and invoke each once. The server keeps running in the background of this
# script, its log in a file; Ctrl-C stops it (in-flight invocations finish, instances
# are stopped).
#
#   NIMBUS_DATA_DIR        where state lives (default: ./.nimbus-data in the repo)
#   NIMBUS_LISTEN          API listener (default 127.0.0.1:4566)
#   NIMBUS_GATEWAY_LISTEN  HTTP gateway listener (default 127.0.0.1:8080)
#   CARGO_TARGET_DIR       honoured, as cargo honours it
#   NIMBUS_PROFILE         cargo profile to build and run (default: release)
#   NIMBUS_SDK_DIR         AWS SDKs for functions already installed there (skips
#                          scripts/install-sdks)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

profile="${NIMBUS_PROFILE:-release}"
echo "== building nimbus ($profile)"
cargo build --profile "$profile" -p nimbus --locked
# Where cargo put it: CARGO_TARGET_DIR, .cargo/config and workspace settings included.
target_dir="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
# The dev profile's output directory is named debug.
[ "$profile" = dev ] && outdir=debug || outdir="$profile"
nimbus="$target_dir/$outdir/nimbus"
[ -x "$nimbus" ] || { echo "run.sh: cargo built nimbus, but $nimbus is not there" >&2; exit 1; }

if [ -z "${NIMBUS_SDK_DIR:-}" ]; then
  echo "== AWS SDKs for functions (skipped when up to date)"
  "$root/scripts/install-sdks"
fi

export NIMBUS_LISTEN="${NIMBUS_LISTEN:-127.0.0.1:4566}"
export NIMBUS_GATEWAY_LISTEN="${NIMBUS_GATEWAY_LISTEN:-127.0.0.1:8080}"
export NIMBUS_ENDPOINT="http://$NIMBUS_LISTEN"
data="${NIMBUS_DATA_DIR:-$root/.nimbus-data}"
mkdir -p "$data"
log="$data/server.log"

echo "== starting nimbus (log: $log)"
"$nimbus" up --data-dir "$data" >"$log" 2>&1 &
server=$!
trap 'kill -INT $server 2>/dev/null; wait $server' INT TERM
trap 'kill $server 2>/dev/null || true' EXIT
ready=""
for _ in $(seq 1 300); do
  if grep -q "nimbus ready" "$log" 2>/dev/null; then ready=1; break; fi
  if ! kill -0 $server 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "run.sh: nimbus did not start; its log ($log) says:" >&2
  sed 's/^/  | /' "$log" >&2
  exit 1
fi
gateway="$(sed -n 's/.*nimbus ready: api [^ ]* gateway \([^ ]*\).*/\1/p' "$log" | head -n 1)"

echo "== deploying the example's functions"
"$nimbus" deploy hello-python --runtime python3.12 --handler app.handler --code "$here/python"
"$nimbus" deploy hello-node --runtime nodejs20.x --handler index.handler --code "$here/node"
echo "== invoking each once"
"$nimbus" invoke hello-python --payload '{"name": "Nimbus"}'
"$nimbus" invoke hello-node --payload '{"name": "Nimbus"}'
cat <<MSG

Nimbus is running (API $NIMBUS_ENDPOINT, gateway $gateway, data in $data,
server log in $log). Try, in another shell:
  export NIMBUS_ENDPOINT=$NIMBUS_ENDPOINT
  $nimbus invoke hello-python --payload '{"name": "you"}'
  $nimbus logs hello-python
  aws --endpoint-url $NIMBUS_ENDPOINT lambda list-functions   # any AWS credentials
Ctrl-C stops the server.
MSG
trap - EXIT
wait $server
