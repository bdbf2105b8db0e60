#!/usr/bin/env bash
# Runs the whole test suite: unit, property, storage conformance and
# integration tests (real server, real HTTP, real child processes) for every
# crate of the workspace, the Python and TypeScript clients' tests against the
# real server, and the API fuzzer. Needs the Rust toolchain, Python 3 and
# Node 20; it installs anything else the tests need before running them.
set -euo pipefail
cd "$(dirname "$0")/.."

# docs/executor.md's curl examples are run by the tests as written, and the
# management site is tested in a real headless Chromium over chromedriver.
need=()
for tool in curl:curl python3:python3 node:nodejs npm:npm chromium:chromium chromedriver:chromium-driver prlimit:util-linux; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

if [ -z "${INTERQ_COUCHBASE_CONNSTR:-}" ]; then
    echo "note: INTERQ_COUCHBASE_CONNSTR is not set: the Couchbase conformance and multi-node tests pass without running (README, Couchbase)." >&2
fi

# With the Couchbase backend built in (a cargo feature), so that its
# conformance cases, its multi-node tests and its code are all compiled.
cargo test --workspace --locked --features couchbase "$@"

# The default build (what `cargo run --release -- serve` makes) has no
# Couchbase backend, and says so when asked for one; its binary is the one
# the clients are tested against below.
cargo build --locked --bin interq
nowhere=$(mktemp -d)
refusal=$(INTERQ_STORE__KIND=couchbase INTERQ_STORE__COUCHBASE__CONNECTION_STRING=couchbase://nowhere \
    INTERQ_DATA_DIR="$nowhere" target/debug/interq serve 2>&1 || true)
rm -rf "$nowhere"
if ! grep -q "built without the Couchbase backend: build it with .cargo build --release --features couchbase." <<<"$refusal"; then
    echo "the default build should refuse store.kind = couchbase plainly; it said:" >&2
    echo "$refusal" >&2
    exit 1
fi

# The Python client, installed from the checkout as a user would, against
# the real server.
py=target/py-venv
scripts/python-venv.sh "$py"
"$py/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps clients/python
INTERQ_BIN=target/debug/interq "$py/bin/python" -m unittest discover -s clients/python/tests

# The TypeScript client: built, tested against the real server, then packed
# and installed into an empty project, as a user's npm would.
(
    cd clients/node
    npm ci --no-fund --no-audit --loglevel=error
    INTERQ_BIN="$OLDPWD/target/debug/interq" npm test
    tarball="$PWD/$(npm pack --silent)"
    project=$(mktemp -d)
    trap 'rm -rf "$project" "$tarball"' EXIT
    cd "$project"
    npm init -y >/dev/null
    npm install --no-fund --no-audit --loglevel=error "$tarball"
    node --input-type=module -e 'import { Client, Worker } from "interq"; new Client("http://127.0.0.1:7700"); if (typeof Worker !== "function") process.exit(1);'
)

# The API fuzzed from its own document: no 5xx, every answer as documented.
scripts/fuzz-api.sh
