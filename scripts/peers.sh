#!/usr/bin/env bash
# Start/stop the third-party test peers, all on 127.0.0.1 only:
#   csc-a   certomancer-csc-dummy, PKI vendor-a, SCAL 1   port $CSC_A_PORT  (9101)
#   csc-b   certomancer-csc-dummy, PKI vendor-b, SCAL 2   port $CSC_B_PORT  (9102)
#   anim-a  Certomancer Animator (OCSP/CRL/TSA), vendor-a port $ANIM_A_PORT (9111)
#   anim-b  Certomancer Animator (OCSP/CRL/TSA), vendor-b port $ANIM_B_PORT (9112)
# Pid files and logs: .run/peers/<name>.{pid,log}. Trust roots: .run/pki/vendor-{a,b}-root.pem.
#
# usage: scripts/peers.sh start|stop|status
#   start  installs .venv and keys if needed, starts what is not running, waits (bounded by
#          $PEERS_START_TIMEOUT seconds, default 60) until every peer answers; exits 1 otherwise.
#   stop   stops the peers recorded in .run/peers/*.pid.
#   status prints one line per peer; exits 1 unless all answer.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/.run/peers"
PY="$ROOT/.venv/bin/python"
PKI="$ROOT/tests/fixtures/pki"

CSC_A_PORT="${CSC_A_PORT:-9101}"
CSC_B_PORT="${CSC_B_PORT:-9102}"
ANIM_A_PORT="${ANIM_A_PORT:-9111}"
ANIM_B_PORT="${ANIM_B_PORT:-9112}"
TIMEOUT="${PEERS_START_TIMEOUT:-60}"
PEERS=(csc-a csc-b anim-a anim-b)

# peer_cmd NAME -> prints the command (one arg per line)
peer_cmd() {
    local v scal port anim
    case "$1" in
        csc-a) v=vendor-a scal=1 port=$CSC_A_PORT anim=$ANIM_A_PORT ;;
        csc-b) v=vendor-b scal=2 port=$CSC_B_PORT anim=$ANIM_B_PORT ;;
        anim-a) v=vendor-a port=$ANIM_A_PORT ;;
        anim-b) v=vendor-b port=$ANIM_B_PORT ;;
    esac
    case "$1" in
        csc-*) printf '%s\n' "$PY" "$ROOT/scripts/csc_dummy_launch.py" --config "$PKI/$v.yml" \
                   --key-root "$ROOT" --service-url-prefix "http://127.0.0.1:$anim" \
                   --host 127.0.0.1 --port "$port" --scal "$scal" ;;
        anim-*) printf '%s\n' "$ROOT/.venv/bin/certomancer" --config "$PKI/$v.yml" \
                   --key-root "$ROOT" --service-url-prefix "http://127.0.0.1:$port" \
                   animate --port "$port" --no-web-ui ;;
    esac
}

peer_port() {
    case "$1" in
        csc-a) echo "$CSC_A_PORT" ;; csc-b) echo "$CSC_B_PORT" ;;
        anim-a) echo "$ANIM_A_PORT" ;; anim-b) echo "$ANIM_B_PORT" ;;
    esac
}

# peer_ok NAME: does the peer answer?
peer_ok() {
    local port; port="$(peer_port "$1")"
    case "$1" in
        csc-*) curl -sf -m 2 -o /dev/null -X POST -H 'Content-Type: application/json' -d '{}' \
                   "http://127.0.0.1:$port/csc/v1/info" ;;
        anim-a) curl -sf -m 2 -o /dev/null "http://127.0.0.1:$port/vendor-a/crls/interm/latest.crl" ;;
        anim-b) curl -sf -m 2 -o /dev/null "http://127.0.0.1:$port/vendor-b/crls/interm/latest.crl" ;;
    esac
}

peer_pid() { # prints the pid if the pidfile names a live process
    local f="$RUN/$1.pid" pid
    [[ -f "$f" ]] || return 1
    pid="$(cat "$f")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    # an exited but not yet reaped child (parent gone, reaped late by pid 1) counts as dead
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
    echo "$pid"
}

alive() { kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }

port_in_use() { curl -s -m 1 -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; }

# stop_started NAME...: undo a failed start (only what this invocation started)
stop_started() {
    local name pid
    for name in "$@"; do
        pid="$(peer_pid "$name")" && { kill "$pid" 2>/dev/null || true; }
        rm -f "$RUN/$name.pid"
    done
}

cmd_start() {
    bash "$ROOT/scripts/setup-python.sh" >&2
    bash "$ROOT/scripts/make-pki.sh" >&2
    mkdir -p "$RUN"
    local name started=()
    # (with set -u, "${started[@]}" on an empty array is fine in bash >= 4.4)
    for name in "${PEERS[@]}"; do
        if peer_pid "$name" >/dev/null; then
            echo "peers: $name already running (pid $(peer_pid "$name"))"
            continue
        fi
        if port_in_use "$(peer_port "$name")"; then
            echo "peers: port $(peer_port "$name") for $name is taken by another process" >&2
            stop_started "${started[@]}"
            exit 1
        fi
        local -a cmd; mapfile -t cmd < <(peer_cmd "$name")
        echo "=== $(date -Is) starting: ${cmd[*]}" >>"$RUN/$name.log"
        nohup "${cmd[@]}" </dev/null >>"$RUN/$name.log" 2>&1 &
        echo $! >"$RUN/$name.pid"
        started+=("$name")
    done
    local deadline=$((SECONDS + TIMEOUT)) pending
    while :; do
        pending=()
        for name in "${PEERS[@]}"; do
            if ! peer_pid "$name" >/dev/null; then
                echo "peers: $name died during start; last log lines ($RUN/$name.log):" >&2
                tail -n 20 "$RUN/$name.log" >&2
                stop_started "${started[@]}"
                exit 1
            fi
            peer_ok "$name" || pending+=("$name")
        done
        ((${#pending[@]} == 0)) && break
        if ((SECONDS >= deadline)); then
            echo "peers: timed out after ${TIMEOUT}s waiting for: ${pending[*]}" >&2
            for name in "${pending[@]}"; do tail -n 20 "$RUN/$name.log" >&2; done
            stop_started "${started[@]}"
            exit 1
        fi
        sleep 0.2
    done
    for name in "${PEERS[@]}"; do
        echo "peers: $name up on 127.0.0.1:$(peer_port "$name") (pid $(peer_pid "$name"))"
    done
}

cmd_stop() {
    local name pid i
    for name in "${PEERS[@]}"; do
        if pid="$(peer_pid "$name")"; then
            kill "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
            alive "$pid" && kill -9 "$pid" 2>/dev/null || true
            echo "peers: stopped $name (pid $pid)"
        fi
        rm -f "$RUN/$name.pid"
    done
}

cmd_status() {
    local name rc=0 pid
    for name in "${PEERS[@]}"; do
        pid="$(peer_pid "$name" || true)"
        if [[ -n "$pid" ]] && peer_ok "$name"; then
            echo "$name: up on 127.0.0.1:$(peer_port "$name") (pid $pid)"
        elif [[ -n "$pid" ]]; then
            echo "$name: running (pid $pid) but not answering on 127.0.0.1:$(peer_port "$name")"; rc=1
        else
            echo "$name: stopped"; rc=1
        fi
    done
    return $rc
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
