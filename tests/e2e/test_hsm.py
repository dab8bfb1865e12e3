"""Local HSM credentials (kind: pkcs11) through a real gateway, against a fresh SoftHSM2 token.

The suite makes its own token, keys and demo CA with scripts/softhsm-setup.sh (which drives
`cscgate keys generate|csr|import-cert`) in a temporary directory, starts a gateway in front
of it, and then:
  * pyHanko signs PDFs through the gateway with the HSM RSA (PKCS#1 v1.5 and PSS) and EC
    credentials, validated against the suite's CA;
  * wrong PIN, locked PIN, wrong OTP, replayed OTP, replayed SAD and uncovered hashes get the
    CSC errors the specification gives;
  * credentials/info describes the credentials in v1 (authMode, PIN, OTP) and v2 (auth.objects);
  * raw signHash results verify with `cryptography` (ECDSA DER and plain, PSS).
No certomancer peers are needed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets as pysecrets
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from gateway_fixture import REPO, cscgate_bin, gateway_login, hash_secret, start_gateway
from pyhanko_flow import sign_and_validate

SOFTHSM = '/usr/lib/softhsm/libsofthsm2.so'
SECRET = 'hsm-e2e-client-secret-' + pysecrets.token_hex(6)
OTHER_SECRET = 'hsm-e2e-other-secret-' + pysecrets.token_hex(6)
PIN = '314159'
OTP_SECRET = base64.b32encode(pysecrets.token_bytes(20)).decode()

ECDSA_SHA256 = '1.2.840.10045.4.3.2'
ECDSA_PLAIN_SHA256 = '0.4.0.127.0.7.1.1.4.1.3'
RSA_PSS = '1.2.840.113549.1.1.10'
SHA256_RSA = '1.2.840.113549.1.1.11'
PSS_SHA256_32 = 'MDSgDzANBglghkgBZQMEAgEFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgEFAKIDAgEg'

pytestmark = pytest.mark.skipif(not os.path.exists(SOFTHSM), reason='SoftHSM2 not installed (make deps)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def totp(secret_b32: str, at: float | None = None, digits: int = 6, period: int = 30) -> str:
    key = base64.b32decode(secret_b32)
    step = int((time.time() if at is None else at) // period)
    mac = hmac.new(key, struct.pack('>Q', step), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    code = (struct.unpack('>I', mac[o:o + 4])[0] & 0x7FFFFFFF) % 10 ** digits
    return str(code).zfill(digits)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class HSMGateway:
    def __init__(self, handle, ca_pem: Path, start):
        self.handle = handle
        self.url = handle.url
        self.ca_pem = ca_pem
        self._start = start
        self.token = gateway_login(handle.url, 'hsm-app', SECRET)

    def restart(self):
        """Stops the gateway and starts it again on the same configuration, token and ledger."""
        self.handle.stop()
        self.handle = self._start()
        self.token = gateway_login(self.url, 'hsm-app', SECRET)

    def post(self, path: str, body: dict, v: str = 'v1', token: str | None = None) -> requests.Response:
        return requests.post(f'{self.url}/csc/{v}/{path}', json=body, timeout=30,
                             headers={'Authorization': f'Bearer {token or self.token}'})

    def authorize(self, cred: str, num: int = 1, hashes: list[bytes] | None = None, **factors) -> requests.Response:
        body = {'credentialID': cred, 'numSignatures': num, **factors}
        if hashes is not None:
            body['hash'] = [b64(h) for h in hashes]
        return self.post('credentials/authorize', body)

    def sad(self, cred: str, num: int = 1, hashes=None, **factors) -> str:
        r = self.authorize(cred, num, hashes, **factors)
        assert r.status_code == 200, r.text
        return r.json()['SAD']

    def sign(self, cred: str, sad: str, hashes: list[bytes], sign_algo: str, **extra) -> requests.Response:
        return self.post('signatures/signHash', {'credentialID': cred, 'SAD': sad, 'hash': [b64(h) for h in hashes],
                                                 'signAlgo': sign_algo, **extra})

    def certificate(self, cred: str) -> cx509.Certificate:
        r = self.post('credentials/info', {'credentialID': cred})
        assert r.status_code == 200, r.text
        return cx509.load_der_x509_certificate(base64.b64decode(r.json()['cert']['certificates'][0]))


def assert_error(r: requests.Response, status: int, error: str, contains: str | None = None):
    assert r.status_code == status, f'{r.status_code} {r.text}'
    body = r.json()
    assert body['error'] == error, body
    if contains:
        assert contains in body['error_description'], body


@pytest.fixture(scope='module')
def hsm(tmp_path_factory):
    work = tmp_path_factory.mktemp('hsm-gateway')
    hsm_dir, ca_dir = work / 'softhsm', work / 'ca'
    port = free_port()
    (work / 'sad.key').write_text(b64(pysecrets.token_bytes(32)))
    pin_hash = subprocess.run([cscgate_bin(), 'keys', 'pin-hash'], input=PIN.encode(), capture_output=True,
                              check=True, timeout=60).stdout.decode().strip()
    config = f"""
listen: {{host: 127.0.0.1, port: {port}}}
publicURL: http://127.0.0.1:{port}
sad: {{keyFile: sad.key, maxLifetime: 600}}
upstreams:
  - name: hsm
    kind: pkcs11
    module: {SOFTHSM}
    tokenLabel: e2e-hsm
    pinFile: {hsm_dir}/user.pin
    sessions: 4
    credentials:
      - {{label: rsa, authMode: implicit, scal: 1, multisign: 20}}
      - {{label: ec, authMode: explicit, pinHash: "{pin_hash}", maxPinFailures: 3, scal: 2, multisign: 5}}
      - {{label: ec-lock, authMode: explicit, pinHash: "{pin_hash}", maxPinFailures: 3, multisign: 2}}
      - label: ec-otp
        authMode: explicit
        pinHash: "{pin_hash}"
        otp: {{secretEnv: HSM_E2E_OTP, digits: 6, period: 30}}
        scal: 1
        multisign: 3
"""
    tenants = {
        'hsmco': f"""
tenant: hsmco
clients:
  - {{id: hsm-app, secretHash: "{hash_secret(SECRET)}", scopes: [service]}}
credentials:
  - {{id: hsm-rsa, upstream: hsm, upstreamCredentialID: rsa}}
  - {{id: hsm-ec, upstream: hsm, upstreamCredentialID: ec}}
  - {{id: hsm-ec-lock, upstream: hsm, upstreamCredentialID: ec-lock}}
  - {{id: hsm-ec-otp, upstream: hsm, upstreamCredentialID: ec-otp}}
""",
        'other': f"""
tenant: other
clients:
  - {{id: other-app, secretHash: "{hash_secret(OTHER_SECRET)}", scopes: [service]}}
credentials: []
""",
    }
    # The token, keys and certificates first (the setup script reads the same gateway.yaml).
    (work / 'tenants').mkdir()
    (work / 'policies').mkdir()
    (work / 'gateway.yaml').write_text(config)
    for name, text in tenants.items():
        (work / 'tenants' / f'{name}.yaml').write_text(text)
    subj = 'O=cscgate e2e,C=EU'
    env = {**os.environ, 'HSM_DIR': str(hsm_dir), 'CA_DIR': str(ca_dir), 'CONFIG': str(work / 'gateway.yaml'),
           'TOKEN_LABEL': 'e2e-hsm', 'CSCGATE_BIN': cscgate_bin(),
           'HSM_KEYS': f'rsa:rsa-2048:CN=e2e RSA,{subj} ec:ec-p256:CN=e2e EC,{subj} '
                       f'ec-lock:ec-p256:CN=e2e EC lock,{subj} ec-otp:ec-p256:CN=e2e EC OTP,{subj}'}
    r = subprocess.run(['bash', str(REPO / 'scripts' / 'softhsm-setup.sh')], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    def start():
        return start_gateway(work, config, tenants, url=f'http://127.0.0.1:{port}',
                             env={'SOFTHSM2_CONF': str(hsm_dir / 'softhsm2.conf'), 'HSM_E2E_OTP': OTP_SECRET})
    gateway = HSMGateway(start(), ca_dir / 'ca.pem', start)
    gateway.config_path = work / 'gateway.yaml'
    try:
        yield gateway
    finally:
        gateway.handle.stop()


@pytest.mark.parametrize('cred,pss,pin', [('hsm-rsa', False, None), ('hsm-rsa', True, None), ('hsm-ec', False, PIN)],
                         ids=['rsa-pkcs1', 'rsa-pss', 'ec'])
def test_pyhanko_signs_pdf_with_hsm_credential(hsm, cred, pss, pin):
    result = sign_and_validate(f'{hsm.url}/csc/v1', cred, hsm.token, hsm.ca_pem, pss=pss, pin=pin)
    assert result.status.bottom_line


def test_signatures_verify_with_cryptography(hsm):
    ec_cert, rsa_cert = hsm.certificate('hsm-ec-lock'), hsm.certificate('hsm-rsa')
    data = b'cscgate e2e raw signHash'
    h = hashlib.sha256(data).digest()
    # ECDSA, DER for the X9.62 OID and r||s for the BSI plain OID (ec-lock: PIN, SCAL 1).
    sad = hsm.sad('hsm-ec-lock', 2, PIN=PIN)
    der = base64.b64decode(hsm.sign('hsm-ec-lock', sad, [h], ECDSA_SHA256).json()['signatures'][0])
    ec_cert.public_key().verify(der, data, ec.ECDSA(hashes.SHA256()))
    raw = base64.b64decode(hsm.sign('hsm-ec-lock', sad, [h], ECDSA_PLAIN_SHA256).json()['signatures'][0])
    assert len(raw) == 64
    r_, s_ = int.from_bytes(raw[:32], 'big'), int.from_bytes(raw[32:], 'big')
    ec_cert.public_key().verify(utils.encode_dss_signature(r_, s_), data, ec.ECDSA(hashes.SHA256()))
    # RSA PKCS#1 v1.5 and PSS (salt = 32).
    sad = hsm.sad('hsm-rsa', 2)
    sig = base64.b64decode(hsm.sign('hsm-rsa', sad, [h], SHA256_RSA).json()['signatures'][0])
    rsa_cert.public_key().verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    sig = base64.b64decode(hsm.sign('hsm-rsa', sad, [h], RSA_PSS, signAlgoParams=PSS_SHA256_32,
                                    hashAlgo='2.16.840.1.101.3.4.2.1').json()['signatures'][0])
    rsa_cert.public_key().verify(sig, data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


def test_pss_salt_too_long_is_refused_clearly(hsm):
    sad = hsm.sad('hsm-rsa', 1)
    too_long = 'MDWgDzANBglghkgBZQMEAgEFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgEFAKIEAgIA3w=='  # salt 223
    r = hsm.sign('hsm-rsa', sad, [hashlib.sha256(b'x').digest()], RSA_PSS, signAlgoParams=too_long)
    assert_error(r, 400, 'invalid_request', 'salt length 223')


def test_wrong_pin_then_pin_locked(hsm):
    r = hsm.authorize('hsm-ec-lock', PIN='000000')
    assert_error(r, 400, 'invalid_pin')
    # ec-lock is used with the right PIN elsewhere; two more wrong ones reach the limit of 3 here
    # whatever happened before (a right PIN resets the counter).
    for _ in range(2):
        assert_error(hsm.authorize('hsm-ec-lock', PIN='000000'), 400, 'invalid_pin')
    assert_error(hsm.authorize('hsm-ec-lock', PIN=PIN), 400, 'invalid_request', 'PIN locked')
    assert_error(hsm.authorize('hsm-ec-lock'), 400, 'invalid_request', 'PIN')


def test_a_locked_pin_stays_locked_across_a_restart_until_an_operator_unlocks_it(hsm):
    for _ in range(3):
        hsm.authorize('hsm-ec-lock', PIN='000000')
    assert_error(hsm.authorize('hsm-ec-lock', PIN=PIN), 400, 'invalid_request', 'PIN locked')
    hsm.restart()
    assert_error(hsm.authorize('hsm-ec-lock', PIN=PIN), 400, 'invalid_request', 'PIN locked')
    r = subprocess.run([cscgate_bin(), 'keys', 'unlock', '--config', str(hsm.config_path), '--label', 'ec-lock',
                        '--factor', 'pin'], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'hsm/ec-lock/pin: 3 failure(s) cleared' in r.stdout, r.stdout
    assert hsm.authorize('hsm-ec-lock', PIN=PIN).status_code == 200


def test_wrong_otp_and_replayed_otp(hsm):
    wrong = str((int(totp(OTP_SECRET)) + 1) % 1_000_000).zfill(6)
    assert_error(hsm.authorize('hsm-ec-otp', PIN=PIN, OTP=wrong), 400, 'invalid_otp')
    assert_error(hsm.authorize('hsm-ec-otp', PIN=PIN), 400, 'invalid_request', 'OTP')
    # Close to a window edge the code might roll over between computing and checking it.
    if time.time() % 30 > 27:
        time.sleep(3.5)
    code = totp(OTP_SECRET)
    sad = hsm.sad('hsm-ec-otp', 1, PIN=PIN, OTP=code)
    assert hsm.sign('hsm-ec-otp', sad, [hashlib.sha256(b'otp').digest()], ECDSA_SHA256).status_code == 200
    assert_error(hsm.authorize('hsm-ec-otp', PIN=PIN, OTP=code), 400, 'invalid_otp', 'already used')
    # A restart does not forget which code was used.
    hsm.restart()
    assert_error(hsm.authorize('hsm-ec-otp', PIN=PIN, OTP=code), 400, 'invalid_otp', 'already used')


def test_sad_replay_and_scal2_hash_binding(hsm):
    h1, h2 = hashlib.sha256(b'one').digest(), hashlib.sha256(b'two').digest()
    sad = hsm.sad('hsm-ec', 1, [h1], PIN=PIN)
    assert_error(hsm.sign('hsm-ec', sad, [h2], ECDSA_SHA256), 400, 'invalid_request', 'Hash is not authorized by the SAD')
    assert hsm.sign('hsm-ec', sad, [h1], ECDSA_SHA256).status_code == 200
    assert_error(hsm.sign('hsm-ec', sad, [h1], ECDSA_SHA256), 400, 'invalid_request', 'Invalid parameter SAD')
    # SCAL 2: authorize without hashes is refused.
    assert_error(hsm.authorize('hsm-ec', 1, PIN=PIN), 400, 'invalid_request', 'SCAL 2')


def test_a_sad_from_before_a_restart_is_refused_not_given_a_fresh_budget(hsm):
    # Without `sessions:` the budget lives in the process: after a restart what the SAD spent
    # is unknown, so it must not sign again (the HSM SAD inside it would still verify).
    sad = hsm.sad('hsm-rsa', 2)
    digest = hashlib.sha256(b'before restart').digest()
    assert hsm.sign('hsm-rsa', sad, [digest], SHA256_RSA).status_code == 200
    hsm.restart()
    assert_error(hsm.sign('hsm-rsa', sad, [digest], SHA256_RSA), 400, 'invalid_request', 'SAD expired')
    assert hsm.sign('hsm-rsa', hsm.sad('hsm-rsa', 1), [digest], SHA256_RSA).status_code == 200


def test_credentials_info_v1_and_v2(hsm):
    v1 = hsm.post('credentials/info', {'credentialID': 'hsm-ec-otp', 'authInfo': True, 'certInfo': True,
                                       'certificates': 'chain'}).json()
    assert v1['authMode'] == 'explicit'
    assert v1['PIN']['presence'] == 'true' and v1['PIN']['format'] == 'N'
    assert v1['OTP']['type'] == 'offline' and v1['OTP']['provider'] == 'totp'
    assert v1['key']['curve'] == '1.2.840.10045.3.1.7' and int(v1['key']['len']) == 256
    assert ECDSA_SHA256 in v1['key']['algo'] and ECDSA_PLAIN_SHA256 in v1['key']['algo']
    assert str(v1['SCAL']) == '1' and int(v1['multisign']) == 3
    assert len(v1['cert']['certificates']) == 2
    assert v1['cert']['subjectDN'].startswith('CN=e2e EC OTP')
    v2 = hsm.post('credentials/info', {'credentialID': 'hsm-ec-otp', 'authInfo': True}, v='v2').json()
    ids = {o['id'] for o in v2['auth']['objects']}
    assert v2['auth']['mode'] == 'explicit' and ids == {'PIN', 'OTP'}
    rsa = hsm.post('credentials/info', {'credentialID': 'hsm-rsa'}).json()
    assert rsa['authMode'] == 'implicit' and int(rsa['key']['len']) == 2048
    assert {SHA256_RSA, RSA_PSS, '1.2.840.113549.1.1.1'} <= set(rsa['key']['algo'])


def test_other_tenant_cannot_reach_hsm_credentials(hsm):
    token = gateway_login(hsm.url, 'other-app', OTHER_SECRET)
    r = hsm.post('credentials/info', {'credentialID': 'hsm-rsa'}, token=token)
    assert r.status_code == 400, r.text
    assert hsm.post('credentials/list', {}, token=token).json()['credentialIDs'] == []


def test_v2_client_authorizes_with_auth_data_and_signs(hsm):
    data = b'v2 through the HSM'
    h = hashlib.sha256(data).digest()
    r = hsm.post('credentials/authorize', {'credentialID': 'hsm-ec', 'numSignatures': 1, 'hashes': [b64(h)],
                                           'hashAlgorithmOID': '2.16.840.1.101.3.4.2.1',
                                           'authData': [{'id': 'PIN', 'value': '000000'}]}, v='v2')
    assert r.status_code == 400 and r.json()['error'] in ('invalid_pin', 'invalid_authentication_data'), r.text
    r = hsm.post('credentials/authorize', {'credentialID': 'hsm-ec', 'numSignatures': 1, 'hashes': [b64(h)],
                                           'hashAlgorithmOID': '2.16.840.1.101.3.4.2.1',
                                           'authData': [{'id': 'PIN', 'value': PIN}]}, v='v2')
    assert r.status_code == 200, r.text
    r = hsm.post('signatures/signHash', {'credentialID': 'hsm-ec', 'SAD': r.json()['SAD'], 'hashes': [b64(h)],
                                         'hashAlgorithmOID': '2.16.840.1.101.3.4.2.1', 'signAlgo': ECDSA_SHA256}, v='v2')
    assert r.status_code == 200, r.text
    sig = base64.b64decode(r.json()['signatures'][0])
    hsm.certificate('hsm-ec').public_key().verify(sig, data, ec.ECDSA(hashes.SHA256()))
