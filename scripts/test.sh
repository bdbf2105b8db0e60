#!/usr/bin/env bash
# Runs the whole test suite: unit, property, storage conformance and
# integration tests (real server, real HTTP, real child processes) for every
# crate of the workspace. Needs only the Rust toolchain; it installs anything
# else the tests need before running them.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked "$@"
