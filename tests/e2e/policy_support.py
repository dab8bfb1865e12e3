"""Helpers for the policy and limits e2e tests (test_policy_*.py): a gateway with policy files,
clients that authorize and sign, a TCP proxy that can freeze a PostgreSQL connection, and
reads of the SQLite ledger."""
from __future__ import annotations

import base64
import hashlib
import os
import secrets as pysecrets
import select
import socket
import sqlite3
import time
import threading
from pathlib import Path

import requests

from gateway_fixture import hash_secret, start_gateway

EC = '1.2.840.10045.4.3.2'
ADMIN_SECRET = 'policy-admin-secret-' + pysecrets.token_hex(6)
PG_URL = os.environ.get('CSCGATE_TEST_POSTGRES_URL', '')

_hashes: dict[str, str] = {}


def secret_hash(secret: str) -> str:
    if secret not in _hashes:
        _hashes[secret] = hash_secret(secret)
    return _hashes[secret]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def gateway_config(port: int, vendor_a: str, *, extra: str = '', sad_key: Path | None = None,
                   poll: float = 0.5) -> str:
    sad = f'sad: {{keyFile: "{sad_key}"}}\n' if sad_key else ''
    return f"""
listen: {{host: 127.0.0.1, port: {port}}}
tenants: tenants
policies: policies
{sad}reload: {{pollInterval: {poll}}}
admin:
  operators:
    - {{id: ops, secretHash: "{secret_hash(ADMIN_SECRET)}"}}
upstreams:
  - {{name: vendor-a, kind: csc, baseURL: "{vendor_a}", version: v1}}
{extra}
"""


def tenant_file(tenant: str, client: str, secret: str, *, policies: list[str], credentials: dict[str, str],
                extra: str = '') -> str:
    creds = '\n'.join(f'  - {{id: {cid}, upstream: vendor-a, upstreamCredentialID: {up}}}'
                      for cid, up in credentials.items())
    return f"""tenant: {tenant}
clients:
  - {{id: {client}, secretHash: "{secret_hash(secret)}", scopes: [service]}}
credentials:
{creds}
policies: [{', '.join(policies)}]
{extra}
"""


def launch(workdir: Path, config: str, tenants: dict[str, str], policies: dict[str, str], url: str):
    (workdir / 'policies').mkdir(parents=True, exist_ok=True)
    for name, text in policies.items():
        (workdir / 'policies' / f'{name}.yaml').write_text(text)
    return start_gateway(workdir, config, tenants, url=url)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name('.' + path.name + '.tmp')
    tmp.write_text(text)
    os.replace(tmp, path)


class Client:
    def __init__(self, url: str, client_id: str, secret: str):
        self.url = url
        self.s = requests.Session()
        r = self.s.post(f'{url}/csc/v1/auth/login', json={}, auth=(client_id, secret), timeout=10)
        r.raise_for_status()
        self.token = r.json()['access_token']
        self.s.headers['Authorization'] = f'Bearer {self.token}'

    def authorize(self, credential: str, n: int = 1) -> str:
        r = self.s.post(f'{self.url}/csc/v1/credentials/authorize', json={'credentialID': credential, 'numSignatures': n},
                        timeout=10)
        assert r.status_code == 200, r.text
        return r.json()['SAD']

    def sign(self, credential: str, sad: str, hashes: int = 1, sign_algo: str = EC, request_id: str | None = None,
             timeout: float = 15) -> requests.Response:
        digests = [base64.b64encode(hashlib.sha256(pysecrets.token_bytes(16)).digest()).decode() for _ in range(hashes)]
        headers = {'X-Request-ID': request_id} if request_id else {}
        # A fresh session per call: concurrent threads must not share one connection.
        return requests.post(f'{self.url}/csc/v1/signatures/signHash', timeout=timeout,
                             headers={'Authorization': f'Bearer {self.token}', **headers},
                             json={'credentialID': credential, 'SAD': sad, 'hash': digests, 'signAlgo': sign_algo})


def admin(url: str, method: str, path: str) -> requests.Response:
    return requests.request(method, f'{url}/admin/v1/{path}', headers={'Authorization': f'Bearer {ADMIN_SECRET}'},
                            timeout=15)


# The SQLite file trails the gateway's journal by at most `ledger.applyInterval` (500 ms by
# default): every answered operation is durable in the journal at once, in the file a moment later.
LEDGER_FILE_LAG = 1.0


def ledger_rows(workdir: Path, sql: str, args: tuple = ()) -> list[tuple]:
    time.sleep(LEDGER_FILE_LAG)
    db = sqlite3.connect(f'file:{workdir / "ledger.sqlite"}?mode=ro', uri=True, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


class FreezingProxy:
    """TCP proxy to 127.0.0.1:<target>; `freeze()` stops moving bytes (connections hang, new
    ones are accepted but go nowhere), `thaw()` moves them again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.frozen = threading.Event()
        self.stopped = threading.Event()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(('127.0.0.1', 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket):
        while self.frozen.is_set() and not self.stopped.is_set():
            self.stopped.wait(0.05)
        try:
            upstream = socket.create_connection(('127.0.0.1', self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        self.sockets += [client, upstream]
        pair = {client: upstream, upstream: client}
        try:
            while not self.stopped.is_set():
                if self.frozen.is_set():
                    self.stopped.wait(0.05)
                    continue
                ready, _, _ = select.select(list(pair), [], [], 0.05)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    pair[s].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def freeze(self):
        self.frozen.set()

    def thaw(self):
        self.frozen.clear()

    def stop(self):
        self.stopped.set()
        self.server.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass
