#!/usr/bin/env bash
# Deploy the users API to a running Nimbus (`nimbus up`) and route it:
#
#   examples/users-api/deploy.sh            # uses NIMBUS_ENDPOINT (default http://127.0.0.1:4566)
#
#   NIMBUS        the nimbus binary (default: `nimbus` on PATH, else target/debug/nimbus)
#   USERS_DB      where the users' SQLite file lives (default /var/tmp/nimbus-users-api/users.db);
#                 every instance of the function opens this one file.
#   FUNCTION      function name (default users-api)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
nimbus="${NIMBUS:-$(command -v nimbus || echo "$here/../../target/debug/nimbus")}"
fn="${FUNCTION:-users-api}"
db="${USERS_DB:-/var/tmp/nimbus-users-api/users.db}"

"$nimbus" deploy "$fn" --runtime python3.12 --handler app.handler --code "$here/src" \
  --memory 256 --timeout 10 --env "USERS_DB=$db"
for route in "GET /users" "POST /users" "GET /users/{id}" "PUT /users/{id}" "DELETE /users/{id}"; do
  # shellcheck disable=SC2086 # METHOD and PATH are two arguments
  "$nimbus" route add $route "$fn" --timeout 10
done
"$nimbus" route ls
