#!/usr/bin/env bash
# Policy and limits cost: per decision in-process, and signHash throughput on versus off.
# Needs: the peers (scripts/peers.sh start), wrk, and a release build (made here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .build-release/release/cscgate ]]; then
  swift build -c release --scratch-path .build-release --product cscgate
fi
bash scripts/peers.sh start >/dev/null
exec .venv/bin/python benchmarks/policy.py "$@"
