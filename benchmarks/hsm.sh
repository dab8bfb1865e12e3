#!/usr/bin/env bash
# Local HSM: raw in-process sign rate of SoftHSM2 versus signHash/s through cscgate, in one run.
# Needs: softhsm2 and wrk (make deps), .venv, and a release build (made here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .build-release/release/cscgate ]]; then
  swift build -c release --scratch-path .build-release --product cscgate
fi
exec .venv/bin/python benchmarks/hsm.py "$@"
