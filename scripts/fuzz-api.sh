#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis (from
# PyPI): every phase (examples, coverage, fuzzing, stateful), and no request
# may get a 5xx, an undocumented status or content type, or an answer that
# does not match the document. Run by scripts/test.sh; FUZZ_SEED and
# FUZZ_EXAMPLES change the run.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/fuzz-venv
requirements=scripts/fuzz-requirements.txt
if ! cmp -s "$requirements" "$venv/installed.txt"; then
    scripts/python-venv.sh "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$requirements"
    cp "$requirements" "$venv/installed.txt"
fi

bin=target/debug/interq
[ -x "$bin" ] || cargo build --locked --bin interq

data=$(mktemp -d)
log="$data/server.log"
# Long polls are capped at 2 s: the fuzzer waits 10 s for an answer.
INTERQ_LIMITS__MAX_WAIT_SECS=2 INTERQ_LOG__FORMAT=json RUST_LOG=warn,interq=info \
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$data/store" 2>"$log" &
server=$!
# `|| true`: under set -e a trap stops at its first failing command, and
# the server's exit status must not keep its data from being removed.
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
port=""
for _ in $(seq 1 100); do
    port=$(grep -o '"port":[0-9]*' "$log" | head -1 | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "interq did not start:"; cat "$log"; exit 1; }

# One worker: Python 3.11's parser is not safe to call from two threads at
# once, and Hypothesis parses source to describe its strategies (a run with
# two failed on "AST constructor recursion depth mismatch").
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,allow_header_conformance \
    --max-examples "${FUZZ_EXAMPLES:-25}" \
    --seed "${FUZZ_SEED:-20261202}" \
    --workers 1 \
    --no-color
