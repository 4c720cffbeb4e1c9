#!/usr/bin/env bash
# The aws CLI (awscli from tests/requirements.txt, a client nobody here wrote)
# against a running Nimbus: create-function from a zip, invoke, list-functions,
# delete-function, sts get-caller-identity; and, when the server requires
# signatures, that a wrong secret is refused.
#
# Usage: NIMBUS_ENDPOINT=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=… \
#        AWS_SECRET_ACCESS_KEY=… [EXPECT_ARN=…] [EXPECT_AUTH=1] tests/e2e/test_aws_cli.sh
# Run by tests/e2e/test_aws_cli.py, which starts the server.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
AWS_BIN=${AWS_BIN:-$root/.venv/bin/aws}
PYTHON=${PYTHON:-$root/.venv/bin/python}
endpoint=${NIMBUS_ENDPOINT:?set NIMBUS_ENDPOINT to the server\'s API URL}
expect_arn=${EXPECT_ARN:-arn:aws:iam::123456789012:root}
fn=${FUNCTION_NAME:-aws-cli-fn}

# Only what this script sets: no profile, config file or pager of the machine.
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PAGER=""
export AWS_MAX_ATTEMPTS=1 AWS_RETRY_MODE=standard
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

aws() { "$AWS_BIN" --endpoint-url "$endpoint" "$@"; }
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
check() { # check "what" expected actual
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected [$2], got [$3]"; fi
}

"$PYTHON" - "$work/fn.zip" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("app.py", "def handler(event, context):\n    return {'echo': event, 'fn': context.function_name}\n")
PY

arn=$(aws lambda create-function --function-name "$fn" --runtime python3.12 \
    --role arn:aws:iam::123456789012:role/lambda-role --handler app.handler \
    --zip-file "fileb://$work/fn.zip" --query FunctionArn --output text)
check "create-function returns the ARN" "arn:aws:lambda:$AWS_DEFAULT_REGION:123456789012:function:$fn" "$arn"

status=$(aws lambda invoke --function-name "$fn" --payload '{"n": 42}' \
    --query StatusCode --output text "$work/out.json")
check "invoke status" "200" "$status"
check "invoke payload" '{"echo": {"n": 42}, "fn": "'"$fn"'"}' "$(cat "$work/out.json")"

names=$(aws lambda list-functions --query 'Functions[].FunctionName' --output text)
case " $names " in
    *[[:space:]]"$fn"[[:space:]]*) ok "list-functions lists $fn" ;;
    *) fail "list-functions: $fn not in [$names]" ;;
esac

aws lambda delete-function --function-name "$fn"
names=$(aws lambda list-functions --query 'Functions[].FunctionName' --output text)
case " $names " in
    *[[:space:]]"$fn"[[:space:]]*) fail "delete-function: $fn still listed" ;;
    *) ok "delete-function" ;;
esac

check "sts get-caller-identity Arn" "$expect_arn" \
    "$(aws sts get-caller-identity --query Arn --output text)"
check "sts get-caller-identity Account" "123456789012" \
    "$(aws sts get-caller-identity --query Account --output text)"

if [ "${EXPECT_AUTH:-0}" = 1 ]; then
    for cmd in "sts get-caller-identity|SignatureDoesNotMatch" "lambda list-functions|InvalidSignatureException"; do
        args=${cmd%|*} code=${cmd#*|}
        # shellcheck disable=SC2086 # word splitting of args is intended
        if out=$(AWS_SECRET_ACCESS_KEY=wrong-secret aws $args 2>&1); then
            fail "$args with a wrong secret succeeded: $out"
        elif [[ $out == *"$code"* ]]; then
            ok "$args with a wrong secret: $code"
        else
            fail "$args with a wrong secret: no $code in: $out"
        fi
    done
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
