"""Nothing signed goes unrecorded, and nothing is billed twice, across a SIGKILL.

A bounded load of signHash requests runs against a gateway; the gateway is killed with SIGKILL
mid-run and restarted on the same ledger file. Clients retry every unanswered request with the
same X-Request-ID until it is answered (authorizing again when their SAD died with the process).
Afterwards, the signatures clients received must equal
the billed signatures in the ledger, and `cscgate ledger verify` must find the chain intact.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets as pysecrets
import signal
import sqlite3
import subprocess
import threading
import time

import requests

from gateway_fixture import cscgate_bin, hash_secret, start_gateway

URL = 'http://127.0.0.1:8303'
SECRET = 'crash-client-secret-' + pysecrets.token_hex(6)
EC = '1.2.840.10045.4.3.2'
THREADS = 4
REQUESTS_PER_THREAD = 60


def test_sigkill_mid_load_leaves_billing_equal_to_what_clients_received(peers, tmp_path):
    (tmp_path / 'sad.key').write_text(base64.b64encode(pysecrets.token_bytes(32)).decode())
    config = f"""
listen: {{host: 127.0.0.1, port: 8303}}
sad: {{keyFile: sad.key}}
ledger: {{path: ledger.sqlite, checkpointKeyFile: ledger.key, checkpointInterval: 50}}
upstreams:
  - {{name: vendor-a, kind: csc, baseURL: "{peers['vendor-a'].base_url}", version: v1}}
"""
    tenant = f"""
tenant: crash
clients:
  - {{id: crash-app, secretHash: "{hash_secret(SECRET)}", scopes: [service]}}
credentials:
  - {{id: ec, upstream: vendor-a, upstreamCredentialID: vendor-a/ec-signer}}
"""
    gw = {'handle': start_gateway(tmp_path, config, {'crash': tenant}, url=URL)}
    received = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + 90

    def worker(n):
        s = requests.Session()
        token = [None]

        def login():
            while time.monotonic() < stop_at:
                try:
                    r = s.post(f'{URL}/csc/v1/auth/login', json={}, auth=('crash-app', SECRET), timeout=5)
                    if r.status_code == 200:
                        token[0] = r.json()['access_token']
                        return
                except requests.RequestException:
                    pass
                time.sleep(0.1)
            raise TimeoutError('no login')

        def post(path, body, request_id=None):
            """Retries until answered: connection errors, 401 (tokens die with the process) and upstream 5xx."""
            while time.monotonic() < stop_at:
                headers = {'Authorization': f'Bearer {token[0]}'}
                if request_id:
                    headers['X-Request-ID'] = request_id
                try:
                    r = s.post(f'{URL}/csc/v1/{path}', json=body, headers=headers, timeout=5)
                except requests.RequestException:
                    time.sleep(0.05)
                    continue
                if r.status_code == 401:
                    login()
                    continue
                if r.status_code in (502, 503, 504):
                    # An upstream that did not answer in time (a loaded CI machine): a client
                    # retries, with the same request id, and must still be billed once.
                    time.sleep(0.1)
                    continue
                return r
            raise TimeoutError(path)

        login()
        sad = None
        for i in range(REQUESTS_PER_THREAD):
            if i % 10 == 0:
                sad = post('credentials/authorize', {'credentialID': 'ec', 'numSignatures': 10}).json()['SAD']
            rid = f'crash-{n}-{i}'
            digest = base64.b64encode(hashlib.sha256(rid.encode()).digest()).decode()
            r = post('signatures/signHash', {'credentialID': 'ec', 'SAD': sad, 'hash': [digest], 'signAlgo': EC}, rid)
            if r.status_code == 400 and r.json().get('error_description') == 'SAD expired':
                # A SAD from before the restart: its budget died with the process. Authorize
                # again and retry under the same request id (billed once either way).
                sad = post('credentials/authorize', {'credentialID': 'ec', 'numSignatures': 10}).json()['SAD']
                r = post('signatures/signHash', {'credentialID': 'ec', 'SAD': sad, 'hash': [digest], 'signAlgo': EC}, rid)
            assert r.status_code == 200, (rid, r.status_code, r.text)
            with lock:
                received[rid] = len(r.json()['signatures'])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    # Kill once a good part of the load is through, then restart on the same files.
    deadline = time.monotonic() + 30
    while len(received) < THREADS * REQUESTS_PER_THREAD // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(gw['handle'].proc.pid, signal.SIGKILL)
    gw['handle'].proc.wait(5)
    killed_after = len(received)
    gw['handle'] = start_gateway(tmp_path, config, {'crash': tenant}, url=URL)
    for t in threads:
        t.join(100)
    gw['handle'].stop()

    assert 0 < killed_after < THREADS * REQUESTS_PER_THREAD
    assert len(received) == THREADS * REQUESTS_PER_THREAD
    db = sqlite3.connect(tmp_path / 'ledger.sqlite')
    billed = db.execute("SELECT COALESCE(SUM(signatures), 0) FROM usage_events WHERE outcome = 'ok' "
                        "AND operation = 'signatures/signHash'").fetchone()[0]
    billed_ids = db.execute("SELECT COUNT(DISTINCT request_id) FROM usage_events WHERE outcome = 'ok' "
                            "AND operation = 'signatures/signHash'").fetchone()[0]
    assert billed == sum(received.values())
    assert billed_ids == len(received)
    verify = subprocess.run([cscgate_bin(), 'ledger', 'verify', '--config', str(tmp_path / 'gateway.yaml')],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert 'ledger intact' in verify.stdout
    report = subprocess.run([cscgate_bin(), 'report', '--config', str(tmp_path / 'gateway.yaml'), '--tenant', 'crash',
                             '--from', '2000-01-01', '--to', '2100-01-01', '--group-by', 'operation', '--format', 'json'],
                            capture_output=True, text=True, check=True)
    lines = {l['key']: l for l in json.loads(report.stdout)['lines']}
    assert lines['signatures/signHash']['billed_signatures'] == billed


def test_after_sigkill_verify_and_report_store_what_only_the_journal_held(peers, tmp_path):
    """A gateway killed and not restarted: `ledger verify` and `report` first store what its
    journal acknowledged (here all of it: the file is written once a minute), then read."""
    (tmp_path / 'sad.key').write_text(base64.b64encode(pysecrets.token_bytes(32)).decode())
    config = f"""
listen: {{host: 127.0.0.1, port: 8304}}
sad: {{keyFile: sad.key}}
ledger: {{path: ledger.sqlite, checkpointKeyFile: ledger.key, checkpointInterval: 4, applyInterval: 60000}}
upstreams:
  - {{name: vendor-a, kind: csc, baseURL: "{peers['vendor-a'].base_url}", version: v1}}
"""
    tenant = f"""
tenant: crash
clients:
  - {{id: crash-app, secretHash: "{hash_secret(SECRET)}", scopes: [service]}}
credentials:
  - {{id: ec, upstream: vendor-a, upstreamCredentialID: vendor-a/ec-signer}}
"""
    url = 'http://127.0.0.1:8304'
    handle = start_gateway(tmp_path, config, {'crash': tenant}, url=url)
    s = requests.Session()
    token = s.post(f'{url}/csc/v1/auth/login', json={}, auth=('crash-app', SECRET), timeout=5).json()['access_token']
    auth = {'Authorization': f'Bearer {token}'}
    received = 0
    for i in range(3):
        sad = s.post(f'{url}/csc/v1/credentials/authorize', json={'credentialID': 'ec', 'numSignatures': 2},
                     headers=auth, timeout=5).json()['SAD']
        hashes = [base64.b64encode(hashlib.sha256(f'{i}-{k}'.encode()).digest()).decode() for k in range(2)]
        r = s.post(f'{url}/csc/v1/signatures/signHash', json={'credentialID': 'ec', 'SAD': sad, 'hash': hashes,
                                                             'signAlgo': EC}, headers=auth, timeout=5)
        assert r.status_code == 200, r.text
        received += len(r.json()['signatures'])
    os.kill(handle.proc.pid, signal.SIGKILL)
    handle.proc.wait(5)

    db = sqlite3.connect(tmp_path / 'ledger.sqlite')
    assert db.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0] == 0, 'every event is in the journal only'
    db.close()
    verify = subprocess.run([cscgate_bin(), 'ledger', 'verify', '--config', str(tmp_path / 'gateway.yaml')],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert 'stored 6 usage events from the journal' in verify.stderr, verify.stderr
    assert 'ledger intact' in verify.stdout and 'crash: 6 events, 1 signed checkpoints verified' in verify.stdout, verify.stdout
    db = sqlite3.connect(tmp_path / 'ledger.sqlite')
    billed = db.execute("SELECT SUM(signatures) FROM usage_events WHERE outcome = 'ok'").fetchone()[0]
    assert billed == received == 6
    report = subprocess.run([cscgate_bin(), 'report', '--config', str(tmp_path / 'gateway.yaml'), '--tenant', 'crash',
                             '--from', '2000-01-01', '--to', '2100-01-01', '--group-by', 'operation', '--format', 'json'],
                            capture_output=True, text=True, check=True)
    assert 'stored' not in report.stderr, 'stored once, by the first reader'
    lines = {l['key']: l for l in json.loads(report.stdout)['lines']}
    assert lines['signatures/signHash']['billed_signatures'] == received
