"""Signing through the gateway: pyHanko end to end (v1) and plain-HTTP v2 flows whose
signatures are checked with `cryptography` against the certificate the gateway described."""

import base64
import hashlib

import pytest
from asn1crypto import cms, tsp

from gateway_suite import (
    ECDSA_SHA256, ECDSA_SHA384, PSS_PARAMS_SHA256_32, ROUTES, RSA_ENC, RSA_PSS, SHA256, SHA384,
    SHA256_RSA, TENANT_CREDENTIALS, assert_csc_error, b64, digest, load_cert, signature_ok,
    verify_signature,
)
from pyhanko_flow import sign_and_validate

PYHANKO_CASES = [
    pytest.param('alpha-rsa', False, 'sha256_rsa', 1, id='vendor-a-rsa-pkcs1v15'),
    pytest.param('alpha-rsa', True, 'rsassa_pss', 1, id='vendor-a-rsa-pss'),
    pytest.param('alpha-ec', False, 'sha256_ecdsa', 1, id='vendor-a-ec'),
    pytest.param('alpha-rsa-b', False, 'sha256_rsa', 2, id='vendor-b-rsa-pkcs1v15'),
    pytest.param('alpha-rsa-b', True, 'rsassa_pss', 2, id='vendor-b-rsa-pss'),
    pytest.param('alpha-ec-b', False, 'sha256_ecdsa', 2, id='vendor-b-ec'),
]


def _upstream_sad(gw, cred, num, hashes_b64):
    """The SAD the dummy itself issues for this request (it is deterministic)."""
    up, upid = ROUTES[cred]
    body = {'credentialID': upid, 'numSignatures': num}
    if hashes_b64 is not None:
        body['hash'] = hashes_b64
    r = gw.api.s.post(f'{gw.peers[up].base_url}/credentials/authorize', json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()['SAD']


@pytest.mark.parametrize('cred,pss,mechanism,scal', PYHANKO_CASES)
def test_pyhanko_through_gateway(gw, cred, pss, mechanism, scal):
    token = gw.tokens['alpha-app']
    r = sign_and_validate(f'{gw.url}/csc/v1', cred, token, gw.trust_root(cred), pss=pss,
                          revocation_mode='hard-fail')
    gw.ledger.note_pyhanko(token, r.authorize_exchanges)
    st = r.status
    assert (st.intact, st.valid, st.trusted, st.revoked) == (True, True, True, False)
    assert st.pkcs7_signature_mechanism == mechanism
    # The gateway passes the upstream's SCAL on: pyHanko pins hashes exactly on SCAL 2.
    assert r.credential_info.hash_pinning_required == (scal == 2)
    (req, resp), = r.authorize_exchanges
    sad = resp['SAD']
    assert sad.startswith('gsad1.'), sad[:20]
    # The upstream SAD never leaves the gateway, not even inside the sealed one.
    upstream = _upstream_sad(gw, cred, req['numSignatures'], req['hash'])
    gw.ledger.upstream_sads.add(upstream)
    assert upstream not in sad and upstream not in str(resp)
    assert 0 < resp.get('expiresIn', 3600) <= 3600


# --- v2 with plain HTTP ----------------------------------------------------------------------
def test_v2_info_without_and_with_token(gw):
    r = gw.api.post('v2/info', {})
    assert r.status_code == 200, r.text
    anon = r.json()
    assert anon['specs'].startswith('2.'), anon['specs']
    assert isinstance(anon['signAlgorithms']['algos'], list)
    for k in ('name', 'logo', 'region', 'lang', 'description', 'authType', 'methods'):
        assert k in anon, k
    assert 'signatures/signHash' in anon['methods']

    token = gw.tokens['alpha-app']
    r = gw.api.post('v2/info', {}, token)
    assert r.status_code == 200, r.text
    algos = set(r.json()['signAlgorithms']['algos'])
    expected = set()
    for cred in TENANT_CREDENTIALS['alpha']:
        i = gw.api.info(token, cred, v='v2', certificates='none')
        assert i.status_code == 200, i.text
        expected |= set(i.json()['key']['algo'])
    assert algos == expected
    assert {ECDSA_SHA256, SHA256_RSA, RSA_PSS} <= algos

    # v1 info keeps the v1 shape.
    r1 = gw.api.post('v1/info', {})
    assert r1.status_code == 200 and r1.json()['specs'].startswith('1.'), r1.text
    assert 'signAlgorithms' not in r1.json()


def test_v2_credentials_list_with_infos(gw):
    token = gw.tokens['alpha-app']
    want = TENANT_CREDENTIALS['alpha']
    r = gw.api.post('v2/credentials/list', {'credentialInfo': True, 'certificates': 'chain'}, token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body['credentialIDs']) == sorted(want)
    infos = {i['credentialID']: i for i in body['credentialInfos']}
    assert sorted(infos) == sorted(want)
    for cid, info in infos.items():
        assert len(info['cert']['certificates']) == 3, cid  # signer, issuing CA, root
        assert info['key']['status'] == 'enabled'
        assert info['SCAL'] == ('2' if ROUTES[cid][0] == 'vendor-b' else '1')
        assert 'auth' in info and 'authMode' not in info
        signer = load_cert(info['cert']['certificates'][0])
        issuer = load_cert(info['cert']['certificates'][1])
        assert signer.issuer == issuer.subject

    r = gw.api.post('v2/credentials/list', {'credentialInfo': True, 'certificates': 'single'},
                    token)
    assert r.status_code == 200, r.text
    assert all(len(i['cert']['certificates']) == 1 for i in r.json()['credentialInfos'])

    r = gw.api.post('v2/credentials/list', {'credentialInfo': True, 'certificates': 'none'}, token)
    assert r.status_code == 200, r.text
    assert all(not i.get('cert', {}).get('certificates') for i in r.json()['credentialInfos'])

    r = gw.api.post('v2/credentials/list', {'onlyValid': True}, token)
    assert r.status_code == 200, r.text
    assert r.json().get('onlyValid') is True
    assert sorted(r.json()['credentialIDs']) == sorted(want)  # all four certificates are valid

    r = gw.api.post('v2/credentials/list', {}, token)
    assert r.status_code == 200 and 'credentialInfos' not in r.json(), r.text


def test_v2_credentials_info_shape(gw):
    token = gw.tokens['alpha-app']
    r = gw.api.post('v2/credentials/info', {'credentialID': 'alpha-ec-b', 'certificates': 'chain',
                                            'authInfo': True}, token)
    assert r.status_code == 200, r.text
    info = r.json()
    assert isinstance(info['auth'], dict) and isinstance(info['auth'].get('mode'), str)
    assert info['auth']['mode'] in ('explicit', 'oauth2code')
    assert 'authMode' not in info and 'PIN' not in info and 'OTP' not in info
    assert info['SCAL'] == '2' and info['multisign'] == 10
    assert info['key']['curve'] == '1.2.840.10045.3.1.7' and info['key']['len'] == 256
    assert ECDSA_SHA256 in info['key']['algo']
    assert len(info['cert']['certificates']) == 3

    r = gw.api.post('v2/credentials/info', {'credentialID': 'alpha-rsa'}, token)
    assert r.status_code == 200, r.text
    assert len(r.json()['cert']['certificates']) == 1  # single is the default
    assert {SHA256_RSA, RSA_PSS, RSA_ENC} <= set(r.json()['key']['algo'])


V2_SIGN_CASES = [
    pytest.param('alpha-ec', ECDSA_SHA256, None, None, 'sha256', id='vendor-a-ecdsa-sha256'),
    pytest.param('alpha-ec', ECDSA_SHA384, SHA384, None, 'sha384', id='vendor-a-ecdsa-sha384'),
    pytest.param('alpha-ec-b', ECDSA_SHA256, None, None, 'sha256', id='vendor-b-ecdsa-sha256'),
    pytest.param('alpha-rsa', SHA256_RSA, None, None, 'sha256', id='vendor-a-sha256WithRSA'),
    pytest.param('alpha-rsa', RSA_ENC, SHA256, None, 'sha256', id='vendor-a-rsaEncryption+hash'),
    pytest.param('alpha-rsa-b', SHA256_RSA, None, None, 'sha256', id='vendor-b-sha256WithRSA'),
    pytest.param('alpha-rsa-b', RSA_PSS, None, PSS_PARAMS_SHA256_32, 'sha256',
                 id='vendor-b-rsassa-pss'),
]


@pytest.mark.parametrize('cred,sign_algo,hash_oid,params,hname', V2_SIGN_CASES)
def test_v2_authorize_and_sign_hashes(gw, cred, sign_algo, hash_oid, params, hname):
    token = gw.tokens['alpha-app']
    cert = load_cert(gw.api.info(token, cred, v='v2').json()['cert']['certificates'][0])
    hashes = [digest(f'v2-{cred}-{i}', hname) for i in range(2)]
    halg = {'sha256': SHA256, 'sha384': SHA384}[hname]
    r = gw.api.authorize(token, cred, 2, hashes, v='v2', hash_algo=halg)
    body = r.json()
    assert body['SAD'].startswith('gsad1.')
    assert isinstance(body.get('expiresIn'), int) and 0 < body['expiresIn'] <= 3600
    r = gw.api.sign(token, cred, body['SAD'], hashes, sign_algo, v='v2', hash_algo=hash_oid,
                    params=params)
    assert r.status_code == 200, r.text
    sigs = r.json()['signatures']
    assert len(sigs) == 2
    for h, s in zip(hashes, sigs):  # same order as the hashes
        verify_signature(cert, s, h, sign_algo, hash_oid)
    # swapped order must not verify: the gateway really returned them in request order
    assert not signature_ok(cert, sigs[0], hashes[1], sign_algo, hash_oid)


def test_v2_authorize_hashes_need_hash_algorithm_oid(gw):
    token = gw.tokens['alpha-app']
    r = gw.api.post('v2/credentials/authorize', {
        'credentialID': 'alpha-ec-b', 'numSignatures': 1, 'hashes': [b64(digest('x'))]}, token)
    assert_csc_error(r, 400, 'invalid_request', 'hashAlgorithmOID')


def test_v1_and_v2_clients_on_the_same_credential(gw):
    token = gw.tokens['alpha-app']
    i1 = gw.api.info(token, 'alpha-ec', v='v1')
    i2 = gw.api.info(token, 'alpha-ec', v='v2')
    assert i1.status_code == i2.status_code == 200
    j1, j2 = i1.json(), i2.json()
    assert j1['cert']['certificates'] == j2['cert']['certificates']
    assert j1['key'] == j2['key']
    assert j1['authMode'] == 'implicit' and 'auth' not in j1
    assert 'auth' in j2 and 'authMode' not in j2
    cert = load_cert(j1['cert']['certificates'][0])

    h1, h2 = digest('v1-client'), digest('v2-client')
    sad1 = gw.api.sad(token, 'alpha-ec', 1, [h1], v='v1')
    sad2 = gw.api.sad(token, 'alpha-ec', 1, [h2], v='v2')
    r1 = gw.api.sign(token, 'alpha-ec', sad1, [h1], v='v1', hash_algo=SHA256)  # pyHanko style
    r2 = gw.api.sign(token, 'alpha-ec', sad2, [h2], v='v2')
    assert r1.status_code == 200, r1.text
    assert r2.status_code == 200, r2.text
    verify_signature(cert, r1.json()['signatures'][0], h1, ECDSA_SHA256)
    verify_signature(cert, r2.json()['signatures'][0], h2, ECDSA_SHA256)

    # The other version's field names are refused with a hint, not silently ignored.
    r = gw.api.post('v1/signatures/signHash', {
        'credentialID': 'alpha-ec', 'SAD': sad1, 'hashes': [b64(h1)], 'signAlgo': ECDSA_SHA256},
        token)
    assert_csc_error(r, 400, 'invalid_request', 'hash')


def test_v1_rsa_encryption_with_hash_algo(gw):
    token = gw.tokens['alpha-app']
    cert = load_cert(gw.api.info(token, 'alpha-rsa').json()['cert']['certificates'][0])
    h = digest('rsa-raw-v1')
    sad = gw.api.sad(token, 'alpha-rsa', 1)
    r = gw.api.sign(token, 'alpha-rsa', sad, [h], RSA_ENC, hash_algo=SHA256)
    assert r.status_code == 200, r.text
    verify_signature(cert, r.json()['signatures'][0], h, RSA_ENC, SHA256)

    # rsaEncryption without hashAlgo cannot be signed: 400, not an upstream 500
    sad = gw.api.sad(token, 'alpha-rsa', 1)
    r = gw.api.sign(token, 'alpha-rsa', sad, [h], RSA_ENC)
    assert_csc_error(r, 400, 'invalid_request', 'hashAlgo')


def test_timestamp_is_per_tenant(gw):
    h = hashlib.sha256(b'timestamp me').digest()
    r = gw.api.post('v1/signatures/timestamp', {'hash': b64(h), 'hashAlgo': SHA256,
                                                'nonce': '0a1b2c3d4e5f'},
                    gw.tokens['alpha-app'])
    assert r.status_code == 200, r.text
    tst = cms.ContentInfo.load(base64.b64decode(r.json()['timestamp']))
    info = tst['content']['encap_content_info']['content'].parsed
    assert isinstance(info, tsp.TSTInfo)
    assert info['message_imprint']['hashed_message'].native == h
    assert info['message_imprint']['hash_algorithm']['algorithm'].dotted == SHA256
    assert info['nonce'].native == 0x0a1b2c3d4e5f  # CSC §1: a nonce sent must be in the token
    # beta has no timestamp service configured
    r = gw.api.post('v1/signatures/timestamp', {'hash': b64(h), 'hashAlgo': SHA256},
                    gw.tokens['beta-app'])
    assert r.status_code in (400, 501), r.text
    assert_csc_error(r, r.status_code)
