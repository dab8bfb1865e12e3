"""Signer-certificate validation via OCSP (issue 4), end to end.

Three gateways of their own (the main suite's gateway has OCSP off), all on loopback:

* `checked`: hard-fail by default. vendor-a credentials are checked at Certomancer's Animator
  (the URL in the certificates' AIA); vendor-b's issuing CA is overridden to `openssl`, an
  independent responder (`openssl ocsp` behind ocsp_responder.py) whose index says rsa-signer
  good, revoked-signer revoked and ec-signer unknown. Tenant `hard` and tenant `soft`
  (failureMode soft).
* `faults`: the same vendor-b credential (rsa-signer) behind a fault-injecting responder;
  retryAfter 0 so that no failed verdict is reused between tests.
* `cached`: vendor-b's CA overridden to a counting proxy in front of the vendor-b Animator
  (nextUpdate = thisUpdate + 10 s): one fetch for many signatures, another after nextUpdate.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway_fixture import cscgate_bin, hash_secret, start_gateway
from gateway_suite import ECDSA_SHA256, SHA256_RSA, assert_csc_error, b64, digest, free_port
from ocsp_responder import OCSPTestResponder, ocsp_request_for, openssl_index, wait_until
from policy_support import LEDGER_FILE_LAG

REPO = Path(__file__).resolve().parents[2]
KEYS = REPO / '.run' / 'pki' / 'keys'
SECRET = 'ocsp-e2e-client-secret-0001'
TIMEOUT = 1.0

CREDENTIALS = {  # id -> (upstream, upstream credential id)
    'a-ec': ('vendor-a', 'vendor-a/ec-signer'),
    'a-rsa': ('vendor-a', 'vendor-a/rsa-signer'),
    'a-revoked': ('vendor-a', 'vendor-a/revoked-signer'),
    'b-rsa': ('vendor-b', 'vendor-b/rsa-signer'),
    'b-revoked': ('vendor-b', 'vendor-b/revoked-signer'),
    'b-unknown': ('vendor-b', 'vendor-b/ec-signer'),
}


def chain_of(peers, vendor: str, label: str) -> list[x509.Certificate]:
    r = requests.post(f'{peers[vendor].base_url}/credentials/info',
                      json={'credentialID': f'{vendor}/{label}', 'certificates': 'chain'}, timeout=10)
    r.raise_for_status()
    return [x509.load_der_x509_certificate(base64.b64decode(c)) for c in r.json()['cert']['certificates']]


def rfc4514(name: x509.Name) -> str:
    """The issuer DN as swift-certificates prints it (`cscgate ocsp check` shows it too)."""
    return name.rfc4514_string()


def gateway_yaml(port: int, peers, *, responders: dict[str, str], retry_after: float = 30,
                 failure_mode: str = 'hard') -> str:
    lines = ['listen:', '  host: 127.0.0.1', f'  port: {port}', 'tenants: tenants', 'policies: policies',
             'sad:', '  keyFile: sad.key', 'ocsp:', '  enabled: true', f'  failureMode: {failure_mode}',
             f'  timeout: {TIMEOUT}', '  clockSkew: 60', f'  retryAfter: {retry_after}', '  get: true']
    if responders:
        lines.append('  responders:')
        for issuer, url in responders.items():
            lines += [f'    - issuer: "{issuer}"', f'      url: {url}']
    lines.append('upstreams:')
    for v in ('vendor-a', 'vendor-b'):
        lines += [f'  - name: {v}', '    kind: csc', f'    baseURL: {peers[v].base_url}', '    version: v1',
                  f'    trustAnchors: [{peers[v].root_pem}]']
    return '\n'.join(lines) + '\n'


def tenant_yaml(tenant: str, secret_hash: str, credentials: list[str], mode: str | None = None) -> str:
    lines = [f'tenant: {tenant}', 'clients:', f'  - id: {tenant}-app', f'    secretHash: "{secret_hash}"',
             '    scopes: [service]', 'credentials:']
    for cid in credentials:
        up, upid = CREDENTIALS[cid]
        lines += [f'  - id: {cid}', f'    upstream: {up}', f'    upstreamCredentialID: {upid}']
    if mode:
        lines += ['ocsp:', f'  failureMode: {mode}']
    return '\n'.join(lines) + '\n'


class Client:
    def __init__(self, url: str, tenant: str):
        self.url = url
        self.s = requests.Session()
        r = self.s.post(f'{url}/csc/v1/auth/login', json={}, auth=(f'{tenant}-app', SECRET), timeout=10)
        assert r.status_code == 200, r.text
        self.token = r.json()['access_token']

    def post(self, path: str, body: dict, v: str = 'v1') -> requests.Response:
        return self.s.post(f'{self.url}/csc/{v}/{path}', json=body,
                           headers={'Authorization': f'Bearer {self.token}'}, timeout=30)

    def authorize(self, cred: str, hashes: list[bytes]) -> requests.Response:
        return self.post('credentials/authorize', {'credentialID': cred, 'numSignatures': len(hashes),
                                                   'hash': [b64(h) for h in hashes]})

    def sign(self, cred: str, algo: str = SHA256_RSA) -> requests.Response:
        h = [digest(f'ocsp {cred}')]
        r = self.authorize(cred, h)
        if r.status_code != 200:
            return r
        return self.post('signatures/signHash', {'credentialID': cred, 'SAD': r.json()['SAD'],
                                                 'hash': [b64(x) for x in h], 'signAlgo': algo})


def ledger_rows(gw_dir: Path, sql: str, args=()) -> list[tuple]:
    time.sleep(LEDGER_FILE_LAG)  # the file trails the journal by at most applyInterval
    with sqlite3.connect(f'file:{gw_dir / "ledger.sqlite"}?mode=ro', uri=True) as db:
        return db.execute(sql, args).fetchall()


@pytest.fixture(scope='module')
def pki(peers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ocsp-pki')
    b = {label: chain_of(peers, 'vendor-b', label) for label in ('rsa-signer', 'revoked-signer', 'ec-signer')}
    a = chain_of(peers, 'vendor-a', 'ec-signer')
    issuer_b = b['rsa-signer'][1]
    issuer_pem = tmp / 'vendor-b-interm.pem'
    issuer_pem.write_bytes(issuer_b.public_bytes(serialization.Encoding.PEM))
    index = openssl_index(tmp / 'index.txt', good=[b['rsa-signer'][0]], revoked=[b['revoked-signer'][0]])
    return {'b': b, 'a': a, 'issuer_b': issuer_b, 'issuer_b_pem': issuer_pem, 'index': index,
            'issuer_b_dn': rfc4514(issuer_b.subject), 'issuer_a_dn': rfc4514(a[1].subject)}


def _start(tmp: Path, name: str, peers, tenants: dict[str, str], **kw):
    d = tmp / name
    d.mkdir()
    (d / 'sad.key').write_text(b64(os.urandom(32)) + '\n')
    port = free_port()
    return start_gateway(d, gateway_yaml(port, peers, **kw), tenants, {'CSCGATE_LOG_LEVEL': 'debug'},
                         url=f'http://127.0.0.1:{port}')


@pytest.fixture(scope='module')
def env(peers, pki, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ocsp-gw')
    h = hash_secret(SECRET)
    key_b = KEYS / 'vendor-b' / 'interm.key.pem'
    openssl = OCSPTestResponder(issuer_pem=pki['issuer_b_pem'], issuer_key=key_b, index=pki['index']).start()
    faulty = OCSPTestResponder(issuer_pem=pki['issuer_b_pem'], issuer_key=key_b, index=pki['index']).start()
    faulty.subject_cert = pki['b']['rsa-signer'][0]
    faulty.other_cert = pki['b']['revoked-signer'][0]
    faulty.hang_seconds = 8.0
    anim_b = f'{peers["vendor-b"].animator_url}/vendor-b/ocsp/interm'
    counting = OCSPTestResponder(issuer_pem=pki['issuer_b_pem'], issuer_key=key_b, forward_to=anim_b,
                                 mode='forward').start()
    started = []
    try:
        all_creds = list(CREDENTIALS)
        checked = _start(tmp, 'checked', peers, {
            'hard': tenant_yaml('hard', h, all_creds),
            'soft': tenant_yaml('soft', h, all_creds, mode='soft'),
        }, responders={pki['issuer_b_dn']: openssl.url})
        started.append(checked)
        faults = _start(tmp, 'faults', peers, {
            'fhard': tenant_yaml('fhard', h, ['b-rsa']),
            'fsoft': tenant_yaml('fsoft', h, ['b-rsa'], mode='soft'),
        }, responders={pki['issuer_b_dn']: faulty.url}, retry_after=0)
        started.append(faults)
        cached = _start(tmp, 'cached', peers, {'chard': tenant_yaml('chard', h, ['b-rsa'])},
                        responders={pki['issuer_b_dn']: counting.url})
        started.append(cached)
        yield {'checked': checked, 'faults': faults, 'cached': cached, 'openssl': openssl, 'faulty': faulty,
               'counting': counting, 'tmp': tmp}
    finally:
        for g in started:
            g.stop()
        for r in (openssl, faulty, counting):
            try:
                r.stop()
            except Exception:  # noqa: BLE001 - already stopped by a test
                pass


# --- Certomancer's Animator (AIA URL) ------------------------------------------------------
def test_good_certificate_at_the_animator_signs(env, pki):
    c = Client(env['checked'].url, 'hard')
    r = c.sign('a-ec', ECDSA_SHA256)
    assert r.status_code == 200, r.text
    rows = ledger_rows(env['checked'].workdir, "SELECT evidence, reason FROM usage_events "
                       "WHERE credential = 'a-ec' AND operation = 'signatures/signHash' AND outcome = 'ok'")
    evidence = rows[-1][0]
    assert evidence and len(evidence) == 64
    (der,), = ledger_rows(env['checked'].workdir, 'SELECT der FROM ocsp_evidence WHERE address = ?', (evidence,))
    assert hashlib.sha256(der).hexdigest() == evidence
    # asn1crypto: Certomancer writes fractional seconds in producedAt, which `cryptography` refuses
    from asn1crypto import ocsp as asn1_ocsp
    single = asn1_ocsp.OCSPResponse.load(der).basic_ocsp_response['tbs_response_data']['responses'][0]
    assert single['cert_status'].name == 'good'
    assert single['cert_id']['serial_number'].native == pki['a'][0].serial_number  # about the signer


def test_revoked_certificate_at_the_animator_is_refused(env):
    c = Client(env['checked'].url, 'hard')
    r = c.authorize('a-revoked', [digest('revoked')])
    body = assert_csc_error(r, 400, 'invalid_request', contains='is revoked')
    assert "a-revoked" in body['error_description'] and 'keyCompromise' in body['error_description']
    # soft-fail never lets a revoked certificate through
    assert_csc_error(Client(env['checked'].url, 'soft').authorize('a-revoked', [digest('r2')]), 400,
                     contains='is revoked')
    rows = ledger_rows(env['checked'].workdir, "SELECT outcome, stage, evidence FROM usage_events "
                       "WHERE credential = 'a-revoked' AND operation = 'credentials/authorize'")
    assert rows and all(o == 'denied' and s == 'certificate' and e for o, s, e in rows)


def test_credentials_info_and_list_report_the_gateways_verdict(env):
    c = Client(env['checked'].url, 'hard')
    for v in ('v1', 'v2'):
        info = c.post('credentials/info', {'credentialID': 'a-revoked'}, v).json()
        assert info['cert']['status'] == 'revoked' and info['key']['status'] == 'disabled', info
        info = c.post('credentials/info', {'credentialID': 'a-ec'}, v).json()
        assert info['cert']['status'] == 'valid' and info['key']['status'] == 'enabled', info
    ids = c.post('credentials/list', {'onlyValid': True}, 'v2').json()['credentialIDs']
    assert 'a-ec' in ids and 'b-rsa' in ids
    assert 'a-revoked' not in ids and 'b-revoked' not in ids and 'b-unknown' not in ids
    assert set(c.post('credentials/list', {}, 'v2').json()['credentialIDs']) == set(CREDENTIALS)


# --- the independent responder (openssl ocsp) ----------------------------------------------
def test_openssl_responder_good_revoked_unknown(env):
    hard, soft = Client(env['checked'].url, 'hard'), Client(env['checked'].url, 'soft')
    assert hard.sign('b-rsa').status_code == 200
    assert_csc_error(hard.authorize('b-revoked', [digest('br')]), 400, contains='is revoked')
    assert_csc_error(hard.authorize('b-unknown', [digest('bu')]), 400, contains='status unknown')
    r = soft.sign('b-unknown', ECDSA_SHA256)  # soft-fail: passes, logged and recorded
    assert r.status_code == 200, r.text
    (reason,), = ledger_rows(env['checked'].workdir, "SELECT reason FROM usage_events WHERE tenant = 'soft' AND "
                             "credential = 'b-unknown' AND operation = 'signatures/signHash' AND outcome = 'ok'")
    assert 'soft-failed' in reason and 'unknown' in reason
    assert env['openssl'].methods.get('GET', 0) >= 1, env['openssl'].methods  # RFC 5019 GET (small request)


def test_ocsp_check_command_prints_status_responder_and_path(env, pki):
    cfg = env['checked'].workdir / 'gateway.yaml'
    out = subprocess.run([cscgate_bin(), 'ocsp', 'check', '--config', str(cfg), 'hard/a-ec'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert 'status:        good' in text and '/vendor-a/ocsp/interm' in text
    assert 'thisUpdate:' in text and 'nextUpdate:' in text and 'Vendor A Test Root CA' in text
    assert pki['issuer_a_dn'] in text  # the exact DN to paste into ocsp.responders
    out = subprocess.run([cscgate_bin(), 'ocsp', 'check', '--config', str(cfg), 'hard/b-revoked'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and 'status:        revoked' in out.stdout, out.stdout + out.stderr


# --- faults ---------------------------------------------------------------------------------
@pytest.mark.parametrize('mode,words', [
    ('wrong-key', 'signature'), ('stale', 'stale|expired|old|nextupdate'), ('other-cert', 'does not include'),
    ('replay', 'nonce'),
])
def test_forged_or_unfit_responses_are_rejected(env, mode, words):
    faulty = env['faulty']
    if mode == 'replay':  # a genuine answer to an earlier request (another nonce)
        faulty.set_mode('openssl')
        faulty.answer(ocsp_request_for(faulty.subject_cert, faulty.issuer))
    faulty.set_mode(mode)
    r = Client(env['faults'].url, 'fhard').authorize('b-rsa', [digest(mode)])
    body = assert_csc_error(r, 503, 'temporarily_unavailable', contains='could not be checked')
    desc = body['error_description'].lower()
    assert 'b-rsa' in desc and 'invalid' in desc and any(w in desc for w in words.split('|')), desc
    r = Client(env['faults'].url, 'fsoft').sign('b-rsa')
    assert r.status_code == 200, r.text


@pytest.mark.parametrize('fault', ['hang', 'stopped'])
def test_dead_responder_answers_within_the_timeout(env, fault):
    faulty = env['faulty']
    if fault == 'hang':
        faulty.set_mode('hang')
    else:
        faulty.stop()
    hard, soft = Client(env['faults'].url, 'fhard'), Client(env['faults'].url, 'fsoft')  # logins are not timed
    for client, expected in ((hard, 503), (soft, 200)):
        t0 = time.monotonic()
        r = client.authorize('b-rsa', [digest(fault)])
        elapsed = time.monotonic() - t0
        assert r.status_code == expected, r.text
        assert elapsed < TIMEOUT + 2.5, (client, elapsed)  # bounded by ocsp.timeout (the hang lasts 8 s)
        if expected == 503:
            assert_csc_error(r, 503, 'temporarily_unavailable', contains='could not be checked')
    h = [digest(fault + ' sign')]
    sad = soft.authorize('b-rsa', h).json()['SAD']
    r = soft.post('signatures/signHash', {'credentialID': 'b-rsa', 'SAD': sad, 'hash': [b64(x) for x in h],
                                          'signAlgo': SHA256_RSA})
    assert r.status_code == 200, r.text  # soft-fail signs
    if fault == 'hang':
        faulty.set_mode('openssl')


# --- cache ------------------------------------------------------------------------------------
def test_cache_shares_one_fetch_and_expires_at_next_update(env):
    counting = env['counting']
    c = Client(env['cached'].url, 'chard')
    # wait for a fresh response window so the whole burst fits in one (nextUpdate is +10 s)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: c.sign('b-rsa').status_code, range(16)))
    assert results == [200] * 16
    assert counting.hits == 1, counting.hits  # 16 authorizes + 16 signHash, one OCSP fetch
    assert wait_until(lambda: c.sign('b-rsa').status_code == 200 and counting.hits == 2, timeout=15, step=1)
    rows = ledger_rows(env['cached'].workdir, "SELECT DISTINCT evidence FROM usage_events "
                       "WHERE operation = 'signatures/signHash' AND outcome = 'ok'")
    assert len(rows) == 2 and all(r[0] for r in rows)
    (n,), = ledger_rows(env['cached'].workdir, 'SELECT COUNT(*) FROM ocsp_evidence')
    assert n == 2  # stored once each, however many signings rely on it


# --- pyHanko ----------------------------------------------------------------------------------
def test_pyhanko_signs_with_good_and_fails_with_revoked(env, peers, caplog):
    from pyhanko.sign.general import SigningError
    from pyhanko_flow import sign_and_validate
    url = env['checked'].url
    token = Client(url, 'hard').token
    r = sign_and_validate(f'{url}/csc/v1', 'a-rsa', token, peers['vendor-a'].root_pem)
    assert r.status.intact and r.status.valid and r.status.trusted
    with pytest.raises(SigningError):
        sign_and_validate(f'{url}/csc/v1', 'a-revoked', token, peers['vendor-a'].root_pem)
    # pyHanko wraps the authorize failure ("No signing results available") and logs the cause
    causes = [r.exc_info[1] for r in caplog.records if r.exc_info] + [r.getMessage() for r in caplog.records]
    assert any("a-revoked' is revoked" in str(c) for c in causes), causes
