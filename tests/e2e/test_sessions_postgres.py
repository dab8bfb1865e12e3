"""Two gateway instances, one PostgreSQL session store (`sessions:`), behave as one gateway.

Two real `cscgate serve` processes share a fresh schema of the test database and one SAD key
(each keeps its own SQLite ledger). Every test below passes only if tokens, refresh tokens,
revocations and SAD budgets live in the shared store, not in either process:

* an access token issued by A works at B; revoked at B, it is refused at A at once;
* a SAD's numSignatures is a budget for A and B together, also under concurrent signHash
  calls spread over both;
* a SCAL 2 SAD's hashes are spent once across both instances;
* a refresh token rotates across instances: redeemed at B, it is dead at A (and a race of two
  redemptions through A and B has one winner);
* a local HSM (kind: pkcs11, one SoftHSM2 token directory used by both) SAD authorized at A
  signs at B, with one budget for both, and is refused by an instance with another SAD key.

Two more need no second instance: `cscgate check` refuses `sessions:` without a shared SAD key
(a per-process random key would make B refuse A's SADs), and `serve` exits with status 2 when
the store cannot be reached at start instead of running with per-process state.

Needs CSCGATE_TEST_POSTGRES_URL (`make test` starts scripts/postgres.sh and sets it) and the
peers (vendor-a SCAL 1, vendor-b SCAL 2); the HSM test needs SoftHSM2 instead of the peers.
"""
from __future__ import annotations

import base64
import hashlib
import os
import secrets as pysecrets
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from gateway_fixture import REPO, GatewayHandle, cscgate_bin, hash_secret, start_gateway

URLS = {'A': 'http://127.0.0.1:8321', 'B': 'http://127.0.0.1:8322'}
STRANGER_URL = 'http://127.0.0.1:8323'  # an HSM instance on the same store with another SAD key
DOWN_PORT = 8324  # the instance whose store is down never listens; kept apart anyway
EC = '1.2.840.10045.4.3.2'
RSA_SHA256 = '1.2.840.113549.1.1.11'
SOFTHSM = '/usr/lib/softhsm/libsofthsm2.so'
HSM_PIN = '271828'
CLIENT = 'shared-app'
SECRET = 'sessions-client-secret-' + pysecrets.token_hex(8)
PG_URL = os.environ.get('CSCGATE_TEST_POSTGRES_URL', '')

needs_pg = pytest.mark.skipif(not PG_URL, reason='CSCGATE_TEST_POSTGRES_URL is unset (make test sets it)')
needs_softhsm = pytest.mark.skipif(not os.path.exists(SOFTHSM), reason='SoftHSM2 not installed (make deps)')


# --- helpers -------------------------------------------------------------------------------
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def digest(label: str) -> bytes:
    return hashlib.sha256(f'cscgate sessions e2e {label} {time.monotonic_ns()}'.encode()).digest()


def psql(sql: str) -> None:
    psql_bin = shutil.which('psql') or '/usr/lib/postgresql/15/bin/psql'
    r = subprocess.run([psql_bin, PG_URL, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def pg_base_url() -> str:
    return PG_URL.split('?', 1)[0] + '?sslmode=disable'


@pytest.fixture(scope='module')
def secret_hash() -> str:
    return hash_secret(SECRET)


def tenant_yaml(secret_hash: str) -> str:
    return f"""
tenant: shared
clients:
  - {{id: {CLIENT}, secretHash: "{secret_hash}", scopes: [service]}}
credentials:
  - {{id: ec, upstream: vendor-a, upstreamCredentialID: vendor-a/ec-signer}}
  - {{id: ec-b, upstream: vendor-b, upstreamCredentialID: vendor-b/ec-signer}}
"""


def gateway_yaml(port: int, sessions_url: str, *, sad_key: Path | None, schema: str | None = None,
                 upstreams: str | None = None) -> str:
    """Both vendors as upstreams (ports as in conftest.py) unless `upstreams` (YAML list items)
    is given; no SAD key when sad_key is None."""
    a, b = os.environ.get('CSC_A_PORT', '9101'), os.environ.get('CSC_B_PORT', '9102')
    if upstreams is None:
        upstreams = (f'  - {{name: vendor-a, kind: csc, baseURL: "http://127.0.0.1:{a}/csc/v1", version: v1}}\n'
                     f'  - {{name: vendor-b, kind: csc, baseURL: "http://127.0.0.1:{b}/csc/v1", version: v1}}\n')
    return (f'listen: {{host: 127.0.0.1, port: {port}}}\n'
            + (f'sad: {{keyFile: {sad_key}}}\n' if sad_key else '')
            + f'sessions:\n  url: "{sessions_url}"\n'
            + (f'  schema: {schema}\n' if schema else '')
            + 'upstreams:\n' + upstreams)


class Pair:
    """Instances A and B; every check's failure message carries both log tails."""

    def __init__(self, gateways: dict[str, GatewayHandle]):
        self.g = gateways

    def logs(self) -> str:
        return '\n'.join(f'--- instance {n} ({g.url}) log tail ---\n{g.log_tail()}' for n, g in self.g.items())

    def post(self, at: str, path: str, body: dict, token: str | None = None, *, auth=None,
             session: requests.Session | None = None) -> requests.Response:
        headers = {'Authorization': f'Bearer {token}'} if token else {}
        return (session or requests).post(f'{self.g[at].csc_v1}/{path}', json=body, headers=headers,
                                          auth=auth, timeout=15)

    def expect(self, r: requests.Response, status: int, what: str, error: str | None = None,
               contains: tuple[str, ...] = ()) -> dict:
        ctx = f'{what}: {r.request.method} {r.url} -> {r.status_code} {r.text[:500]}\n{self.logs()}'
        assert r.status_code == status, f'expected {status}; {ctx}'
        if status == 204:
            return {}
        assert r.headers.get('Content-Type', '').startswith('application/json'), ctx
        body = r.json()
        if error is not None:
            assert body.get('error') == error, ctx
        if contains:
            desc = str(body.get('error_description', '')).lower()
            assert any(c.lower() in desc for c in contains), ctx
        return body

    def login(self, at: str, remember: bool = False) -> dict:
        r = self.post(at, 'auth/login', {'rememberMe': True} if remember else {}, auth=(CLIENT, SECRET))
        return self.expect(r, 200, f'login at {at}')

    def authorize(self, at: str, token: str, cred: str, num: int, hashes: list[bytes] | None = None,
                  **factors) -> str:
        body = {'credentialID': cred, 'numSignatures': num, **factors}
        if hashes is not None:
            body['hash'] = [b64(h) for h in hashes]
        return self.expect(self.post(at, 'credentials/authorize', body, token), 200, f'authorize at {at}')['SAD']

    def sign(self, at: str, token: str, cred: str, sad: str, hashes: list[bytes],
             session: requests.Session | None = None, algo: str = EC) -> requests.Response:
        body = {'credentialID': cred, 'SAD': sad, 'hash': [b64(h) for h in hashes], 'signAlgo': algo}
        return self.post(at, 'signatures/signHash', body, token, session=session)

    def certificate(self, at: str, token: str, cred: str) -> cx509.Certificate:
        body = self.expect(self.post(at, 'credentials/info', {'credentialID': cred}, token), 200,
                           f'credentials/info {cred} at {at}')
        return cx509.load_der_x509_certificate(base64.b64decode(body['cert']['certificates'][0]))


def new_sad_key(path: Path) -> Path:
    path.write_text(b64(pysecrets.token_bytes(32)) + '\n')
    path.chmod(0o600)
    return path


def start_together(start, names) -> tuple[dict[str, GatewayHandle], list[str]]:
    """Starts `start(name)` for every name at once (they install the schema together); returns
    the instances that came up and the errors of those that did not."""
    gateways: dict[str, GatewayHandle] = {}
    errors = []
    with ThreadPoolExecutor(len(names)) as pool:
        futures = {n: pool.submit(start, n) for n in names}
        for n, f in futures.items():
            try:
                gateways[n] = f.result()
            except Exception as e:  # noqa: BLE001 - the others are stopped, then we fail
                errors.append(f'instance {n}: {e}')
    return gateways, errors


@pytest.fixture
def pair(peers, tmp_path, secret_hash):
    """A and B on a fresh schema, started together (both install the schema at once)."""
    schema = 'e2e_sessions_' + pysecrets.token_hex(6)
    sad_key = new_sad_key(tmp_path / 'sad.key')
    tenants = {'shared': tenant_yaml(secret_hash)}

    def start(name: str) -> GatewayHandle:
        url = URLS[name]
        cfg = gateway_yaml(int(url.rsplit(':', 1)[1]), pg_base_url(), sad_key=sad_key, schema=schema)
        return start_gateway(tmp_path / f'instance-{name}', cfg, tenants, url=url)

    gateways, errors = start_together(start, list(URLS))
    try:
        if errors:
            pytest.fail('\n'.join(errors), pytrace=False)
        yield Pair(gateways)
    finally:
        for g in gateways.values():
            g.stop()
        psql(f'DROP SCHEMA IF EXISTS {schema} CASCADE')


def hsm_upstream_yaml(hsm_dir: Path, pin_hash: str) -> str:
    """One SoftHSM2 token: an implicit RSA key and an EC key behind a PIN under SCAL 2."""
    return (f'  - name: hsm\n    kind: pkcs11\n    module: {SOFTHSM}\n    tokenLabel: e2e-sessions\n'
            f'    pinFile: {hsm_dir}/user.pin\n    sessions: 2\n    credentials:\n'
            '      - {label: rsa, authMode: implicit, scal: 1, multisign: 5}\n'
            f'      - {{label: ec, authMode: explicit, pinHash: "{pin_hash}", maxPinFailures: 3, scal: 2, multisign: 5}}\n')


def hsm_tenant_yaml(secret_hash: str) -> str:
    return f"""
tenant: shared
clients:
  - {{id: {CLIENT}, secretHash: "{secret_hash}", scopes: [service]}}
credentials:
  - {{id: hsm-rsa, upstream: hsm, upstreamCredentialID: rsa}}
  - {{id: hsm-ec, upstream: hsm, upstreamCredentialID: ec}}
"""


@pytest.fixture
def hsm_pair(tmp_path, secret_hash):
    """A and B in front of one SoftHSM2 token directory (SoftHSM2 keeps its token in files, and
    several processes may use it) with one SAD key, on a fresh schema; and C, on the same token
    and schema but with a SAD key of its own. No peers: the only upstream is the token."""
    hsm_dir, ca_dir = tmp_path / 'softhsm', tmp_path / 'ca'
    pin_hash = subprocess.run([cscgate_bin(), 'keys', 'pin-hash'], input=HSM_PIN.encode(), capture_output=True,
                              check=True, timeout=60).stdout.decode().strip()
    upstream = hsm_upstream_yaml(hsm_dir, pin_hash)
    tenants = {'shared': hsm_tenant_yaml(secret_hash)}
    # The token, its two keys and their certificates, made by the script the demo uses, from a
    # gateway.yaml that names only the token (the `keys` commands need no session store).
    setup = tmp_path / 'hsm-setup'
    for d in ('tenants', 'policies'):
        (setup / d).mkdir(parents=True)
    (setup / 'tenants' / 'shared.yaml').write_text(tenants['shared'])
    (setup / 'gateway.yaml').write_text(f'listen: {{host: 127.0.0.1, port: {DOWN_PORT}}}\nupstreams:\n{upstream}')
    subj = 'O=cscgate sessions e2e,C=EU'
    r = subprocess.run(['bash', str(REPO / 'scripts' / 'softhsm-setup.sh')], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL,
                       env={**os.environ, 'HSM_DIR': str(hsm_dir), 'CA_DIR': str(ca_dir),
                            'CONFIG': str(setup / 'gateway.yaml'), 'TOKEN_LABEL': 'e2e-sessions',
                            'CSCGATE_BIN': cscgate_bin(),
                            'HSM_KEYS': f'rsa:rsa-2048:CN=sessions e2e RSA,{subj} ec:ec-p256:CN=sessions e2e EC,{subj}'})
    assert r.returncode == 0, r.stdout + r.stderr

    schema = 'e2e_sessions_' + pysecrets.token_hex(6)
    keys = {'shared': new_sad_key(tmp_path / 'sad.key'), 'other': new_sad_key(tmp_path / 'other-sad.key')}
    urls = {**URLS, 'C': STRANGER_URL}
    env = {'SOFTHSM2_CONF': str(hsm_dir / 'softhsm2.conf')}

    def start(name: str) -> GatewayHandle:
        url = urls[name]
        cfg = gateway_yaml(int(url.rsplit(':', 1)[1]), pg_base_url(), schema=schema, upstreams=upstream,
                           sad_key=keys['other' if name == 'C' else 'shared'])
        return start_gateway(tmp_path / f'instance-{name}', cfg, tenants, env, url=url)

    # One after another: SoftHSM2 (2.6.1, file store) races when processes open and log in to
    # one token at the same moment (C_Login or C_GetTokenInfo -> CKR_GENERAL_ERROR, or the token
    # is not found; pkcs11-tool alone shows it), and a gateway that cannot open its token exits 2.
    # The pair fixture above covers instances installing the schema at once.
    gateways: dict[str, GatewayHandle] = {}
    try:
        for name in urls:
            try:
                gateways[name] = start(name)
            except Exception as e:  # noqa: BLE001 - the ones started are stopped, then we fail
                pytest.fail(f'instance {name}: {e}', pytrace=False)
        yield Pair(gateways)
    finally:
        for g in gateways.values():
            g.stop()
        psql(f'DROP SCHEMA IF EXISTS {schema} CASCADE')


def works(pair: Pair, at: str, token: str) -> bool:
    r = pair.post(at, 'credentials/list', {}, token)
    if r.status_code == 200:
        return True
    pair.expect(r, 401, f'credentials/list at {at} with a dead token')
    return False


# --- tests ---------------------------------------------------------------------------------
@needs_pg
def test_token_from_a_works_at_b_and_revocation_at_b_is_seen_at_a(pair):
    token = pair.login('A')['access_token']
    other = pair.login('A')['access_token']
    ids = pair.expect(pair.post('B', 'credentials/list', {}, token), 200, "A's token at B")['credentialIDs']
    assert sorted(ids) == ['ec', 'ec-b'], f'{ids}\n{pair.logs()}'
    assert works(pair, 'A', token)

    pair.expect(pair.post('B', 'auth/revoke', {'token': token}, token), 204, 'revoke at B')
    pair.expect(pair.post('A', 'credentials/list', {}, token), 401, 'revoked token at A, at once')
    pair.expect(pair.post('B', 'credentials/list', {}, token), 401, 'revoked token at B')
    # only that token: another login of the same client still works at both
    assert works(pair, 'A', other) and works(pair, 'B', other), pair.logs()


@needs_pg
def test_sad_budget_is_shared_by_both_instances(pair):
    token = pair.login('A')['access_token']
    sad = pair.authorize('A', token, 'ec', 3)
    body = pair.expect(pair.sign('A', token, 'ec', sad, [digest('1')]), 200, '1st of 3 at A')
    assert len(body['signatures']) == 1
    body = pair.expect(pair.sign('B', token, 'ec', sad, [digest('2'), digest('3')]), 200, '2nd+3rd of 3 at B')
    assert len(body['signatures']) == 2
    for at in ('A', 'B'):
        pair.expect(pair.sign(at, token, 'ec', sad, [digest('4')]), 400, f'4th of 3 at {at}',
                    'invalid_request', ('used up', 'too high'))

    # Ten single-hash calls on a five-signature SAD, at once, half through each instance.
    sad = pair.authorize('B', token, 'ec', 5)
    barrier = threading.Barrier(10)

    def one(i: int) -> tuple[str, requests.Response]:
        at = 'AB'[i % 2]
        with requests.Session() as s:
            s.post(f'{pair.g[at].url}/health', timeout=5)  # connect before the race starts
            barrier.wait(timeout=15)
            return at, pair.sign(at, token, 'ec', sad, [digest(f'race-{i}')], session=s)

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    summary = [(at, r.status_code, r.text[:200]) for at, r in results]
    ok = [r for _, r in results if r.status_code == 200]
    refused = [r for _, r in results if r.status_code == 400]
    assert len(ok) == 5 and len(refused) == 5, f'{summary}\n{pair.logs()}'
    for r in refused:
        pair.expect(r, 400, 'a call beyond the budget', 'invalid_request', ('used up', 'too high'))
    assert all(len(r.json()['signatures']) == 1 for r in ok), f'{summary}\n{pair.logs()}'


@needs_pg
def test_scal2_hashes_are_spent_once_across_instances(pair, peers):
    assert peers['vendor-b'].scal == 2
    token = pair.login('A')['access_token']
    h1, h2 = digest('scal2-1'), digest('scal2-2')
    sad = pair.authorize('A', token, 'ec-b', 2, [h1, h2])
    pair.expect(pair.sign('B', token, 'ec-b', sad, [h1]), 200, 'h1 at B')
    pair.expect(pair.sign('A', token, 'ec-b', sad, [h1]), 400, 'h1 again at A', 'invalid_request',
                ('not authorized', 'used up'))
    pair.expect(pair.sign('A', token, 'ec-b', sad, [h2]), 200, 'h2 at A')
    pair.expect(pair.sign('B', token, 'ec-b', sad, [h2]), 400, 'h2 again at B', 'invalid_request',
                ('not authorized', 'used up', 'too high'))


@needs_pg
def test_refresh_token_rotates_across_instances(pair):
    first = pair.login('A', remember=True)
    r1 = first['refresh_token']

    second = pair.expect(pair.post('B', 'auth/login', {'refresh_token': r1}), 200, 'refresh at B')
    r2 = second.get('refresh_token')
    assert r2 and r2 != r1, f'refresh at B did not rotate: {second}\n{pair.logs()}'
    assert second['access_token'] != first['access_token']

    r = pair.post('A', 'auth/login', {'refresh_token': r1})
    body = pair.expect(r, 400, 'the spent refresh token at A')
    assert body.get('error') in ('authentication_error', 'invalid_grant', 'invalid_request'), \
        f'{r.text}\n{pair.logs()}'
    assert works(pair, 'A', second['access_token']), pair.logs()

    # Two redemptions of one refresh token at once, one through each instance: one winner.
    barrier = threading.Barrier(2)

    def redeem(at: str) -> requests.Response:
        with requests.Session() as s:
            s.post(f'{pair.g[at].url}/health', timeout=5)
            barrier.wait(timeout=15)
            return pair.post(at, 'auth/login', {'refresh_token': r2}, session=s)

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip('AB', pool.map(redeem, 'AB')))
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 400], \
        f'{[(at, r.status_code, r.text[:200]) for at, r in results.items()]}\n{pair.logs()}'
    winner = next(at for at, r in results.items() if r.status_code == 200)
    fresh = results[winner].json()['access_token']
    assert works(pair, 'B' if winner == 'A' else 'A', fresh), pair.logs()


@needs_pg
@needs_softhsm
def test_hsm_sad_authorized_on_one_instance_signs_on_the_other(hsm_pair):
    pair = hsm_pair
    token = pair.login('A')['access_token']
    rsa_key = pair.certificate('B', token, 'hsm-rsa').public_key()
    ec_key = pair.certificate('B', token, 'hsm-ec').public_key()

    # (1) RSA, implicit, SCAL 1: two signatures, one at A and one at B; a third is refused.
    sad = pair.authorize('A', token, 'hsm-rsa', 2)
    for i, at in enumerate('AB'):
        h = digest(f'hsm-rsa-{i}')
        body = pair.expect(pair.sign(at, token, 'hsm-rsa', sad, [h], algo=RSA_SHA256), 200, f'RSA {i + 1} of 2 at {at}')
        assert len(body['signatures']) == 1, body
        rsa_key.verify(base64.b64decode(body['signatures'][0]), h, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    pair.expect(pair.sign('A', token, 'hsm-rsa', sad, [digest('hsm-rsa-3')], algo=RSA_SHA256), 400,
                'RSA 3rd of 2 at A', 'invalid_request', ('used up',))

    # (2) EC, explicit with a PIN, SCAL 2: authorized at A for h1, signed at B; h1 again at A is refused.
    h1 = digest('hsm-ec-1')
    sad = pair.authorize('A', token, 'hsm-ec', 1, [h1], PIN=HSM_PIN)
    body = pair.expect(pair.sign('B', token, 'hsm-ec', sad, [h1]), 200, 'EC h1 at B')
    assert len(body['signatures']) == 1, body
    ec_key.verify(base64.b64decode(body['signatures'][0]), h1, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    pair.expect(pair.sign('A', token, 'hsm-ec', sad, [h1]), 400, 'EC h1 again at A', 'invalid_request',
                ('used up', 'not authorized'))

    # (3) C shares the store and the token but not the SAD key: its SADs mean nothing at A or B
    # (the token it is used with is good everywhere), and theirs nothing at C.
    sad = pair.authorize('C', token, 'hsm-rsa', 1)
    for at in 'AB':
        pair.expect(pair.sign(at, token, 'hsm-rsa', sad, [digest(f'stranger-{at}')], algo=RSA_SHA256), 400,
                    f"C's SAD at {at}", 'invalid_request', ('Invalid parameter SAD',))
    pair.expect(pair.sign('C', token, 'hsm-rsa', sad, [digest('stranger-C')], algo=RSA_SHA256), 200,
                "C's SAD at C, still unspent")
    sad = pair.authorize('B', token, 'hsm-rsa', 1)
    pair.expect(pair.sign('C', token, 'hsm-rsa', sad, [digest('b-at-c')], algo=RSA_SHA256), 400, "B's SAD at C",
                'invalid_request', ('Invalid parameter SAD',))


def _config_dir(tmp_path: Path, text: str, secret_hash: str) -> Path:
    (tmp_path / 'tenants').mkdir(parents=True, exist_ok=True)
    (tmp_path / 'policies').mkdir(parents=True, exist_ok=True)
    (tmp_path / 'tenants' / 'shared.yaml').write_text(tenant_yaml(secret_hash))
    (tmp_path / 'gateway.yaml').write_text(text)
    return tmp_path / 'gateway.yaml'


def check(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([cscgate_bin(), 'check', '--config', str(cfg)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_check_refuses_shared_sessions_without_a_sad_key(tmp_path, secret_hash):
    url = 'postgres://cscgate@127.0.0.1:55432/cscgate_test?sslmode=disable'
    cfg = _config_dir(tmp_path, gateway_yaml(DOWN_PORT, url, sad_key=None), secret_hash)
    r = check(cfg)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert 'sessions.url' in out and 'sad.keyFile' in out, out

    # the same file with a SAD key passes: the refusal was about the key
    (tmp_path / 'sad.key').write_text(b64(pysecrets.token_bytes(32)) + '\n')
    cfg.write_text(gateway_yaml(DOWN_PORT, url, sad_key=tmp_path / 'sad.key'))
    r = check(cfg)
    assert r.returncode == 0, r.stdout + r.stderr


def test_serve_exits_2_when_the_session_store_is_unreachable(tmp_path, secret_hash):
    # A bound socket that never listens: connecting to it is refused.
    with socket.socket() as dead:
        dead.bind(('127.0.0.1', 0))
        url = f'postgres://cscgate@127.0.0.1:{dead.getsockname()[1]}/cscgate_test?sslmode=disable'
        (tmp_path / 'sad.key').write_text(b64(pysecrets.token_bytes(32)) + '\n')
        cfg = _config_dir(tmp_path, gateway_yaml(DOWN_PORT, url, sad_key=tmp_path / 'sad.key'), secret_hash)
        r = check(cfg)  # exit 2 is also what an invalid file gives: make sure this one is valid
        assert r.returncode == 0, r.stdout + r.stderr
        log_path = tmp_path / 'gateway.log'
        start = time.monotonic()
        with open(log_path, 'wb') as log:
            proc = subprocess.Popen([cscgate_bin(), 'serve', '--config', str(cfg)], cwd=tmp_path,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
    took = time.monotonic() - start
    tail = '\n'.join(log_path.read_text(errors='replace').splitlines()[-40:])
    assert rc == 2, f'serve with an unreachable session store: exit {rc} after {took:.1f}s\n{tail}'
    assert 'session store' in tail, tail
    assert took < 20, f'took {took:.1f}s to give up\n{tail}'
