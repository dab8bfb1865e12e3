"""Secrets stay secret (DESIGN.md invariant 4): runs last among the gateway tests and greps both
gateways' logs for every client secret, access token, refresh token, gateway SAD and upstream
SAD the suite used. It also makes its own traffic first (success and error paths), so it means
something when run alone."""

import base64

import pytest

from gateway_suite import ROUTES, SECRETS, digest


def _own_traffic(gw):
    api = gw.api
    login = api.login('alpha-app', remember=True)
    token = login['access_token']
    r = api.post('v1/auth/login', {'refresh_token': login['refresh_token']})
    assert r.status_code == 200, r.text
    token2 = r.json()['access_token']
    h1, h2 = digest('secrets-1'), digest('secrets-2')
    # success paths: SCAL 1 with extension, SCAL 2, v2
    sad = api.sad(token2, 'alpha-ec', 2)
    assert api.sign(token2, 'alpha-ec', sad, [h1]).status_code == 200
    ext = api.post('v1/credentials/extendTransaction', {'credentialID': 'alpha-ec', 'SAD': sad},
                   token2)
    assert ext.status_code == 200, ext.text
    sad_b = api.sad(token2, 'alpha-ec-b', 1, [h2], v='v2')
    assert api.sign(token2, 'alpha-ec-b', sad_b, [h2], v='v2').status_code == 200
    # error paths that carry secrets in the request
    api.sign(token2, 'alpha-ec', sad, [h2])  # retired SAD
    api.sign(token2, 'alpha-ec', sad[:-4] + 'AAAA', [h2])  # tampered SAD
    api.sign(gw.tokens['beta-app'], 'beta-ec', ext.json()['SAD'], [h2])  # other tenant
    api.sign(token2, 'alpha-ec-b', sad_b, [h1])  # hash not covered
    api.post('v1/credentials/list', {}, token + 'x')  # bad token
    api.post('v1/auth/login', {}, auth=('alpha-app', SECRETS['alpha-app'] + '!'))
    api.post('v1/auth/login', {'refresh_token': login['refresh_token']})  # spent refresh token
    api.post('oauth2/token', data={'grant_type': 'client_credentials',
                                   'client_id': 'beta-app', 'client_secret': SECRETS['beta-app']})
    # flaky upstream error path with an upstream SAD in flight
    gamma = gw.tokens['gamma-app']
    gsad = api.sad(gamma, 'gamma-flaky-ec', 1)
    gw.proxy.set_fault('text500', paths=['signatures/signHash'])
    try:
        api.sign(gamma, 'gamma-flaky-ec', gsad, [h1])
    finally:
        gw.proxy.clear()
    assert api.post('v1/auth/revoke', {'token': token}, token2).status_code == 204


def _upstream_sads(gw) -> set[str]:
    """The dummy's SADs are deterministic: asking it the same question again gives the SAD the
    gateway got (PEER-NOTES.md). Ask for every authorization the suite made."""
    out, seen = set(), set()
    for cred, num, hashes in list(gw.ledger.authorizations):
        up, upid = ROUTES[cred]
        vendor = {'vendor-a': 'vendor-a', 'flaky': 'vendor-a', 'vendor-b': 'vendor-b'}.get(up)
        if vendor is None:
            continue
        key = (vendor, upid, int(num), tuple(hashes) if hashes else None)
        if key in seen:
            continue
        seen.add(key)
        body = {'credentialID': upid, 'numSignatures': int(num)}
        if hashes:
            body['hash'] = list(hashes)
        r = gw.api.s.post(f'{gw.peers[vendor].base_url}/credentials/authorize', json=body,
                          timeout=10)
        assert r.status_code == 200, (body, r.text)
        out.add(r.json()['SAD'])
    return out


KNOWN_PREFIXES = ('gsad1.', 'cga_', 'cgr_', 'alpha-app-secret-', 'alpha-batch-secret-',
                  'beta-app-secret-', 'gamma-app-secret-')


def _needles(secret: str, structured_head: bool = False) -> list[str]:
    """The whole value, and 16-character slices of its random part from the start, middle and
    end, so a truncated or partly masked copy in the log is caught too. (The dummy's SADs start
    with the same PAE length header: their head is structure, not secret, and is skipped.)"""
    core = secret
    for p in KNOWN_PREFIXES:
        if core.startswith(p):
            core = core[len(p):]
            break
    out = [secret]
    if len(core) >= 16:
        m = len(core) // 2
        out += ([] if structured_head else [core[:16]]) + [core[m - 8:m + 8], core[-16:]]
    return out


def test_no_secrets_in_gateway_logs(gw):
    _own_traffic(gw)
    ledger = gw.ledger
    upstream = _upstream_sads(gw) | ledger.upstream_sads
    # the recomputation is right: every SAD seen on the wire through the proxy is among them
    assert gw.proxy.seen_sads, 'the proxy saw no upstream SAD'
    assert gw.proxy.seen_sads <= upstream, 'upstream SADs are not deterministic after all?'
    upstream |= gw.proxy.seen_sads

    basic = {base64.b64encode(f'{c}:{s}'.encode()).decode() for c, s in SECRETS.items()}
    kinds = {
        'client secret': set(ledger.client_secrets),
        'Basic header value': basic,
        'access token': set(ledger.access_tokens),
        'refresh token': set(ledger.refresh_tokens),
        'gateway SAD': set(ledger.gateway_sads),
        'upstream SAD': upstream,
    }
    # enough of each kind was actually used for the check to mean something
    assert len(kinds['client secret']) == len(SECRETS) == 4
    assert len(kinds['access token']) >= 5 and len(kinds['refresh token']) >= 2
    assert len(kinds['gateway SAD']) >= 5 and len(kinds['upstream SAD']) >= 3
    # no gateway SAD carries an upstream SAD in clear
    for g in kinds['gateway SAD']:
        assert g.startswith('gsad1.')
        assert not any(u in g for u in upstream)

    logs = {}
    for handle in (gw.main, gw.short):
        text = handle.log_path.read_text(errors='replace')
        assert 'credentials/authorize' in text and 'signatures/signHash' in text, \
            f'{handle.log_path} does not look like the request log'
        logs[str(handle.log_path)] = text

    leaks = []
    for kind, values in kinds.items():
        structured = kind in ('upstream SAD', 'Basic header value')
        for value in sorted(values):
            for needle in _needles(value, structured_head=structured):
                for path, text in logs.items():
                    if needle in text:
                        line = next(ln for ln in text.splitlines() if needle in ln)
                        leaks.append(f'{kind} {value[:12]}… in {path}: {line[:200]}')
                        break
    if leaks:
        pytest.fail(f'{len(leaks)} secret(s) found in gateway logs:\n' + '\n'.join(leaks[:20]),
                    pytrace=False)
