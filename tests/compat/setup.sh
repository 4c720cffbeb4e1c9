#!/usr/bin/env bash
# Installs AWS's own Lambda runtime interface clients for tests/compat/test_ric.py:
#   * Python  awslambdaric      — pinned in tests/requirements.txt, lives in ./.venv
#   * Node    aws-lambda-ric    — pinned in tests/compat/node/package(-lock).json,
#                                 builds a native addon (cmake, autoconf, libtool, g++)
#   * Rust    lambda_runtime    — tests/compat/rust-fn, its own Cargo project and lock
# Idempotent: each step is skipped (or is a no-op) when its output is up to date.
# Run by scripts/test; safe to run by hand. Any failure stops with a message.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
COMPAT=tests/compat

step() { echo "-- compat: $*"; }
die() { echo "compat setup FAILED: $*" >&2; exit 1; }
now() { date +%s; }

# --- Python: awslambdaric in the suite's venv ---------------------------------------
step "python awslambdaric"
[ -x .venv/bin/python ] || die ".venv is missing: scripts/test creates it (python3 -m venv .venv)"
if ! .venv/bin/python -c "import awslambdaric, runtime_client" 2>/dev/null; then
  pin=$(grep -E '^awslambdaric==' tests/requirements.txt) || die "awslambdaric is not pinned in tests/requirements.txt"
  step "installing $pin into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "$pin"
  .venv/bin/python -c "import awslambdaric, runtime_client" || die "awslambdaric does not import after install"
fi
echo "   awslambdaric $(.venv/bin/python -c 'import awslambdaric; print(awslambdaric.__version__)') ready"

# --- Node: aws-lambda-ric, native addon built from source ----------------------------
step "node aws-lambda-ric"
NODE_DIR=$COMPAT/node
ADDON=$NODE_DIR/node_modules/aws-lambda-ric/dist/rapid-client.node
STAMP=$NODE_DIR/node_modules/.nimbus-compat-stamp
command -v node >/dev/null || die "node is not installed"
command -v npm >/dev/null || die "npm is not installed"
want_stamp="$(node --version) $(cat "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json" | sha256sum | cut -c1-16)"
if [ -f "$ADDON" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ]; then
  echo "   up to date ($want_stamp)"
else
  missing=()
  for tool in cmake make g++ autoconf automake libtoolize; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ "${#missing[@]}" -eq 0 ] || die "building aws-lambda-ric needs: ${missing[*]} (apt-get install cmake make g++ autoconf automake libtool libtool-bin)"
  # node-gyp: use the headers of the installed node rather than downloading them.
  for d in /usr /usr/local; do
    if [ -f "$d/include/node/node_version.h" ]; then export npm_config_nodedir=$d; break; fi
  done
  log=$(mktemp -t nimbus-npm-XXXX.log)
  step "npm ci in $NODE_DIR (builds curl + aws-lambda-cpp + the addon: a few minutes; log $log)"
  t0=$(now)
  if ! (cd "$NODE_DIR" && npm ci --no-audit --no-fund --foreground-scripts) >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    die "npm ci for aws-lambda-ric failed (full log: $log)"
  fi
  [ -f "$ADDON" ] || { tail -n 30 "$log" >&2; die "npm ci succeeded but $ADDON was not built"; }
  echo "$want_stamp" >"$STAMP"
  echo "   built in $(( $(now) - t0 )) s"
fi
# (The addon reads AWS_LAMBDA_RUNTIME_API when it loads; nothing is contacted.)
AWS_LAMBDA_RUNTIME_API=127.0.0.1:9 node -e "require(process.argv[1])" "$ROOT/$ADDON" \
  || die "the aws-lambda-ric addon does not load"

# --- Rust: a lambda_runtime function ------------------------------------------------
step "rust lambda_runtime function (cargo build --release --locked)"
command -v cargo >/dev/null || die "cargo is not installed"
t0=$(now)
cargo build --release --locked --quiet \
  --manifest-path "$COMPAT/rust-fn/Cargo.toml" \
  --target-dir "$COMPAT/rust-fn/target" || die "building $COMPAT/rust-fn failed"
[ -x "$COMPAT/rust-fn/target/release/bootstrap" ] || die "$COMPAT/rust-fn/target/release/bootstrap was not built"
echo "   ready ($(( $(now) - t0 )) s)"
step "all clients ready"
