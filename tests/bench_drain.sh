#!/usr/bin/env bash
# Drain benchmark (not part of the test run): 110 pods, evictions accepted after 100 ms,
# pods gone 1 s later, against the API server stand-in; target under 3 s. Also times 10
# pods drained one at a time for comparison. Extra arguments go to the benchmark
# (--pods N, --concurrency N, --serial N).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then set -- --serial 10; fi
exec cargo run --quiet --example bench_drain -- "$@"
