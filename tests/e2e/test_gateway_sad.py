"""SAD binding (DESIGN.md invariant 3): a gateway SAD works only for the tenant, client and
credential it was issued for, within its budget and (SCAL 2) for the hashes it covers —
whatever the upstream dummy itself would let through (it accepts replays, subset-only hash
checks, and any SAD made for the same upstream credential)."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from gateway_suite import ECDSA_SHA256, assert_csc_error, b64, digest


def _ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def test_sad_of_alpha_refused_for_beta(gw):
    """alpha-ec and beta-ec are the same upstream credential (vendor-a/ec-signer): only the
    gateway's binding can stop beta from spending alpha's SAD."""
    alpha, beta = gw.tokens['alpha-app'], gw.tokens['beta-app']
    h = digest('cross-tenant')
    sad = gw.api.sad(alpha, 'alpha-ec', 2)
    # beta, with its own credential id that maps to the same upstream key
    r = gw.api.sign(beta, 'beta-ec', sad, [h])
    assert_csc_error(r, 400, 'invalid_request', 'SAD')
    # beta, naming alpha's credential: alpha's ids do not exist for beta
    r = gw.api.sign(beta, 'alpha-ec', sad, [h])
    assert_csc_error(r, 400, 'invalid_request')
    assert r.status_code != 200
    # the refusals took nothing out of alpha's budget: alpha can still sign twice
    _ok(gw.api.sign(alpha, 'alpha-ec', sad, [h]))
    _ok(gw.api.sign(alpha, 'alpha-ec', sad, [h]))


def test_sad_bound_to_client_within_tenant(gw):
    """alpha-batch is a second client of tenant alpha: same tenant, same credential, but the
    SAD was issued to alpha-app."""
    app, batch = gw.tokens['alpha-app'], gw.tokens['alpha-batch']
    h = digest('other-client')
    for cred, hashes in (('alpha-ec', None), ('alpha-ec-b', [h])):
        sad = gw.api.sad(app, cred, 1, hashes)
        r = gw.api.sign(batch, cred, sad, [h])
        assert_csc_error(r, 400, 'invalid_request', 'SAD')
        r = gw.api.post('v1/credentials/extendTransaction', {'credentialID': cred, 'SAD': sad},
                        batch)
        assert_csc_error(r, 400, 'invalid_request')
        _ok(gw.api.sign(app, cred, sad, [h]))


def test_concurrent_double_spend(gw):
    """Eight parallel signHash calls on a one-signature SAD: exactly one may succeed."""
    token = gw.tokens['alpha-app']
    h = digest('race')
    sad = gw.api.sad(token, 'alpha-ec', 1)
    body = {'credentialID': 'alpha-ec', 'SAD': sad, 'hash': [b64(h)], 'signAlgo': ECDSA_SHA256}

    def one(_):
        r = requests.post(gw.api.url('v1/signatures/signHash'), json=body, timeout=15,
                          headers={'Authorization': f'Bearer {token}'})
        return r.status_code, r.headers.get('Content-Type', '')

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    codes = sorted(c for c, _ in results)
    assert codes == [200] + [400] * 7, codes
    assert all(ct.startswith('application/json') for _, ct in results)


def test_sad_refused_for_another_credential_of_the_same_tenant(gw):
    token = gw.tokens['alpha-app']
    h = digest('other-credential')
    sad = gw.api.sad(token, 'alpha-ec', 1)
    for other, algo in (('alpha-ec-b', ECDSA_SHA256), ('alpha-rsa', '1.2.840.113549.1.1.11')):
        r = gw.api.sign(token, other, sad, [h], algo)
        assert_csc_error(r, 400, 'invalid_request', 'SAD')
    _ok(gw.api.sign(token, 'alpha-ec', sad, [h]))


def test_replay_after_budget_is_spent(gw):
    """The dummy's SADs can be replayed without limit; the gateway's cannot."""
    token = gw.tokens['alpha-app']
    h1, h2, h3 = digest('budget-1'), digest('budget-2'), digest('budget-3')
    sad = gw.api.sad(token, 'alpha-ec', 2)
    # more hashes than the budget in one call
    r = gw.api.sign(token, 'alpha-ec', sad, [h1, h2, h3])
    assert_csc_error(r, 400, 'invalid_request')
    _ok(gw.api.sign(token, 'alpha-ec', sad, [h1]))
    _ok(gw.api.sign(token, 'alpha-ec', sad, [h2]))
    r = gw.api.sign(token, 'alpha-ec', sad, [h3])
    assert_csc_error(r, 400, 'invalid_request', 'used up')
    r = gw.api.sign(token, 'alpha-ec', sad, [h1])  # the very same request again
    assert_csc_error(r, 400, 'invalid_request', 'used up')


def test_scal2_hash_not_covered(gw):
    token = gw.tokens['alpha-app']
    h1, other = digest('scal2-1'), digest('scal2-other')
    sad = gw.api.sad(token, 'alpha-ec-b', 1, [h1])
    r = gw.api.sign(token, 'alpha-ec-b', sad, [other])
    assert_csc_error(r, 400, 'invalid_request', 'Hash is not authorized by the SAD')
    _ok(gw.api.sign(token, 'alpha-ec-b', sad, [h1]))


def test_scal2_authorize_requires_hashes(gw):
    r = gw.api.authorize(gw.tokens['alpha-app'], 'alpha-ec-b', 1, expect=None)
    assert_csc_error(r, 400, 'invalid_request')


def test_scal2_hash_multiset_is_enforced(gw):
    """Authorized [h1, h2]: the dummy's subset test would sign [h1, h1]; the gateway must not."""
    token = gw.tokens['alpha-app']
    h1, h2 = digest('multiset-1'), digest('multiset-2')
    sad = gw.api.sad(token, 'alpha-ec-b', 2, [h1, h2])
    r = gw.api.sign(token, 'alpha-ec-b', sad, [h1, h1])
    assert_csc_error(r, 400, 'invalid_request', 'Hash is not authorized by the SAD')
    _ok(gw.api.sign(token, 'alpha-ec-b', sad, [h1]))
    r = gw.api.sign(token, 'alpha-ec-b', sad, [h1])  # h1 is spent, h2 is still owed
    assert_csc_error(r, 400, 'invalid_request', 'Hash is not authorized by the SAD')
    _ok(gw.api.sign(token, 'alpha-ec-b', sad, [h2]))
    r = gw.api.sign(token, 'alpha-ec-b', sad, [h2])
    assert_csc_error(r, 400, 'invalid_request')


@pytest.mark.parametrize('cred', ['alpha-ec', 'alpha-ec-b'])
def test_num_signatures_above_multisign(gw, cred):
    token = gw.tokens['alpha-app']
    info = _ok(gw.api.info(token, cred, certificates='none'))
    assert info['multisign'] == 10
    hashes = [digest(f'multi-{i}') for i in range(11)]
    r = gw.api.authorize(token, cred, 11, hashes, expect=None)
    assert_csc_error(r, 400, 'invalid_request', 'too high')
    # ten is fine, in one batch
    sad = gw.api.sad(token, cred, 10, hashes[:10])
    sigs = _ok(gw.api.sign(token, cred, sad, hashes[:10]))['signatures']
    assert len(sigs) == 10 and len(set(sigs)) == 10


def test_num_signatures_must_be_positive(gw):
    r = gw.api.authorize(gw.tokens['alpha-app'], 'alpha-ec', 0, expect=None)
    assert_csc_error(r, 400, 'invalid_request', 'numSignatures')


def _flip(sad: str, pos: int) -> str:
    c = sad[pos]
    repl = 'A' if c != 'A' else 'B'
    return sad[:pos] + repl + sad[pos + 1:]


def test_tampered_sad(gw):
    token = gw.tokens['alpha-app']
    h = digest('tamper')
    sad = gw.api.sad(token, 'alpha-ec', 1)
    assert sad.startswith('gsad1.')
    body = len('gsad1.')
    for pos in (body + 5, (len(sad) + body) // 2, len(sad) - 3):
        r = gw.api.sign(token, 'alpha-ec', _flip(sad, pos), [h])
        assert_csc_error(r, 400, 'invalid_request', 'Invalid parameter SAD')
    for bad in (sad[:-10], sad + 'AAAA', 'gsad1.', sad.replace('gsad1.', 'gsad2.'), 'x' * 60):
        r = gw.api.sign(token, 'alpha-ec', bad, [h])
        assert_csc_error(r, 400, 'invalid_request', 'SAD')
    _ok(gw.api.sign(token, 'alpha-ec', sad, [h]))  # the genuine one still works


def test_upstream_sad_is_refused(gw):
    """A client that somehow got a raw upstream SAD cannot use it through the gateway."""
    token = gw.tokens['alpha-app']
    h = digest('raw-upstream')
    r = gw.api.s.post(f'{gw.peers["vendor-a"].base_url}/credentials/authorize',
                      json={'credentialID': 'vendor-a/ec-signer', 'numSignatures': 1}, timeout=10)
    raw = r.json()['SAD']
    gw.ledger.upstream_sads.add(raw)
    r = gw.api.sign(token, 'alpha-ec', raw, [h])
    assert_csc_error(r, 400, 'invalid_request', 'Invalid parameter SAD')


def test_sad_of_another_gateway_instance(gw):
    """Same tenant, client and credential, but sealed by the short-lived gateway's key."""
    token = gw.tokens['alpha-app']
    short_token = gw.short_api.token('alpha-app')
    h = digest('foreign-key')
    foreign = gw.short_api.sad(short_token, 'alpha-ec', 1)
    r = gw.api.sign(token, 'alpha-ec', foreign, [h])
    assert_csc_error(r, 400, 'invalid_request', 'Invalid parameter SAD')
    ours = gw.api.sad(token, 'alpha-ec', 1)
    r = gw.short_api.sign(short_token, 'alpha-ec', ours, [h])
    assert_csc_error(r, 400, 'invalid_request', 'Invalid parameter SAD')
    # each works at home
    _ok(gw.short_api.sign(short_token, 'alpha-ec', foreign, [h]))
    _ok(gw.api.sign(token, 'alpha-ec', ours, [h]))


def test_extend_transaction_scal1(gw):
    token = gw.tokens['alpha-app']
    h1, h2, h3 = digest('extend-1'), digest('extend-2'), digest('extend-3')
    old = gw.api.sad(token, 'alpha-ec', 2)
    _ok(gw.api.sign(token, 'alpha-ec', old, [h1]))
    r = gw.api.post('v1/credentials/extendTransaction', {'credentialID': 'alpha-ec', 'SAD': old},
                    token)
    new = _ok(r)
    assert new['SAD'].startswith('gsad1.') and new['SAD'] != old
    assert 0 < new.get('expiresIn', 3600) <= 3600
    # the old SAD is retired at once
    r = gw.api.sign(token, 'alpha-ec', old, [h2])
    assert_csc_error(r, 400, 'invalid_request', 'SAD')
    # the new one carries what was left (one signature), no more
    _ok(gw.api.sign(token, 'alpha-ec', new['SAD'], [h2]))
    r = gw.api.sign(token, 'alpha-ec', new['SAD'], [h3])
    assert_csc_error(r, 400, 'invalid_request', 'used up')
    # and it cannot be extended once spent, nor by another tenant
    r = gw.api.post('v1/credentials/extendTransaction',
                    {'credentialID': 'alpha-ec', 'SAD': new['SAD']}, token)
    assert_csc_error(r, 400, 'invalid_request')
    fresh = gw.api.sad(token, 'alpha-ec', 1)
    r = gw.api.post('v1/credentials/extendTransaction', {'credentialID': 'beta-ec', 'SAD': fresh},
                    gw.tokens['beta-app'])
    assert_csc_error(r, 400, 'invalid_request')
