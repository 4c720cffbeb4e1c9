#!/usr/bin/env bash
# Quick start: build Nimbus, run it with the embedded store, deploy this example's two
# functions and invoke each once. The server keeps running in the foreground; Ctrl-C
# stops it (in-flight invocations finish, instances are stopped).
#
#   NIMBUS_DATA_DIR  where state lives (default: ./.nimbus-data in the repo)
#   NIMBUS_LISTEN    API listener (default 127.0.0.1:4566)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

cargo build --release -p nimbus --locked
# The AWS SDKs functions import without bundling them (skips when up to date).
"$root/scripts/install-sdks"
nimbus="$root/target/release/nimbus"
listen="${NIMBUS_LISTEN:-127.0.0.1:4566}"
export NIMBUS_ENDPOINT="http://$listen"
data="${NIMBUS_DATA_DIR:-$root/.nimbus-data}"

"$nimbus" up --data-dir "$data" --listen "$listen" &
server=$!
trap 'kill -INT $server 2>/dev/null; wait $server' INT TERM
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  "$nimbus" ls >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "nimbus exited during start-up" >&2; exit 1; }
  sleep 0.1
done

"$nimbus" deploy hello-python --runtime python3.12 --handler app.handler --code "$here/python"
"$nimbus" deploy hello-node --runtime nodejs20.x --handler index.handler --code "$here/node"
echo
"$nimbus" invoke hello-python --payload '{"name": "Nimbus"}'
"$nimbus" invoke hello-node --payload '{"name": "Nimbus"}'
cat <<MSG

Nimbus is running (API $NIMBUS_ENDPOINT, data in $data). Try, in another shell:
  export NIMBUS_ENDPOINT=$NIMBUS_ENDPOINT
  $nimbus invoke hello-python --payload '{"name": "you"}'
  $nimbus logs hello-python
  aws --endpoint-url $NIMBUS_ENDPOINT lambda list-functions   # any AWS credentials
Ctrl-C stops the server.
MSG
trap - EXIT
wait $server
