"""Policies and limits on one gateway, against the real vendor-a dummy.

* A policy denial is 403 with the rule's reason, recorded as a denied event (stage `policy`),
  never billed.
* N concurrent signHash requests against a rate limit of K signatures (no refill within the
  test) succeed exactly K times; the others are 429 with Retry-After, RateLimit and
  RateLimit-Policy, naming the limit; each is a denied event with stage `limit`.
* The same against a monthly quota of Q: exactly Q, the 80 % and 100 % events are listed by
  GET /admin/v1/quota-events.
"""
from __future__ import annotations

import secrets as pysecrets
from concurrent.futures import ThreadPoolExecutor

from policy_support import Client, admin, free_port, gateway_config, launch, ledger_rows, tenant_file

SECRET = 'limits-client-secret-' + pysecrets.token_hex(6)
N = 30
K = 7
QUOTA = 5

POLICY = f"""
policy: e2e-limits
default: allow
rules:
  - id: no-rsa-sha256
    when: {{operation: signatures/signHash, signAlgo: 1.2.840.113549.1.1.11}}
    effect: deny
    reason: RSA with SHA-256 is not allowed for this tenant
  - id: per-credential
    when: {{operation: signatures/signHash, credential: "rated-*"}}
    effect: limit
    limit: {{scope: credential, unit: signatures, rate: {K}, period: 1d, burst: {K}}}
"""


def burst(client: Client, credential: str, n: int) -> list:
    sads = [client.authorize(credential) for _ in range(n)]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda sad: client.sign(credential, sad), sads))


def test_policy_denial_and_exact_limits_and_quota(peers, tmp_path):
    port = free_port()
    url = f'http://127.0.0.1:{port}'
    tenants = {
        'lim': tenant_file('lim', 'lim-app', SECRET, policies=['e2e-limits'],
                           credentials={'rated-ec': 'vendor-a/ec-signer', 'rsa': 'vendor-a/rsa-signer',
                                        'quota-ec': 'vendor-a/ec-signer'},
                           extra=f'plan: {{currency: EUR, pricePerSignature: "0.01", monthlyQuota: 1000}}'),
        'quo': tenant_file('quo', 'quo-app', SECRET + 'q', policies=[],
                           credentials={'ec': 'vendor-a/ec-signer'},
                           extra=f'plan: {{currency: EUR, pricePerSignature: "0.01", monthlyQuota: {QUOTA}, '
                                 f'quotaThresholds: [80]}}'),
    }
    g = launch(tmp_path / 'gw', gateway_config(port, peers['vendor-a'].base_url), tenants, {'e2e-limits': POLICY}, url)
    try:
        lim = Client(url, 'lim-app', SECRET)

        # Policy: denied with the rule's reason, before anything is signed.
        r = lim.sign('rsa', lim.authorize('rsa'), sign_algo='1.2.840.113549.1.1.11', request_id='deny-1')
        assert r.status_code == 403, r.text
        assert r.json() == {'error': 'access_denied',
                            'error_description': 'RSA with SHA-256 is not allowed for this tenant'}

        # Rate: exactly K of N concurrent requests.
        answers = burst(lim, 'rated-ec', N)
        ok = [a for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code == 429]
        assert len(ok) == K, [(a.status_code, a.text[:120]) for a in answers]
        assert len(refused) == N - K
        sample = refused[0]
        assert sample.json()['error'] == 'limit_exceeded'
        assert "Limit 'e2e-limits/per-credential'" in sample.json()['error_description']
        assert int(sample.headers['Retry-After']) >= 1
        assert sample.headers['RateLimit-Policy'] == f'"e2e-limits/per-credential";q={K};w=86400'
        assert sample.headers['RateLimit'].startswith('"e2e-limits/per-credential";r=0;t=')
        # Other credentials of the tenant have their own counter.
        assert lim.sign('quota-ec', lim.authorize('quota-ec')).status_code == 200

        # Quota: exactly QUOTA of N concurrent requests over the month.
        quo = Client(url, 'quo-app', SECRET + 'q')
        answers = burst(quo, 'ec', 12)
        assert sorted(a.status_code for a in answers) == [200] * QUOTA + [429] * (12 - QUOTA)
        text = next(a for a in answers if a.status_code == 429).json()['error_description']
        assert f'monthly quota of {QUOTA} signatures' in text and 'is used up' in text
        events = admin(url, 'GET', 'quota-events?tenant=quo').json()['events']
        assert sorted(e['percent'] for e in events) == [80, 100]
        assert all(e['quota'] == QUOTA for e in events)
        assert 'monthly quota threshold reached' in g.log_tail(400)
    finally:
        g.stop()

    rows = ledger_rows(tmp_path / 'gw', "SELECT outcome, stage, reason, signatures FROM usage_events "
                                         "WHERE tenant = 'lim' AND request_id = 'deny-1'")
    assert rows == [('denied', 'policy', 'RSA with SHA-256 is not allowed for this tenant', 0)]
    limited = ledger_rows(tmp_path / 'gw', "SELECT COUNT(*), SUM(signatures) FROM usage_events "
                                           "WHERE tenant = 'lim' AND outcome = 'denied' AND stage = 'limit'")
    assert limited == [(N - K, 0)]
    billed = ledger_rows(tmp_path / 'gw', "SELECT SUM(signatures) FROM usage_events WHERE tenant = 'quo' AND outcome = 'ok' "
                                          "AND operation = 'signatures/signHash'")
    assert billed == [(QUOTA,)]
