#!/usr/bin/env bash
# Create/refresh the repo-local Python venv (.venv/) used by the peers (certomancer,
# certomancer-csc-dummy) and the e2e harness (pyHanko, pytest, requests).
#
# Idempotent: a stamp file in .venv/ records a hash of scripts/requirements-peers.txt and the
# interpreter version; when it matches, nothing is done. Override the interpreter with PYTHON=...
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQS="$ROOT/scripts/requirements-peers.txt"
STAMP="$VENV/.peers-requirements.sha256"

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    for cand in python3.11 python3 python3.12 python3.13; do
        if command -v "$cand" >/dev/null 2>&1; then PYTHON="$cand"; break; fi
    done
fi
[[ -n "$PYTHON" ]] || { echo "setup-python: no python3 found" >&2; exit 1; }

want="$( { cat "$REQS"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "setup-python: .venv up to date"
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "setup-python: creating .venv with $PYTHON ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv "$VENV"
fi

echo "setup-python: installing $(basename "$REQS")"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -r "$REQS"
"$VENV/bin/python" -c 'import pyhanko, certomancer, csc_dummy, pytest, requests'
echo "$want" > "$STAMP"
echo "setup-python: done"
