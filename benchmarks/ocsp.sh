#!/usr/bin/env bash
# signHash with OCSP checking on (warm cache) versus off, in one run, plus the cold-miss latency.
# Needs: the peers (scripts/peers.sh start), wrk, and a release build (made here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
# Always (incremental): a release binary from before the OCSP code would measure nothing.
swift build -c release --scratch-path .build-release --product cscgate
bash scripts/peers.sh start >/dev/null
exec .venv/bin/python benchmarks/ocsp.py "$@"
