"""Starting a gateway for a benchmark, shared by the benchmark scripts.

A gateway left behind by an interrupted run keeps its port: a new one then fails to bind, and
the old one, built from other sources, would answer the benchmark. So the port must be free
before the start, the process must still be ours when /health answers, and every gateway
started here is killed when the script ends, however it ends.
"""
from __future__ import annotations

import atexit
import http.client
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

_started: list[subprocess.Popen] = []


def _stop_all() -> None:
    for proc in _started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _on_signal(signum, _frame) -> None:
    _stop_all()
    sys.exit(128 + signum)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def serve(binary: str, config: Path, port: int, log_path: Path, env: dict | None = None,
          level: str = "warning", timeout: float = 20) -> subprocess.Popen:
    """`cscgate serve` on `config`, returned once it answers /health on `port`."""
    if _port_in_use(port):
        raise SystemExit(f"port {port} is already in use (a gateway left by an earlier run?); stop it first")
    log = open(log_path, "w")
    proc = subprocess.Popen([binary, "serve", "--config", str(config), "--log-level", level],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    _started.append(proc)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            if c.getresponse().status == 200 and proc.poll() is None:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"gateway on port {port} did not start; see {log_path}")
