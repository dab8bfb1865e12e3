"""Tenant isolation (DESIGN.md invariant 1): a client of beta never sees, lists, authorizes or
signs with alpha's credentials, and cannot tell them from ids that do not exist."""

import pytest

from gateway_suite import ECDSA_SHA256, TENANT_CREDENTIALS, assert_csc_error, b64, digest


@pytest.mark.parametrize('v', ['v1', 'v2'])
def test_lists_show_only_own_credentials(gw, v):
    for client, tenant in (('alpha-app', 'alpha'), ('beta-app', 'beta')):
        r = gw.api.post(f'{v}/credentials/list', {}, gw.tokens[client])
        assert r.status_code == 200, r.text
        assert sorted(r.json()['credentialIDs']) == sorted(TENANT_CREDENTIALS[tenant])
    r = gw.api.post('v2/credentials/list', {'credentialInfo': True, 'certificates': 'chain'},
                    gw.tokens['beta-app'])
    assert r.status_code == 200, r.text
    assert sorted(i['credentialID'] for i in r.json()['credentialInfos']) == ['beta-ec',
                                                                              'beta-rsa']


def test_v1_list_paging_stays_in_tenant(gw):
    token = gw.tokens['alpha-app']
    seen, page, rounds = [], None, 0
    while rounds < 10:
        body = {'maxResults': 1} | ({'pageToken': page} if page else {})
        r = gw.api.post('v1/credentials/list', body, token)
        assert r.status_code == 200, r.text
        ids = r.json()['credentialIDs']
        assert len(ids) <= 1
        seen += ids
        page = r.json().get('nextPageToken')
        rounds += 1
        if not page:
            break
    assert sorted(seen) == sorted(TENANT_CREDENTIALS['alpha'])


def test_user_id_cannot_reach_other_tenant(gw):
    r = gw.api.post('v1/credentials/list', {'userID': 'alpha'}, gw.tokens['beta-app'])
    assert r.status_code == 400 or (r.status_code == 200 and sorted(r.json()['credentialIDs'])
                                    == ['beta-ec', 'beta-rsa']), r.text
    if r.status_code == 400:
        assert_csc_error(r, 400)


def _beta_requests(gw, cred, sad):
    h = b64(digest('iso'))
    return [
        ('v1/credentials/info', {'credentialID': cred, 'certificates': 'chain'}),
        ('v2/credentials/info', {'credentialID': cred}),
        ('v1/credentials/authorize', {'credentialID': cred, 'numSignatures': 1, 'hash': [h]}),
        ('v2/credentials/authorize', {'credentialID': cred, 'numSignatures': 1, 'hashes': [h],
                                      'hashAlgorithmOID': '2.16.840.1.101.3.4.2.1'}),
        ('v1/signatures/signHash', {'credentialID': cred, 'SAD': sad, 'hash': [h],
                                    'signAlgo': ECDSA_SHA256}),
        ('v2/signatures/signHash', {'credentialID': cred, 'SAD': sad, 'hashes': [h],
                                    'signAlgo': ECDSA_SHA256}),
        ('v1/credentials/extendTransaction', {'credentialID': cred, 'SAD': sad}),
    ]


@pytest.mark.parametrize('victim', ['alpha-rsa', 'alpha-ec', 'alpha-ec-b'])
def test_alpha_credentials_are_unknown_to_beta(gw, victim):
    beta = gw.tokens['beta-app']
    alpha_sad = gw.api.sad(gw.tokens['alpha-app'], victim if victim != 'alpha-ec-b' else
                           'alpha-ec', 1)
    for (path, body), (_, body_unknown) in zip(_beta_requests(gw, victim, alpha_sad),
                                               _beta_requests(gw, 'no-such-credential',
                                                              alpha_sad)):
        r = gw.api.post(path, body, beta)
        u = gw.api.post(path, body_unknown, beta)
        e = assert_csc_error(r, 400, 'invalid_request', 'Invalid parameter credentialID')
        assert (u.status_code, u.json()) == (r.status_code, e), (path, u.text, r.text)
        assert victim not in r.text and 'vendor' not in r.text.lower(), r.text
    # and the same for an alpha SAD presented with beta's *own* ids: nothing useful leaks
    r = gw.api.sign(beta, 'beta-ec', alpha_sad, [digest('iso2')])
    assert_csc_error(r, 400, 'invalid_request')
    assert victim not in r.text and 'alpha' not in r.text
