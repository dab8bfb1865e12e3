"""CSC version translation both ways, and upstream service authentication, against real servers.

No third-party CSC v2 RSSP installs here, but cscgate's own /csc/v2 front door is one. So the
chain is: client --v1 or v2--> gateway A --CSC v2--> gateway B --CSC v1--> certomancer-csc-dummy.
A v1 client (pyHanko) thus reaches a v2 upstream, and a v2 client a v1 upstream (at B).
Gateway A logs in to B as a service client: once with auth/login (basic) and once with OAuth2
client credentials, one upstream entry each.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets as pysecrets

import pytest
import requests
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from gateway_fixture import gateway_login, hash_secret, start_gateway
from pyhanko_flow import sign_and_validate

B_URL = 'http://127.0.0.1:8301'
A_URL = 'http://127.0.0.1:8302'
B_SECRET = 'front-service-secret-' + pysecrets.token_hex(8)
END_SECRET = 'end-client-secret-' + pysecrets.token_hex(8)


def _sad_key(path):
    path.write_text(base64.b64encode(pysecrets.token_bytes(32)).decode())
    return path


@pytest.fixture(scope='module')
def chain(peers, tmp_path_factory):
    b_dir = tmp_path_factory.mktemp('gateway-b')
    a_dir = tmp_path_factory.mktemp('gateway-a')
    _sad_key(b_dir / 'sad.key')
    _sad_key(a_dir / 'sad.key')
    a, b = peers['vendor-a'], peers['vendor-b']
    b_config = f"""
listen: {{host: 127.0.0.1, port: 8301}}
publicURL: {B_URL}
sad: {{keyFile: sad.key}}
upstreams:
  - {{name: vendor-a, kind: csc, baseURL: "{a.base_url}", version: v1}}
  - {{name: vendor-b, kind: csc, baseURL: "{b.base_url}", version: v1}}
"""
    b_tenant = f"""
tenant: resold
clients:
  - {{id: front-svc, secretHash: "{hash_secret(B_SECRET)}", scopes: [service]}}
credentials:
  - {{id: rsa, upstream: vendor-a, upstreamCredentialID: vendor-a/rsa-signer}}
  - {{id: ec, upstream: vendor-a, upstreamCredentialID: vendor-a/ec-signer}}
  - {{id: ec-b, upstream: vendor-b, upstreamCredentialID: vendor-b/ec-signer}}
"""
    a_config = f"""
listen: {{host: 127.0.0.1, port: 8302}}
publicURL: {A_URL}
sad: {{keyFile: sad.key}}
upstreams:
  - name: b-basic
    kind: csc
    baseURL: {B_URL}
    version: v2
    auth: {{type: basic, username: front-svc, passwordEnv: B_SECRET}}
  - name: b-oauth
    kind: csc
    baseURL: {B_URL}
    version: v2
    auth: {{type: oauth2-client, tokenURL: "{B_URL}/oauth2/token", clientID: front-svc, clientSecretEnv: B_SECRET}}
"""
    a_tenant = f"""
tenant: end
clients:
  - {{id: end-app, secretHash: "{hash_secret(END_SECRET)}", scopes: [service]}}
credentials:
  - {{id: rsa, upstream: b-basic, upstreamCredentialID: rsa}}
  - {{id: ec, upstream: b-oauth, upstreamCredentialID: ec}}
  - {{id: ec-b, upstream: b-oauth, upstreamCredentialID: ec-b}}
"""
    gw_b = start_gateway(b_dir, b_config, {'resold': b_tenant}, url=B_URL)
    gw_a = start_gateway(a_dir, a_config, {'end': a_tenant}, url=A_URL, env={'B_SECRET': B_SECRET})
    handles = {'a': gw_a, 'b': gw_b, 'peers': peers, 'b_dir': b_dir, 'b_config': b_config, 'b_tenant': b_tenant}
    try:
        yield handles
    finally:
        # A test may have restarted B: stop whichever process the module holds now.
        handles['a'].stop()
        handles['b'].stop()


def call(url, version, method, body, token):
    r = requests.post(f'{url}/csc/{version}/{method}', json=body, headers={'Authorization': f'Bearer {token}'},
                      timeout=30)
    return r.status_code, (r.json() if r.content else None)


def b_requests(gw_b, path):
    """How many requests gateway B logged on a path (its request log line names the path)."""
    return len(re.findall(rf'path={re.escape(path)} ', gw_b.log_path.read_text()))


@pytest.mark.parametrize('credential,root,pss', [
    ('rsa', 'vendor-a', False), ('rsa', 'vendor-a', True), ('ec', 'vendor-a', False), ('ec-b', 'vendor-b', False),
])
def test_pyhanko_v1_client_through_a_v2_upstream(chain, credential, root, pss):
    token = gateway_login(A_URL, 'end-app', END_SECRET)
    result = sign_and_validate(f'{A_URL}/csc/v1', credential, token, chain['peers'][root].root_pem, pss=pss)
    assert result.status.intact and result.status.valid and result.status.trusted


def test_v2_client_signs_and_signature_verifies(chain):
    token = gateway_login(A_URL, 'end-app', END_SECRET)
    status, info = call(A_URL, 'v2', 'credentials/info', {'credentialID': 'ec-b', 'certificates': 'chain',
                                                          'authInfo': True}, token)
    assert status == 200, info
    assert info['SCAL'] == '2' and info['auth']['mode'] == 'explicit' and 'authMode' not in info
    assert len(info['cert']['certificates']) == 3
    digest = hashlib.sha256(b'chain v2').digest()
    h = base64.b64encode(digest).decode()
    status, auth = call(A_URL, 'v2', 'credentials/authorize', {
        'credentialID': 'ec-b', 'numSignatures': 1, 'hashes': [h],
        'hashAlgorithmOID': '2.16.840.1.101.3.4.2.1'}, token)
    assert status == 200, auth
    status, signed = call(A_URL, 'v2', 'signatures/signHash', {
        'credentialID': 'ec-b', 'SAD': auth['SAD'], 'hashes': [h], 'signAlgo': '1.2.840.10045.4.3.2'}, token)
    assert status == 200, signed
    cert = cx509.load_der_x509_certificate(base64.b64decode(info['cert']['certificates'][0]))
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    cert.public_key().verify(base64.b64decode(signed['signatures'][0]), digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_v1_client_scal2_authorize_reaches_v2_upstream_with_inferred_hash_algorithm(chain):
    # v1 authorize has no hash algorithm; B's v2 front door requires hashAlgorithmOID with hashes,
    # so this only succeeds if A infers it from the digest length.
    token = gateway_login(A_URL, 'end-app', END_SECRET)
    digest = hashlib.sha384(b'chain v1').digest()
    h = base64.b64encode(digest).decode()
    status, auth = call(A_URL, 'v1', 'credentials/authorize', {'credentialID': 'ec-b', 'numSignatures': 1,
                                                                'hash': [h]}, token)
    assert status == 200, auth
    status, signed = call(A_URL, 'v1', 'signatures/signHash', {
        'credentialID': 'ec-b', 'SAD': auth['SAD'], 'hash': [h], 'signAlgo': '1.2.840.10045.4.3.3'}, token)
    assert status == 200, signed


def test_rsa_pkcs1_over_two_hops_verifies(chain):
    token = gateway_login(A_URL, 'end-app', END_SECRET)
    status, info = call(A_URL, 'v1', 'credentials/info', {'credentialID': 'rsa'}, token)
    cert = cx509.load_der_x509_certificate(base64.b64decode(info['cert']['certificates'][0]))
    digest = hashlib.sha256(b'rsa two hops').digest()
    h = base64.b64encode(digest).decode()
    _, auth = call(A_URL, 'v1', 'credentials/authorize', {'credentialID': 'rsa', 'numSignatures': 1}, token)
    status, signed = call(A_URL, 'v1', 'signatures/signHash', {
        'credentialID': 'rsa', 'SAD': auth['SAD'], 'hash': [h], 'signAlgo': '1.2.840.113549.1.1.1',
        'hashAlgo': '2.16.840.1.101.3.4.2.1'}, token)
    assert status == 200, signed
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    cert.public_key().verify(base64.b64decode(signed['signatures'][0]), digest, padding.PKCS1v15(),
                             Prehashed(hashes.SHA256()))


def test_service_tokens_are_obtained_once_and_shared(chain):
    token = gateway_login(A_URL, 'end-app', END_SECRET)
    logins_before = b_requests(chain['b'], '/csc/v2/auth/login')
    oauth_before = b_requests(chain['b'], '/oauth2/token')
    for _ in range(5):
        for cred in ('rsa', 'ec'):
            _, auth = call(A_URL, 'v1', 'credentials/authorize', {'credentialID': cred, 'numSignatures': 1}, token)
            assert 'SAD' in auth, auth
    assert b_requests(chain['b'], '/csc/v2/auth/login') == logins_before
    assert b_requests(chain['b'], '/oauth2/token') == oauth_before
    # Both service-auth kinds were really used at least once during this module.
    assert b_requests(chain['b'], '/csc/v2/auth/login') >= 1
    assert b_requests(chain['b'], '/oauth2/token') >= 1


def test_upstream_restart_invalidates_service_token_and_gateway_renews_it(chain):
    token = gateway_login(A_URL, 'end-app', END_SECRET)
    _, auth = call(A_URL, 'v1', 'credentials/authorize', {'credentialID': 'ec', 'numSignatures': 1}, token)
    assert 'SAD' in auth
    logins = b_requests(chain['b'], '/oauth2/token')
    # B restarts: every token it issued is gone, so A's cached service token now gets 401.
    chain['b'].stop()
    old_log = chain['b'].log_path.read_text()
    chain['b'] = start_gateway(chain['b_dir'], chain['b_config'], {'resold': chain['b_tenant']}, url=B_URL)
    digest = base64.b64encode(hashlib.sha256(b'after restart').digest()).decode()
    # B's SAD inside A's is from B's earlier process, whose budgets B no longer knows: refused.
    status, err = call(A_URL, 'v1', 'signatures/signHash', {
        'credentialID': 'ec', 'SAD': auth['SAD'], 'hash': [digest], 'signAlgo': '1.2.840.10045.4.3.2'}, token)
    assert status == 400 and err['error_description'] == 'SAD expired', err
    _, auth = call(A_URL, 'v1', 'credentials/authorize', {'credentialID': 'ec', 'numSignatures': 1}, token)
    status, signed = call(A_URL, 'v1', 'signatures/signHash', {
        'credentialID': 'ec', 'SAD': auth['SAD'], 'hash': [digest], 'signAlgo': '1.2.840.10045.4.3.2'}, token)
    assert status == 200, signed
    new_log = chain['b'].log_path.read_text()[len(old_log):]
    assert len(re.findall(r'path=/oauth2/token ', new_log)) >= 1
    assert logins >= 1


def test_v2_upstream_errors_pass_through_as_csc_errors(chain):
    token = gateway_login(A_URL, 'end-app', END_SECRET)
    digest = base64.b64encode(hashlib.sha256(b'x').digest()).decode()
    _, auth = call(A_URL, 'v1', 'credentials/authorize', {'credentialID': 'ec', 'numSignatures': 1}, token)
    # A's own budget check stops the second use before B sees it.
    body = {'credentialID': 'ec', 'SAD': auth['SAD'], 'hash': [digest], 'signAlgo': '1.2.840.10045.4.3.2'}
    assert call(A_URL, 'v1', 'signatures/signHash', body, token)[0] == 200
    status, err = call(A_URL, 'v1', 'signatures/signHash', body, token)
    assert status == 400 and 'used up' in err['error_description']
