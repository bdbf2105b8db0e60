#!/usr/bin/env bash
# Runs the performance targets of docs/performance.md, each three times, with
# the exact `interq bench` commands quoted there. Takes a few minutes; not part
# of the test suite. Usage: scripts/bench-targets.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release --locked --quiet
B=target/release/interq

run() {
    local name=$1; shift
    echo "== $name: interq $*"
    for _ in $(seq "$runs"); do
        "$B" "$@" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
e2e = r["endToEndCopiesPerSec"]
p2c = r["publishToClaim"]
print("  publish %9.0f tasks/s %9.0f copies/s | end-to-end %s | publish p99 %.2f ms | publish->claim p99 %s | %s MiB | %.1f records/commit" % (
    r["publishTasksPerSec"], r["routedCopiesPerSec"],
    "%.0f copies/s" % e2e if e2e else "-", r["publishLatency"]["p99Ms"],
    "%.2f ms" % p2c["p99Ms"] if p2c else "-", round(r["rssMib"]), r["writesPerCommit"] or 0))'
    done
}

run "1 single publishes" bench -N 100000 -P 64 -W 0 --probe-disk
run "2 batched fan-out 3" bench -N 300000 -P 8 -W 0 -Q 3 -F 3 --publish-batch 100
run "3 end to end" bench -N 200000 -P 8 -W 16 -Q 16 --publish-batch 100 --claim-batch 100
run "4 publish-to-claim latency" bench -N 10000 -P 4 -W 4 --rate 1000 --wait 20
run "6 10,000 queues" bench -N 100000 -P 64 -W 0 -Q 10000

echo "== 5 one million waiting tasks, then a restart"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$B" bench -N 1000000 -P 16 -W 0 --publish-batch 100 --data-dir "$dir" --json >/dev/null
for _ in $(seq "$runs"); do
    start=$(date +%s.%N)
    "$B" serve --data-dir "$dir" --listen 127.0.0.1:7798 2>/dev/null &
    pid=$!
    until curl -sf 127.0.0.1:7798/healthz >/dev/null; do sleep 0.02; done
    end=$(date +%s.%N)
    ready=$(curl -s "127.0.0.1:7798/status?queue=bench-0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["queue"]["ready"])')
    rss=$(awk '/VmRSS/ {print int($2/1024)}' /proc/$pid/status)
    kill $pid; wait $pid
    echo "  restart to serving $(echo "$end - $start" | bc) s | $ready tasks waiting | $rss MiB resident"
done
