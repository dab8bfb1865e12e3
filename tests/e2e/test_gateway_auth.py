"""Client authentication and tokens: auth/login, oauth2/token, refresh rotation, revocation.

Each client-secret check costs an scrypt (≈0.5–1 s in a debug build), so logins are few."""

import base64

import pytest

from gateway_suite import SECRETS, assert_csc_error


def _works(gw, token) -> bool:
    r = gw.api.post('v1/credentials/list', {}, token)
    if r.status_code == 200:
        return True
    assert_csc_error(r, 401)
    return False


def _basic(value: str) -> dict:
    return {'Authorization': 'Basic ' + value}


# --- auth/login ------------------------------------------------------------------------------
def test_login_failures_look_the_same(gw):
    wrong = gw.api.post('v1/auth/login', {}, auth=('alpha-app', SECRETS['alpha-app'] + 'x'))
    unknown = gw.api.post('v1/auth/login', {}, auth=('nobody-app', SECRETS['alpha-app']))
    e1 = assert_csc_error(wrong, 400, 'authentication_error')
    e2 = assert_csc_error(unknown, 400, 'authentication_error')
    assert e1 == e2  # the answer does not tell which client ids exist
    assert 'access_token' not in wrong.text


@pytest.mark.parametrize('header', [
    'Basic !!!not-base64!!!',
    'Basic ' + base64.b64encode(b'no-colon-here').decode(),
    'Basic',
])
def test_login_malformed_basic(gw, header):
    r = gw.api.post('v1/auth/login', {}, headers={'Authorization': header})
    assert_csc_error(r, 401)


def test_login_without_credentials(gw):
    r = gw.api.post('v1/auth/login', {})
    assert r.status_code in (400, 401), r.text
    assert_csc_error(r, r.status_code)


def test_login_remember_me_and_refresh_rotation(gw):
    plain = gw.api.login('alpha-app')
    assert 'refresh_token' not in plain
    assert isinstance(plain.get('expires_in', 3600), int)
    first = gw.api.login('alpha-app', remember=True)
    r1 = first['refresh_token']
    assert _works(gw, first['access_token'])
    # a refresh token is not an access token
    r = gw.api.post('v1/credentials/list', {}, r1)
    assert_csc_error(r, 401)

    r = gw.api.post('v1/auth/login', {'refresh_token': r1})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second['access_token'] not in (first['access_token'], plain['access_token'])
    assert _works(gw, second['access_token'])
    r2 = second.get('refresh_token')
    assert r2 and r2 != r1, 'refresh must rotate the refresh token'

    # the old refresh token is spent
    r = gw.api.post('v1/auth/login', {'refresh_token': r1})
    assert r.status_code == 400, r.text
    assert_csc_error(r, 400)
    assert r.json()['error'] in ('authentication_error', 'invalid_grant', 'invalid_request')
    # the new one works, once more (v1 sample spelling refreshToken is accepted too)
    r = gw.api.post('v1/auth/login', {'refreshToken': r2})
    assert r.status_code == 200, r.text
    # an access token is not a refresh token
    r = gw.api.post('v1/auth/login', {'refresh_token': second['access_token']})
    assert_csc_error(r, 400)


# --- bearer tokens ---------------------------------------------------------------------------
def test_missing_and_malformed_authorization(gw):
    r = gw.api.post('v1/credentials/list', {})
    assert_csc_error(r, 401)
    assert 'bearer' in r.headers.get('WWW-Authenticate', '').lower()
    r = gw.api.post('v1/credentials/list', {}, headers={'Authorization': 'Token x'})
    assert_csc_error(r, 400, 'invalid_request')
    r = gw.api.post('v1/credentials/list', {}, headers={'Authorization': 'Bearer'})
    assert r.status_code in (400, 401), r.text
    assert_csc_error(r, r.status_code)
    r = gw.api.post('v1/credentials/list', {}, 'cga_' + 'A' * 43)
    assert_csc_error(r, 401, 'invalid_token')
    # a client secret is not a bearer token
    r = gw.api.post('v1/credentials/list', {}, SECRETS['alpha-app'])
    assert_csc_error(r, 401)


# --- oauth2/token ----------------------------------------------------------------------------
def test_oauth2_client_credentials_basic_and_post(gw):
    r = gw.api.post('oauth2/token', data={'grant_type': 'client_credentials'},
                    auth=('beta-app', SECRETS['beta-app']))
    assert r.status_code == 200, r.text
    t = r.json()
    assert t['token_type'] == 'Bearer' and isinstance(t['expires_in'], int)
    assert 'no-store' in r.headers.get('Cache-Control', '')
    assert _works(gw, t['access_token'])
    ids = gw.api.post('v1/credentials/list', {}, t['access_token']).json()['credentialIDs']
    assert sorted(ids) == ['beta-ec', 'beta-rsa']  # the token is beta's

    r = gw.api.post('oauth2/token', data={'grant_type': 'client_credentials',
                                          'client_id': 'beta-app',
                                          'client_secret': SECRETS['beta-app']})
    assert r.status_code == 200, r.text
    assert _works(gw, r.json()['access_token'])
    assert r.json()['access_token'] != t['access_token']


def test_oauth2_token_bad_client(gw):
    r = gw.api.post('oauth2/token', data={'grant_type': 'client_credentials'},
                    auth=('beta-app', 'wrong-secret-wrong-secret'))
    assert_csc_error(r, 401, 'invalid_client')
    r = gw.api.post('oauth2/token', data={'grant_type': 'client_credentials'})
    assert r.status_code in (400, 401), r.text
    assert_csc_error(r, r.status_code)


def test_oauth2_unsupported_grant(gw):
    for grant in ('password', 'authorization_code'):
        r = gw.api.post('oauth2/token', data={'grant_type': grant, 'client_id': 'alpha-app',
                                              'client_secret': SECRETS['alpha-app']})
        assert_csc_error(r, 400, 'unsupported_grant_type')


def test_oauth2_refresh_token_grant(gw):
    login = gw.api.login('alpha-app', remember=True)
    old = login['refresh_token']
    # beta cannot redeem alpha's refresh token (and must not burn it either)
    r = gw.api.post('oauth2/token', data={'grant_type': 'refresh_token', 'refresh_token': old},
                    auth=('beta-app', SECRETS['beta-app']))
    assert_csc_error(r, 400, 'invalid_grant')
    r = gw.api.post('oauth2/token', data={'grant_type': 'refresh_token', 'refresh_token': old},
                    auth=('alpha-app', SECRETS['alpha-app']))
    assert r.status_code == 200, r.text
    t = r.json()
    assert t['token_type'] == 'Bearer' and t.get('refresh_token') not in (None, old)
    assert _works(gw, t['access_token'])
    ids = gw.api.post('v1/credentials/list', {}, t['access_token']).json()['credentialIDs']
    assert 'alpha-ec' in ids
    r = gw.api.post('oauth2/token', data={'grant_type': 'refresh_token', 'refresh_token': old,
                                          'client_id': 'alpha-app',
                                          'client_secret': SECRETS['alpha-app']})
    assert_csc_error(r, 400, 'invalid_grant')


# --- revocation ------------------------------------------------------------------------------
def test_auth_revoke_access_token(gw):
    login = gw.api.login('alpha-app', remember=True)
    access, refresh = login['access_token'], login['refresh_token']
    other = gw.api.token('alpha-app')
    assert _works(gw, access)
    r = gw.api.post('v1/auth/revoke', {'token': access, 'token_type_hint': 'access_token'},
                    access)
    assert r.status_code == 204, r.text
    assert not r.content
    assert not _works(gw, access)  # at once
    assert _works(gw, other)  # another login of the same client is untouched
    # revoking an access token leaves the refresh token of the grant alone (CSC §3.3)
    r = gw.api.post('v1/auth/login', {'refresh_token': refresh})
    assert r.status_code == 200, r.text


def test_revoking_refresh_token_kills_its_access_tokens(gw):
    login = gw.api.login('alpha-app', remember=True)
    a1, refresh = login['access_token'], login['refresh_token']
    r = gw.api.post('v1/auth/login', {'refresh_token': refresh})
    assert r.status_code == 200, r.text
    a2, refresh2 = r.json()['access_token'], r.json()['refresh_token']
    keeper = gw.tokens['alpha-app']
    assert _works(gw, a1) and _works(gw, a2)
    r = gw.api.post('v1/auth/revoke', {'token': refresh2, 'token_type_hint': 'refresh_token'},
                    keeper)
    assert r.status_code == 204, r.text
    assert not _works(gw, a1)
    assert not _works(gw, a2)
    r = gw.api.post('v1/auth/login', {'refresh_token': refresh2})
    assert_csc_error(r, 400)
    assert _works(gw, keeper)


def test_oauth2_revoke(gw):
    victim = gw.api.token('beta-app')
    assert _works(gw, victim)
    r = gw.api.post('oauth2/revoke', data={'token': victim, 'token_type_hint': 'access_token'},
                    auth=('beta-app', SECRETS['beta-app']))
    assert r.status_code in (200, 204), r.text
    assert not _works(gw, victim)
    # bad client authentication at oauth2/revoke
    r = gw.api.post('oauth2/revoke', data={'token': gw.tokens['beta-app']},
                    auth=('beta-app', 'not-the-secret-at-all'))
    assert_csc_error(r, 401, 'invalid_client')
    assert _works(gw, gw.tokens['beta-app'])


def test_token_of_alpha_revoked_by_beta_stays_valid(gw):
    victim = gw.api.login('alpha-app', remember=True)
    beta = gw.tokens['beta-app']
    for token in (victim['access_token'], victim['refresh_token']):
        r = gw.api.post('v1/auth/revoke', {'token': token}, beta)
        assert r.status_code in (204, 400), r.text
    r = gw.api.post('oauth2/revoke', data={'token': victim['access_token']},
                    auth=('beta-app', SECRETS['beta-app']))
    assert r.status_code in (200, 204, 400), r.text
    assert _works(gw, victim['access_token'])
    r = gw.api.post('v1/auth/login', {'refresh_token': victim['refresh_token']})
    assert r.status_code == 200, r.text


def test_revoke_requires_token_field(gw):
    r = gw.api.post('v1/auth/revoke', {}, gw.tokens['beta-app'])
    assert_csc_error(r, 400, 'invalid_request', 'token')
    r = gw.api.post('v1/auth/revoke', {'token': 'x', 'token_type_hint': 'banana'},
                    gw.tokens['beta-app'])
    assert_csc_error(r, 400, 'invalid_request')
