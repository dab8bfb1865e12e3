#!/usr/bin/env bash
# signHash through cscgate versus directly against the upstream dummy, in one run.
# Needs: the peers (scripts/peers.sh start), wrk, and a release build (made here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .build-release/release/cscgate ]]; then
  swift build -c release --scratch-path .build-release --product cscgate
fi
bash scripts/peers.sh start >/dev/null
exec .venv/bin/python benchmarks/signhash.py "$@"
