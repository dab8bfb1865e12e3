"""Every error is a CSC error (DESIGN.md invariant 5): bad input gets a 4xx with a JSON body
{error, error_description} that says what to fix — never a 500, never plain text."""

import hashlib

import pytest
import requests

from gateway_suite import (
    ECDSA_SHA256, RSA_ENC, SHA1, SHA256, SHA384, assert_csc_error, b64, digest,
)

H = b64(hashlib.sha256(b'errors').digest())


@pytest.fixture(scope='module')
def ec_sad_factory(gw):
    def make(num=1):
        return gw.api.sad(gw.tokens['alpha-app'], 'alpha-ec', num)
    return make


def _raw(gw, path, data: bytes, token=None, ctype='application/json', method='POST'):
    h = {'Content-Type': ctype}
    if token:
        h['Authorization'] = f'Bearer {token}'
    return requests.request(method, gw.api.url(path), data=data, headers=h, timeout=15)


@pytest.mark.parametrize('path', ['v1/credentials/list', 'v2/credentials/info',
                                  'v1/signatures/signHash', 'v1/auth/login'])
@pytest.mark.parametrize('payload', [b'{"credentialID": ', b'[]', b'[{"credentialID": "x"}]',
                                     b'"just a string"', b'42', b'null', b'\xff\xfe\x00garbage',
                                     b'{"a":1}{"b":2}',
                                     b'{"credentialID": ' + b'[' * 2000 + b']' * 2000 + b'}',
                                     b'{"credentialID": "alpha-ec", "numSignatures": 1e999}'],
                         ids=['truncated', 'empty-array', 'array', 'string', 'number', 'null',
                              'binary', 'two-objects', 'nested-2000', 'huge-number'])
def test_malformed_json_bodies(gw, path, payload):
    r = _raw(gw, path, payload, gw.tokens['alpha-app'] if 'login' not in path else None)
    if 'login' in path and r.status_code == 401:
        assert_csc_error(r, 401)  # no credentials at all may be checked before the body
        return
    assert_csc_error(r, 400, 'invalid_request')


BAD_FIELDS = [
    ('v1/credentials/authorize', {'credentialID': 'alpha-ec', 'numSignatures': 'abc'},
     'numSignatures'),
    ('v1/credentials/authorize', {'credentialID': 'alpha-ec', 'numSignatures': 1.5},
     'numSignatures'),
    ('v1/credentials/authorize', {'credentialID': 'alpha-ec'}, 'numSignatures'),
    ('v1/credentials/authorize', {'credentialID': 5, 'numSignatures': 1}, 'credentialID'),
    ('v1/credentials/authorize', {'credentialID': 'alpha-ec', 'numSignatures': 1, 'hash': H},
     'hash'),
    ('v1/credentials/authorize', {'credentialID': 'alpha-ec', 'numSignatures': 1,
                                  'hash': ['***not base64***']}, 'hash'),
    ('v1/credentials/authorize', {'credentialID': 'alpha-ec', 'numSignatures': 1,
                                  'hash': [b64(b'short')]}, 'length'),
    ('v1/credentials/authorize', {'credentialID': 'alpha-ec', 'numSignatures': 1,
                                  'hash': [1, 2]}, 'hash'),
    ('v1/credentials/info', {'credentialID': ['alpha-ec']}, 'credentialID'),
    ('v1/credentials/info', {}, 'credentialID'),
    ('v1/credentials/info', {'credentialID': 'alpha-ec', 'certificates': 'all'}, 'certificates'),
    ('v1/credentials/info', {'credentialID': 'alpha-ec', 'authInfo': 'yes'}, 'authInfo'),
    ('v2/credentials/list', {'credentialInfo': 'true'}, 'credentialInfo'),
    ('v1/credentials/list', {'maxResults': 0}, 'maxResults'),
    ('v1/credentials/list', {'pageToken': 'bogus!'}, 'pageToken'),
    ('v1/signatures/signHash', {'credentialID': 'alpha-ec', 'hash': [H],
                                'signAlgo': ECDSA_SHA256}, 'SAD'),
    ('v1/signatures/signHash', {'credentialID': 'alpha-ec', 'SAD': 7, 'hash': [H],
                                'signAlgo': ECDSA_SHA256}, 'SAD'),
    ('v1/signatures/signHash', {'credentialID': 'alpha-ec', 'SAD': 'gsad1.x', 'hash': H,
                                'signAlgo': ECDSA_SHA256}, 'hash'),
    ('v1/signatures/signHash', {'credentialID': 'alpha-ec', 'SAD': 'gsad1.x', 'hash': [],
                                'signAlgo': ECDSA_SHA256}, 'hash'),
    ('v1/signatures/signHash', {'credentialID': 'alpha-ec', 'SAD': 'gsad1.x', 'hash': [H]},
     'signAlgo'),
    ('v1/signatures/signHash', {'credentialID': 'alpha-ec', 'SAD': 'gsad1.x',
                                'hash': ['%%%'], 'signAlgo': ECDSA_SHA256}, 'hash'),
    ('v2/signatures/signHash', {'credentialID': 'alpha-ec', 'SAD': 'gsad1.x', 'hash': [H],
                                'signAlgo': ECDSA_SHA256}, 'hashes'),
    ('v2/signatures/signHash', {'credentialID': 'alpha-ec', 'hashes': [H],
                                'signAlgo': ECDSA_SHA256}, 'SAD'),
    ('v2/credentials/authorize', {'credentialID': 'alpha-ec-b', 'numSignatures': 1,
                                  'hashes': [H], 'hashAlgorithmOID': SHA384}, 'length'),
    ('v2/credentials/authorize', {'credentialID': 'alpha-ec', 'numSignatures': 1, 'hash': [H]},
     'hashes'),
    ('v2/signatures/signHash', {'credentialID': 'alpha-ec', 'SAD': 'gsad1.x', 'hashes': [H],
                                'signAlgo': ECDSA_SHA256, 'hashAlgo': SHA256},
     'hashAlgorithmOID'),
    ('v1/signatures/timestamp', {'hash': [H], 'hashAlgo': SHA256}, 'hash'),
    ('v1/signatures/timestamp', {'hash': H, 'hashAlgo': SHA1}, 'hashAlgo'),
    ('v1/signatures/timestamp', {'hash': b64(b'x' * 20), 'hashAlgo': SHA256}, 'length'),
]


@pytest.mark.parametrize('path,body,names', BAD_FIELDS,
                         ids=[f'{p.split("/", 1)[1]}-{i}' for i, (p, _, _) in
                              enumerate(BAD_FIELDS)])
def test_wrong_types_and_values(gw, path, body, names):
    r = gw.api.post(path, body, gw.tokens['alpha-app'])
    assert_csc_error(r, 400, 'invalid_request', names)


def test_sign_hash_algorithm_and_digest_checks(gw, ec_sad_factory):
    token = gw.tokens['alpha-app']
    sad = gw.api.sad(token, 'alpha-rsa', 4)
    h32 = digest('errs')
    # SHA-1 with raw RSA: too weak
    r = gw.api.sign(token, 'alpha-rsa', sad, [h32[:20]], RSA_ENC, hash_algo=SHA1)
    assert_csc_error(r, 400, 'invalid_request', 'hashAlgo')
    # an unknown hash OID
    r = gw.api.sign(token, 'alpha-rsa', sad, [h32], RSA_ENC, hash_algo='1.2.3.4')
    assert_csc_error(r, 400, 'invalid_request', 'hashAlgo')
    # a SHA-256 signature over 20 bytes (the dummy would answer 500)
    r = gw.api.sign(token, 'alpha-rsa', sad, [h32[:20]], '1.2.840.113549.1.1.11')
    assert_csc_error(r, 400, 'invalid_request', 'length')
    r = gw.api.sign(token, 'alpha-rsa', sad, [h32 + h32], RSA_ENC, hash_algo=SHA256)
    assert_csc_error(r, 400, 'invalid_request', 'length')
    # an algorithm of the wrong key type (the dummy would answer 500), and an unknown OID
    ec_sad = ec_sad_factory(2)
    r = gw.api.sign(token, 'alpha-ec', ec_sad, [h32], '1.2.840.113549.1.1.11')
    assert_csc_error(r, 400, 'invalid_request', 'signAlgo')
    r = gw.api.sign(token, 'alpha-ec', ec_sad, [h32], '1.2.3.4.5')
    assert_csc_error(r, 400, 'invalid_request', 'signAlgo')
    # bad signAlgoParams (not base64)
    r = gw.api.sign(token, 'alpha-rsa', sad, [h32], '1.2.840.113549.1.1.10', params='%%%')
    assert_csc_error(r, 400, 'invalid_request', 'signAlgoParams')
    # none of that spent the budget
    r = gw.api.sign(token, 'alpha-rsa', sad, [h32] * 4, '1.2.840.113549.1.1.11')
    assert r.status_code == 200, r.text


PSS_SHA384_48 = ('MDSgDzANBglghkgBZQMEAgIFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgIFAKIDAgEw')


@pytest.mark.parametrize('params,names', [
    (None, 'signAlgoParams'),
    (b64(b'\x01\x02\x03'), None),
    (b64(b'\x30\x00'), None),  # all RFC 4055 defaults: SHA-1, too weak
    (PSS_SHA384_48, None),  # SHA-384 parameters over a 32-byte digest
], ids=['missing', 'not-der', 'default-sha1', 'sha384-params-sha256-digest'])
def test_pss_parameters_are_checked(gw, params, names):
    """RSASSA-PSS needs usable signAlgoParams (CSC-API.md §1, §6). Missing or unusable ones are
    the client's mistake: 400 invalid_request (naming signAlgoParams when it is missing) — not
    an upstream 5xx (the dummy itself answers 500 to these, PEER-NOTES.md)."""
    token = gw.tokens['alpha-app']
    sad = gw.api.sad(token, 'alpha-rsa', 1)
    r = gw.api.sign(token, 'alpha-rsa', sad, [digest('pss')], '1.2.840.113549.1.1.10',
                    params=params)
    assert_csc_error(r, 400, 'invalid_request', names)


def test_oversize_body(gw):
    big = b'{"credentialID": "' + b'x' * 10240 + b'"}'
    r = _raw(gw, 'v1/credentials/info', big, gw.tokens['alpha-app'])
    assert_csc_error(r, 413)
    r = _raw(gw, 'v1/signatures/signHash', big, None)
    assert_csc_error(r, 413)
    # just under the limit is fine (and still a normal CSC answer)
    ok = b'{"clientData": "' + b'y' * 3000 + b'"}'
    r = _raw(gw, 'v1/credentials/list', ok, gw.tokens['alpha-app'])
    assert r.status_code == 200, r.text


def test_too_many_hashes_for_the_budget(gw):
    token = gw.tokens['alpha-app']
    sad = gw.api.sad(token, 'alpha-ec', 1)
    r = gw.api.sign(token, 'alpha-ec', sad, [digest(f'm{i}') for i in range(40)])
    assert_csc_error(r, 400, 'invalid_request')


def test_unknown_and_wrong_version_methods(gw):
    token = gw.tokens['alpha-app']
    for path in ('v1/foo', 'v2/foo/bar', 'v1/credentials/nope', 'v3/info', '/csc/info',
                 '/nothing/here'):
        r = gw.api.post(path, {}, token)
        assert_csc_error(r, 404)
    r = gw.api.post('v1/credentials/getChallenge', {'credentialID': 'alpha-ec',
                                                    'authObjectID': 'OTP'}, token)
    assert_csc_error(r, 400, 'invalid_request', 'getChallenge')
    r = gw.api.post('v2/credentials/sendOTP', {'credentialID': 'alpha-ec'}, token)
    assert_csc_error(r, 400, 'invalid_request')
    for path in ('v2/signatures/signDoc', 'v2/signatures/signPolling',
                 'v2/credentials/authorizeCheck'):
        r = gw.api.post(path, {'credentialID': 'alpha-ec'}, token)
        assert_csc_error(r, 501)
    r = gw.api.post('v2/signatures/signHash', {'credentialID': 'alpha-ec', 'SAD': 'gsad1.x',
                                               'hashes': [H], 'signAlgo': ECDSA_SHA256,
                                               'operationMode': 'Q'}, token)
    assert_csc_error(r, 400, 'invalid_request', 'operationMode')


@pytest.mark.parametrize('method', ['GET', 'PUT', 'DELETE', 'PATCH'])
def test_non_post_on_csc_paths(gw, method):
    for path in ('v1/credentials/list', 'v2/info', 'v1/signatures/signHash'):
        r = requests.request(method, gw.api.url(path), timeout=10,
                             headers={'Authorization': f'Bearer {gw.tokens["alpha-app"]}'})
        assert_csc_error(r, 405)
        assert 'POST' in r.headers.get('Allow', '')


def test_oauth_endpoints_errors(gw):
    r = gw.api.post('oauth2/token', data='grant_type=client_credentials&grant_type=x',
                    headers={'Content-Type': 'application/x-www-form-urlencoded'})
    assert r.status_code in (400, 401), r.text
    assert_csc_error(r, r.status_code)
    r = gw.api.post('oauth2/authorize', data={'response_type': 'code'})
    assert r.status_code in (400, 404, 501), r.text
    assert_csc_error(r, r.status_code)
    r = gw.api.post('oauth2/nope', data={'a': 'b'})
    assert r.status_code in (400, 401, 404), r.text
    assert_csc_error(r, r.status_code)
    r = requests.get(gw.api.url('oauth2/token'), timeout=10)
    assert_csc_error(r, 405)


def test_health(gw):
    r = requests.get(f'{gw.url}/health', timeout=5)
    assert r.status_code == 200 and r.json().get('status') == 'ok'
