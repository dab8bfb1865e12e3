"""Two gateway instances, one PostgreSQL ledger.

Two real `cscgate serve` processes share one ledger (a fresh schema of the test database) and
the same SAD and checkpoint keys. Clients of each run a short bounded load of signHash
requests; one request in five is then retried, with the same X-Request-ID, through the *other*
instance, which must answer it from the shared ledger without signing or billing again.
Afterwards `cscgate ledger verify` finds one intact chain, and the signatures clients received
equal the signatures billed.

Needs CSCGATE_TEST_POSTGRES_URL (`make test` starts scripts/postgres.sh and sets it).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets as pysecrets
import shutil
import subprocess
import threading
import time

import pytest
import requests

from gateway_fixture import cscgate_bin, hash_secret, start_gateway

URLS = ['http://127.0.0.1:8313', 'http://127.0.0.1:8314']
SECRET = 'shared-client-secret-' + pysecrets.token_hex(6)
EC = '1.2.840.10045.4.3.2'
THREADS_PER_INSTANCE = 3
REQUESTS_PER_THREAD = 40
PG_URL = os.environ.get('CSCGATE_TEST_POSTGRES_URL', '')

pytestmark = pytest.mark.skipif(not PG_URL, reason='CSCGATE_TEST_POSTGRES_URL is unset (make test sets it)')


def psql(sql: str, schema: str) -> str:
    """One statement through psql, in the test's schema."""
    psql_bin = shutil.which('psql') or '/usr/lib/postgresql/15/bin/psql'
    r = subprocess.run([psql_bin, PG_URL, '-v', 'ON_ERROR_STOP=1', '-qAtc', f'SET search_path = {schema}; {sql}'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_two_instances_share_one_intact_ledger_and_bill_what_clients_received(peers, tmp_path):
    schema = 'e2e_' + pysecrets.token_hex(6)
    (tmp_path / 'sad.key').write_text(base64.b64encode(pysecrets.token_bytes(32)).decode())
    url = PG_URL.split('?', 1)[0]
    tenant = f"""
tenant: shared
clients:
  - {{id: shared-app, secretHash: "{hash_secret(SECRET)}", scopes: [service]}}
credentials:
  - {{id: ec, upstream: vendor-a, upstreamCredentialID: vendor-a/ec-signer}}
"""

    def config(port: int) -> str:
        return f"""
listen: {{host: 127.0.0.1, port: {port}}}
sad: {{keyFile: {tmp_path / 'sad.key'}}}
ledger:
  url: "{url}?sslmode=disable"
  schema: {schema}
  checkpointKeyFile: {tmp_path / 'ledger.key'}
  checkpointInterval: 25
upstreams:
  - {{name: vendor-a, kind: csc, baseURL: "{peers['vendor-a'].base_url}", version: v1}}
"""

    # The first instance creates the checkpoint key and migrates; the second reuses both.
    gateways = []
    for i, u in enumerate(URLS):
        workdir = tmp_path / f'instance-{i}'
        gateways.append(start_gateway(workdir, config(int(u.rsplit(':', 1)[1])), {'shared': tenant}, url=u))
    received: dict[str, int] = {}
    retried_answers: list[tuple[str, list[str], list[str]]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 90
    errors: list[str] = []

    def session(u: str):
        s = requests.Session()
        r = s.post(f'{u}/csc/v1/auth/login', json={}, auth=('shared-app', SECRET), timeout=10)
        r.raise_for_status()
        s.headers['Authorization'] = f"Bearer {r.json()['access_token']}"
        return s

    def worker(instance: int, n: int):
        try:
            here, there = session(URLS[instance]), session(URLS[1 - instance])
            sad = None
            for i in range(REQUESTS_PER_THREAD):
                assert time.monotonic() < stop_at, 'load took too long'
                if i % 10 == 0:
                    r = here.post(f'{URLS[instance]}/csc/v1/credentials/authorize',
                                  json={'credentialID': 'ec', 'numSignatures': 10}, timeout=10)
                    assert r.status_code == 200, r.text
                    sad = r.json()['SAD']
                rid = f'shared-{instance}-{n}-{i}'
                digest = base64.b64encode(hashlib.sha256(rid.encode()).digest()).decode()
                body = {'credentialID': 'ec', 'SAD': sad, 'hash': [digest], 'signAlgo': EC}
                r = here.post(f'{URLS[instance]}/csc/v1/signatures/signHash', json=body,
                              headers={'X-Request-ID': rid}, timeout=10)
                assert r.status_code == 200, (rid, r.status_code, r.text)
                signatures = r.json()['signatures']
                with lock:
                    received[rid] = len(signatures)
                if i % 5 == 0:
                    # The client retries through the other instance: the shared ledger answers.
                    again = there.post(f'{URLS[1 - instance]}/csc/v1/signatures/signHash', json=body,
                                       headers={'X-Request-ID': rid}, timeout=10)
                    assert again.status_code == 200, (rid, again.status_code, again.text)
                    with lock:
                        retried_answers.append((rid, signatures, again.json()['signatures']))
        except Exception as e:  # noqa: BLE001 - reported below with the thread's name
            with lock:
                errors.append(f'instance {instance} worker {n}: {e!r}')

    threads = [threading.Thread(target=worker, args=(k, n))
               for k in range(len(URLS)) for n in range(THREADS_PER_INSTANCE)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(100)
    finally:
        for g in gateways:
            g.stop()

    assert not errors, '\n'.join(errors)
    total = len(URLS) * THREADS_PER_INSTANCE * REQUESTS_PER_THREAD
    assert len(received) == total
    assert retried_answers and all(first == second for _, first, second in retried_answers)

    config_file = str(tmp_path / 'instance-0' / 'gateway.yaml')
    verify = subprocess.run([cscgate_bin(), 'ledger', 'verify', '--config', config_file],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert 'ledger intact' in verify.stdout
    assert 'shared: ' in verify.stdout and 'signed checkpoints verified' in verify.stdout

    billed = int(psql("SELECT COALESCE(SUM(signatures), 0) FROM usage_events "
                      "WHERE outcome = 'ok' AND operation = 'signatures/signHash'", schema))
    billed_ids = int(psql("SELECT COUNT(DISTINCT request_id) FROM usage_events "
                          "WHERE outcome = 'ok' AND operation = 'signatures/signHash'", schema))
    assert billed == sum(received.values())
    assert billed_ids == len(received)
    # One chain: seqs 1..n with no gap, whichever instance wrote each event.
    seqs = psql("SELECT COUNT(*), MIN(seq), MAX(seq) FROM usage_events WHERE tenant = 'shared'", schema).split('|')
    assert seqs[0] == seqs[2] and seqs[1] == '1'

    report = subprocess.run([cscgate_bin(), 'report', '--config', config_file, '--tenant', 'shared',
                             '--from', '2000-01-01', '--to', '2100-01-01', '--group-by', 'operation',
                             '--format', 'json'], capture_output=True, text=True, check=True, timeout=120)
    lines = {line['key']: line for line in json.loads(report.stdout)['lines']}
    assert lines['signatures/signHash']['billed_signatures'] == billed
    psql(f'DROP SCHEMA {schema} CASCADE', 'public')
