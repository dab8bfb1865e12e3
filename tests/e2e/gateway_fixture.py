"""Launch the cscgate binary for e2e tests (skeleton: written against the contract below, not
yet exercised, because the binary does not exist yet).

Contract assumed:
  * `$CSCGATE_BIN serve --config <workdir>/gateway.yaml` runs the gateway in the foreground;
    relative paths in gateway.yaml (tenants/, policies/) resolve against the config's dir.
  * `GET <url>/health` answers 200 once it is ready.
  * `printf %s SECRET | $CSCGATE_BIN secret hash` prints the hash to put in a tenant file.
  * CSC v1 `auth/login` with HTTP Basic (client id : secret) returns {"access_token": ...}.
CSCGATE_BIN defaults to <repo>/.build/debug/cscgate.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_URL = 'http://127.0.0.1:8088'
READY_TIMEOUT = 20.0


def cscgate_bin() -> str:
    return os.environ.get('CSCGATE_BIN') or str(REPO / '.build' / 'debug' / 'cscgate')


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f'{url}/health', timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@dataclass
class GatewayHandle:
    url: str  # e.g. http://127.0.0.1:8088 (CSC v1 base: f'{url}/csc/v1')
    proc: subprocess.Popen
    workdir: Path
    log_path: Path

    @property
    def csc_v1(self) -> str:
        return f'{self.url}/csc/v1'

    def log_tail(self, n: int = 40) -> str:
        try:
            return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-n:])
        except OSError:
            return ''

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` s. Returns the exit code. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_gateway(workdir, config_yaml_text: str, tenants: dict[str, str],
                  env: dict[str, str] | None = None, *, url: str | None = None,
                  ready_timeout: float = READY_TIMEOUT) -> GatewayHandle:
    """Write <workdir>/gateway.yaml, <workdir>/tenants/<name>.yaml, an empty
    <workdir>/policies/, start `cscgate serve --config <workdir>/gateway.yaml`, and wait until
    GET <url>/health answers 200 (at most `ready_timeout` s).

    env: extra environment variables, layered over os.environ. url: where the config makes the
    gateway listen (default $CSCGATE_URL or http://127.0.0.1:8088); loopback only.
    """
    url = (url or os.environ.get('CSCGATE_URL') or DEFAULT_URL).rstrip('/')
    host = url.split('://', 1)[-1].split('/', 1)[0].rsplit(':', 1)[0]
    if host not in ('127.0.0.1', 'localhost', '[::1]'):
        raise ValueError(f'gateway url must be loopback, got {url}')
    if _health_ok(url):
        raise RuntimeError(f'something already answers {url}/health; stop it first')

    workdir = Path(workdir)
    (workdir / 'tenants').mkdir(parents=True, exist_ok=True)
    (workdir / 'policies').mkdir(parents=True, exist_ok=True)
    config_path = workdir / 'gateway.yaml'
    config_path.write_text(config_yaml_text)
    for name, text in tenants.items():
        (workdir / 'tenants' / f'{name}.yaml').write_text(text)

    binary = cscgate_bin()
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(f'cscgate binary not found or not executable: {binary} '
                                f'(build it, or set CSCGATE_BIN)')
    log_path = workdir / 'gateway.log'
    full_env = {**os.environ, **(env or {})}
    with open(log_path, 'ab') as log:
        proc = subprocess.Popen([binary, 'serve', '--config', str(config_path)],
                                cwd=workdir, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
    handle = GatewayHandle(url=url, proc=proc, workdir=workdir, log_path=log_path)

    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f'cscgate exited with {proc.returncode} before becoming ready; '
                               f'log tail:\n{handle.log_tail()}')
        if _health_ok(url):
            return handle
        if time.monotonic() >= deadline:
            handle.stop()
            raise TimeoutError(f'cscgate not healthy at {url}/health after {ready_timeout}s; '
                               f'log tail:\n{handle.log_tail()}')
        time.sleep(0.1)


def hash_secret(secret: str) -> str:
    """`printf %s SECRET | $CSCGATE_BIN secret hash`, stdout stripped."""
    r = subprocess.run([cscgate_bin(), 'secret', 'hash'], input=secret.encode(),
                       capture_output=True, timeout=30, check=False)
    if r.returncode != 0:
        raise RuntimeError(f'cscgate secret hash failed ({r.returncode}): '
                           f'{r.stderr.decode(errors="replace")}')
    return r.stdout.decode().strip()


def gateway_login(url: str, client_id: str, secret: str) -> str:
    """CSC v1 auth/login with HTTP Basic; returns the access_token (the bearer token to hand to
    pyhanko_flow.sign_and_validate)."""
    basic = base64.b64encode(f'{client_id}:{secret}'.encode()).decode()
    req = urllib.request.Request(
        f'{url.rstrip("/")}/csc/v1/auth/login', data=b'{}', method='POST',
        headers={'Content-Type': 'application/json', 'Authorization': f'Basic {basic}'})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())['access_token']
