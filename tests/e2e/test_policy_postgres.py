"""Limits shared through PostgreSQL.

* Two gateway instances on one counter store: N concurrent signHash requests spread over both
  against a rate limit of K (and a quota of Q) succeed exactly K (Q) times in total.
* A concurrency cap per upstream holds across both instances: with the upstream slowed down
  (a fault proxy in front of the real dummy), N simultaneous signHash requests over both
  instances get exactly `cap` through; the permits come back when those calls end.
* The counter store stops answering (a TCP proxy in front of PostgreSQL freezes): requests
  answer within the configured timeout — 503 for a fail-closed tenant, 200 for a fail-open
  one — and the admin API counts both; when it answers again, limits apply again.

Needs CSCGATE_TEST_POSTGRES_URL (`make test` starts scripts/postgres.sh and sets it).
"""
from __future__ import annotations

import base64
import secrets as pysecrets
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from fault_proxy import FaultProxy
from policy_support import PG_URL, Client, FreezingProxy, admin, free_port, gateway_config, launch, tenant_file

pytestmark = pytest.mark.skipif(not PG_URL, reason='CSCGATE_TEST_POSTGRES_URL is unset (make test sets it)')

SECRET = 'pg-limits-secret-' + pysecrets.token_hex(6)
K = 9
Q = 6
N = 40

POLICY = f"""
policy: shared-limits
default: allow
rules:
  - id: per-credential
    when: {{operation: signatures/signHash, credential: rated}}
    effect: limit
    limit: {{scope: credential, unit: signatures, rate: {K}, period: 1d, burst: {K}}}
"""


def counters(url: str, schema: str, timeout: float = 0.3) -> str:
    return f'counters: {{url: "{url}", schema: {schema}, timeout: {timeout}}}'


def shared(url: str, schema: str) -> str:
    """Counters and sessions in one schema: a SAD authorized on one instance is spent on either."""
    return counters(url, schema, timeout=2) + f'\nsessions: {{url: "{url}", schema: {schema}, timeout: 2}}'


def drop(schema: str):
    psql = shutil.which('psql') or '/usr/lib/postgresql/15/bin/psql'
    subprocess.run([psql, PG_URL, '-qAtc', f'DROP SCHEMA IF EXISTS {schema} CASCADE'], capture_output=True, timeout=60)


def test_two_instances_share_exact_limits_and_quotas(peers, tmp_path):
    schema = 'lim_' + pysecrets.token_hex(5)
    (tmp_path / 'sad.key').write_text(base64.b64encode(pysecrets.token_bytes(32)).decode())
    tenants = {'shared': tenant_file('shared', 'shared-app', SECRET, policies=['shared-limits'],
                                     credentials={'rated': 'vendor-a/ec-signer', 'metered': 'vendor-a/ec-signer'},
                                     extra=f'plan: {{currency: EUR, pricePerSignature: "0.01", monthlyQuota: {K + Q}}}')}
    ports = [free_port(), free_port()]
    urls = [f'http://127.0.0.1:{p}' for p in ports]
    gateways = []
    try:
        for i, port in enumerate(ports):
            config = gateway_config(port, peers['vendor-a'].base_url, sad_key=tmp_path / 'sad.key',
                                    extra=shared(PG_URL, schema))
            gateways.append(launch(tmp_path / f'gw{i}', config, tenants, {'shared-limits': POLICY}, urls[i]))
        clients = [Client(u, 'shared-app', SECRET) for u in urls]

        def run(credential: str, n: int) -> list[int]:
            # SADs from instance 0 work on instance 1 too (one SAD key, shared sessions); each request goes to one of the two.
            sads = [clients[0].authorize(credential) for _ in range(n)]
            with ThreadPoolExecutor(n) as pool:
                return list(pool.map(lambda i: clients[i % 2].sign(credential, sads[i]).status_code, range(n)))

        codes = run('rated', N)
        assert codes.count(200) == K and codes.count(429) == N - K, codes
        # The quota of K + Q has K used by now: Q more, across both instances.
        codes = run('metered', 20)
        assert codes.count(200) == Q and codes.count(429) == 20 - Q, codes
    finally:
        for g in gateways:
            g.stop()
        drop(schema)


def test_two_instances_share_one_concurrency_cap_per_upstream(peers, tmp_path):
    cap, n = 3, 12
    schema = 'lim_' + pysecrets.token_hex(5)
    policy = f"""
policy: vendor-account
default: allow
rules:
  - {{id: in-flight, when: {{operation: signatures/signHash}}, effect: limit,
     limit: {{scope: upstream, concurrency: {cap}}}}}
"""
    (tmp_path / 'sad.key').write_text(base64.b64encode(pysecrets.token_bytes(32)).decode())
    tenants = {'capped': tenant_file('capped', 'capped-app', SECRET, policies=['vendor-account'],
                                     credentials={'ec': 'vendor-a/ec-signer'})}
    slow = FaultProxy(peers['vendor-a'].base_url.rsplit('/csc/', 1)[0]).start()
    ports = [free_port(), free_port()]
    urls = [f'http://127.0.0.1:{p}' for p in ports]
    gateways = []
    try:
        for i, port in enumerate(ports):
            config = gateway_config(port, slow.url, sad_key=tmp_path / 'sad.key', extra=shared(PG_URL, schema))
            gateways.append(launch(tmp_path / f'gw{i}', config, tenants, {'vendor-account': policy}, urls[i]))
        clients = [Client(u, 'capped-app', SECRET) for u in urls]
        sads = [clients[0].authorize('ec') for _ in range(n)]
        # Every signHash now sits 3 s at the proxy: all n are in flight at once.
        slow.set_fault('delay', paths=['signatures/signHash'], delay=3.0)
        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(lambda i: clients[i % 2].sign('ec', sads[i]), range(n)))
        codes = [r.status_code for r in answers]
        assert codes.count(200) == cap and codes.count(429) == n - cap, codes
        refused = next(r for r in answers if r.status_code == 429)
        assert "Limit 'vendor-account/in-flight'" in refused.json()['error_description'], refused.text
        assert 'already in flight' in refused.json()['error_description']
        assert refused.headers['Retry-After'] == '1'

        # The calls are over: their permits are back, on both instances.
        slow.clear()
        for i in range(2 * cap):
            assert clients[i % 2].sign('ec', clients[0].authorize('ec')).status_code == 200
    finally:
        for g in gateways:
            g.stop()
        slow.stop()
        drop(schema)


def test_counter_store_down_answers_within_the_timeout_with_each_tenants_mode(peers, tmp_path):
    schema = 'lim_' + pysecrets.token_hex(5)
    pg = urlsplit(PG_URL)
    proxy = FreezingProxy(pg.port or 5432)
    proxied = PG_URL.replace(f':{pg.port}/', f':{proxy.port}/')
    policy = """
policy: tight
default: allow
rules:
  - {id: rate, when: {operation: signatures/signHash}, effect: limit,
     limit: {scope: credential, rate: 1000, period: 1s, burst: 1000}}
"""
    tenants = {
        'careful': tenant_file('careful', 'careful-app', SECRET, policies=['tight'],
                               credentials={'ec': 'vendor-a/ec-signer'}, extra='limits: {counterStoreFailure: closed}'),
        'relaxed': tenant_file('relaxed', 'relaxed-app', SECRET + 'r', policies=['tight'],
                               credentials={'ec': 'vendor-a/ec-signer'}, extra='limits: {counterStoreFailure: open}'),
    }
    port = free_port()
    url = f'http://127.0.0.1:{port}'
    g = None
    try:
        g = launch(tmp_path / 'gw', gateway_config(port, peers['vendor-a'].base_url, extra=counters(proxied, schema, 0.3)),
                   tenants, {'tight': policy}, url)
        careful, relaxed = Client(url, 'careful-app', SECRET), Client(url, 'relaxed-app', SECRET + 'r')
        assert careful.sign('ec', careful.authorize('ec')).status_code == 200
        assert relaxed.sign('ec', relaxed.authorize('ec')).status_code == 200

        proxy.freeze()
        sads = [(c, c.authorize('ec')) for _ in range(3) for c in (careful, relaxed)]
        for client, sad in sads:
            started = time.monotonic()
            r = client.sign('ec', sad, timeout=10)
            elapsed = time.monotonic() - started
            # The decision waits at most the 0.3 s timeout; a fail-open request then also calls the upstream.
            assert elapsed < (1.5 if client is careful else 3.0), (elapsed, r.status_code, r.text)
            if client is careful:
                assert r.status_code == 503, r.text
                assert 'limit counters cannot be reached' in r.json()['error_description']
                assert r.headers['Retry-After'] == '1'
            else:
                assert r.status_code == 200, r.text
        stats = admin(url, 'GET', 'limits').json()
        assert stats['counterStore'] == 'postgres'
        assert stats['failedClosed'] == 3 and stats['failedOpen'] == 3, stats
        assert 'limit counters unreachable' in g.log_tail(200)

        proxy.thaw()
        deadline = time.monotonic() + 20
        while True:
            time.sleep(1.1)
            if careful.sign('ec', careful.authorize('ec')).status_code == 200:
                break
            assert time.monotonic() < deadline, 'limits did not recover after the store came back'
    finally:
        if g:
            g.stop()
        proxy.stop()
        drop(schema)
