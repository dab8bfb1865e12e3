"""Reload without restart, under a bounded load.

While clients sign continuously: a policy change (picked up by the file watch), a new
credential in the tenant file (SIGHUP), and an invalid policy file (POST /admin/v1/reload).
No request of the load fails; the new rule and the new credential apply from then on; the
invalid change is refused whole, reported by the admin API and the log, and the running rules
stay in force.
"""
from __future__ import annotations

import secrets as pysecrets
import signal
import threading
import time

from policy_support import Client, admin, free_port, gateway_config, launch, tenant_file, write_atomically

SECRET = 'reload-secret-' + pysecrets.token_hex(6)

OPEN = """
policy: batch
default: allow
rules:
  - {id: anything, effect: allow}
"""
SMALL_BATCHES = """
policy: batch
default: allow
rules:
  - id: small-batches
    when: {operation: signatures/signHash, hashes: {min: 2}}
    effect: deny
    reason: Only one hash per request since the reload
"""
BROKEN = """
policy: batch
default: allow
rules:
  - id: small-batches
    when: {operation: signatures/signHash, hashes: {min: 2}, colour: red}
    effect: deny
    reason: never applied
"""


def test_reload_under_load(peers, tmp_path):
    port = free_port()
    url = f'http://127.0.0.1:{port}'
    work = tmp_path / 'gw'

    def tenant(credentials: dict[str, str]) -> str:
        return tenant_file('rl', 'rl-app', SECRET, policies=['batch'], credentials=credentials)

    g = launch(work, gateway_config(port, peers['vendor-a'].base_url, poll=0.3),
               {'rl': tenant({'ec': 'vendor-a/ec-signer'})}, {'batch': OPEN}, url)
    client = Client(url, 'rl-app', SECRET)
    stop = threading.Event()
    results: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()

    def load():
        while not stop.is_set():
            try:
                r = client.sign('ec', client.authorize('ec'))
                with lock:
                    results.append(r.status_code)
                    if r.status_code != 200:
                        failures.append(f'{r.status_code} {r.text[:200]}')
            except Exception as e:  # noqa: BLE001
                with lock:
                    failures.append(repr(e))

    def probe(credential: str = 'ec', hashes: int = 2) -> int:
        r = client.s.post(f'{url}/csc/v1/credentials/authorize', json={'credentialID': credential, 'numSignatures': hashes},
                          timeout=10)
        if r.status_code != 200:
            return r.status_code
        return client.sign(credential, r.json()['SAD'], hashes=hashes).status_code

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        assert probe() == 200

        # 1. A policy change, found by the file watch.
        write_atomically(work / 'policies' / 'batch.yaml', SMALL_BATCHES)
        deadline = time.monotonic() + 10
        while probe() != 403:
            assert time.monotonic() < deadline, 'the new policy did not apply'
            time.sleep(0.2)
        r = client.sign('ec', client.authorize('ec', 2), hashes=2)
        assert r.json()['error_description'] == 'Only one hash per request since the reload'

        # 2. A new credential mapping, applied on SIGHUP.
        assert probe('ec2', 1) == 400  # unknown credential id
        (work / 'tenants' / 'rl.yaml').write_text(tenant({'ec': 'vendor-a/ec-signer', 'ec2': 'vendor-a/ec-signer'}))
        g.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while probe('ec2', 1) != 200:
            assert time.monotonic() < deadline, 'the new credential did not appear'
            time.sleep(0.2)

        # 3. An invalid change: refused whole, reported; the running rules stay.
        write_atomically(work / 'policies' / 'batch.yaml', BROKEN)
        r = admin(url, 'POST', 'reload')
        assert r.status_code == 422, r.text
        body = r.json()
        assert body['status'] == 'refused'
        assert any('batch.yaml:6' in i and "unknown key 'rules[0].when.colour'" in i for i in body['issues']), body
        assert admin(url, 'GET', 'reload').json()['status'] == 'refused'
        assert probe() == 403, 'the last good policy must stay in force'
        assert probe('ec2', 1) == 200, 'the last good tenants must stay in force'
        time.sleep(1)

        # And a valid one again through the admin API.
        write_atomically(work / 'policies' / 'batch.yaml', OPEN)
        r = admin(url, 'POST', 'reload')
        assert r.status_code == 200 and r.json()['status'] == 'applied', r.text
        assert probe() == 200
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        log = g.log_tail(2000)
        g.stop()

    assert len(results) >= 20, f'the load made only {len(results)} requests'
    assert not failures, failures[:5]
    assert 'configuration change refused' in log
    assert 'configuration reloaded' in log
