"""Session set-up for the gateway e2e tests (test_gateway_*.py).

One session fixture, `gw`, builds and starts everything, all on 127.0.0.1:

* the main gateway (free port) with four upstreams:
    vendor-a, vendor-b  the two certomancer-csc-dummy peers (CSC v1, SCAL 1 / SCAL 2);
    flaky               a FaultProxy (fault_proxy.py) in front of vendor-a, timeout 1 s;
    dead                a loopback port that is bound but never listens (connection refused);
  limits.maxBodyBytes 4096, a SAD key in a file, and three tenants:
    alpha  clients alpha-app and alpha-batch (the second one only shows that a SAD is bound
           to the client, not just the tenant); alpha-rsa, alpha-ec (vendor-a), alpha-rsa-b,
           alpha-ec-b (vendor-b); timestamps at vendor-a with clientData vendor-a/tsa;
    beta   client beta-app:  beta-rsa (vendor-b/rsa-signer), beta-ec (vendor-a/ec-signer);
    gamma  client gamma-app: gamma-flaky-ec (flaky), gamma-dead-ec (dead), for the fault tests
           only, so alpha's and beta's lists stay exactly as specified;
* a short-lived second gateway ("short") with another SAD key, sad.maxLifetime 10 and
  tokens.accessTokenLifetime 30, tenants alpha and beta. As soon as it is up, the fixture takes
  an access token and a SAD from it, so the expiry tests (test_gateway_x_expiry.py, which
  runs late) wait only for whatever part of the 30 s the rest of the suite has not used.

Everything secret the suite handles (client secrets, access and refresh tokens, gateway SADs,
and the upstream SADs behind them) is recorded in `gw.ledger`; test_gateway_zz_secrets.py
greps the gateways' logs for all of it at the end.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets as pysecrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes as chashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from fault_proxy import FaultProxy
from gateway_fixture import GatewayHandle, hash_secret, start_gateway

# --- OIDs ----------------------------------------------------------------------------------
SHA256 = '2.16.840.1.101.3.4.2.1'
SHA384 = '2.16.840.1.101.3.4.2.2'
SHA1 = '1.3.14.3.2.26'
RSA_ENC = '1.2.840.113549.1.1.1'
RSA_PSS = '1.2.840.113549.1.1.10'
SHA256_RSA = '1.2.840.113549.1.1.11'
ECDSA_SHA256 = '1.2.840.10045.4.3.2'
ECDSA_SHA384 = '1.2.840.10045.4.3.3'
# DER RSASSA-PSS-params: SHA-256, MGF1-SHA-256, salt 32 (CSC-API.md §6)
PSS_PARAMS_SHA256_32 = ('MDSgDzANBglghkgBZQMEAgEFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgEFAKID'
                        'AgEg')

# --- the test tenants ----------------------------------------------------------------------
SECRETS = {
    'alpha-app': 'alpha-app-secret-' + pysecrets.token_hex(12),
    'alpha-batch': 'alpha-batch-secret-' + pysecrets.token_hex(12),
    'beta-app': 'beta-app-secret-' + pysecrets.token_hex(12),
    'gamma-app': 'gamma-app-secret-' + pysecrets.token_hex(12),
}

# gateway credential id -> (gateway upstream, upstream credential id)
ROUTES = {
    'alpha-rsa': ('vendor-a', 'vendor-a/rsa-signer'),
    'alpha-ec': ('vendor-a', 'vendor-a/ec-signer'),
    'alpha-rsa-b': ('vendor-b', 'vendor-b/rsa-signer'),
    'alpha-ec-b': ('vendor-b', 'vendor-b/ec-signer'),
    'beta-rsa': ('vendor-b', 'vendor-b/rsa-signer'),
    'beta-ec': ('vendor-a', 'vendor-a/ec-signer'),
    'gamma-flaky-ec': ('flaky', 'vendor-a/ec-signer'),
    'gamma-dead-ec': ('dead', 'vendor-a/ec-signer'),
}
TENANT_CREDENTIALS = {
    'alpha': ['alpha-rsa', 'alpha-ec', 'alpha-rsa-b', 'alpha-ec-b'],
    'beta': ['beta-rsa', 'beta-ec'],
    'gamma': ['gamma-flaky-ec', 'gamma-dead-ec'],
}
TENANT_CLIENTS = {'alpha': ['alpha-app', 'alpha-batch'], 'beta': ['beta-app'],
                  'gamma': ['gamma-app']}

SHORT_SAD_LIFETIME = 10
SHORT_TOKEN_LIFETIME = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tenant_yaml(tenant: str, secret_hashes: dict[str, str]) -> str:
    lines = [f'tenant: {tenant}', f'displayName: Tenant {tenant}', 'clients:']
    for client in TENANT_CLIENTS[tenant]:
        lines += [f'  - id: {client}', f'    name: {client} e2e',
                  f'    secretHash: "{secret_hashes[client]}"', '    scopes: [service]']
    lines.append('credentials:')
    for cid in TENANT_CREDENTIALS[tenant]:
        up, upid = ROUTES[cid]
        lines += [f'  - id: {cid}', f'    upstream: {up}', f'    upstreamCredentialID: {upid}',
                  f'    description: {cid} via {up}']
    if tenant == 'alpha':
        lines += ['timestamp:', '  upstream: vendor-a', '  clientData: vendor-a/tsa']
    return '\n'.join(lines) + '\n'


def gateway_yaml(port: int, upstreams: list[dict], *, sad_lifetime: int = 600,
                 token_lifetime: int = 3600, max_body: int | None = None) -> str:
    out = ['listen:', '  host: 127.0.0.1', f'  port: {port}',
           f'publicURL: http://127.0.0.1:{port}', 'tenants: tenants', 'policies: policies',
           'sad:', '  keyFile: sad.key', f'  maxLifetime: {sad_lifetime}',
           'tokens:', f'  accessTokenLifetime: {token_lifetime}', '  refreshTokenLifetime: 3600']
    if max_body:
        out += ['limits:', f'  maxBodyBytes: {max_body}']
    out.append('upstreams:')
    for u in upstreams:
        out += [f'  - name: {u["name"]}', '    kind: csc', f'    baseURL: {u["baseURL"]}',
                '    version: v1', f'    timeout: {u.get("timeout", 10)}',
                f'    connectTimeout: {u.get("connectTimeout", 2)}']
    return '\n'.join(out) + '\n'


# --- recording everything secret -----------------------------------------------------------
@dataclass
class SecretLedger:
    client_secrets: set = field(default_factory=set)
    access_tokens: set = field(default_factory=set)
    refresh_tokens: set = field(default_factory=set)
    gateway_sads: set = field(default_factory=set)
    upstream_sads: set = field(default_factory=set)
    # (gateway credential id, numSignatures, [b64 hashes] | None) of every granted authorize
    authorizations: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note_response(self, path: str, request_json, response: requests.Response) -> None:
        if 'json' not in response.headers.get('Content-Type', ''):
            return
        try:
            obj = response.json()
        except ValueError:
            return
        if not isinstance(obj, dict):
            return
        with self.lock:
            if isinstance(obj.get('access_token'), str):
                self.access_tokens.add(obj['access_token'])
            if isinstance(obj.get('refresh_token'), str):
                self.refresh_tokens.add(obj['refresh_token'])
            if isinstance(obj.get('SAD'), str):
                self.gateway_sads.add(obj['SAD'])
                if path.endswith('credentials/authorize') and isinstance(request_json, dict):
                    h = request_json.get('hash', request_json.get('hashes'))
                    self.authorizations.append((request_json.get('credentialID'),
                                                request_json.get('numSignatures'), h))

    def note_pyhanko(self, token: str, exchanges) -> None:
        with self.lock:
            self.access_tokens.add(token)
            for req, resp in exchanges:
                self.gateway_sads.add(resp['SAD'])
                self.authorizations.append((req['credentialID'], req['numSignatures'],
                                            req.get('hash')))


class Api:
    """requests against one gateway; JSON answers are scanned for tokens and SADs."""

    def __init__(self, base_url: str, ledger: SecretLedger):
        self.base = base_url.rstrip('/')
        self.ledger = ledger
        self.s = requests.Session()

    def url(self, path: str) -> str:
        if path.startswith('/'):
            return self.base + path
        if path.startswith('oauth2/'):
            return f'{self.base}/{path}'
        return f'{self.base}/csc/{path}'  # 'v1/credentials/list'

    def post(self, path: str, body=None, token: str | None = None, *, headers=None,
             data=None, auth=None, timeout: float = 20.0) -> requests.Response:
        h = dict(headers or {})
        if token is not None:
            h['Authorization'] = f'Bearer {token}'
        if data is None:
            r = self.s.post(self.url(path), json={} if body is None else body, headers=h,
                            auth=auth, timeout=timeout)
        else:
            r = self.s.post(self.url(path), data=data, headers=h, auth=auth, timeout=timeout)
        self.ledger.note_response(path, body, r)
        return r

    def login(self, client_id: str, secret: str | None = None, remember: bool = False) -> dict:
        secret = SECRETS[client_id] if secret is None else secret
        body = {'rememberMe': True} if remember else {}
        r = self.post('v1/auth/login', body, auth=(client_id, secret))
        assert r.status_code == 200, r.text
        return r.json()

    def token(self, client_id: str) -> str:
        return self.login(client_id)['access_token']

    # small CSC helpers -----------------------------------------------------------------
    def authorize(self, token, cred, num=1, hashes=None, *, v='v1', hash_algo=None,
                  expect=200) -> requests.Response:
        body = {'credentialID': cred, 'numSignatures': num}
        if hashes is not None:
            body['hash' if v == 'v1' else 'hashes'] = [b64(h) for h in hashes]
            if v == 'v2':
                body['hashAlgorithmOID'] = hash_algo or SHA256
        r = self.post(f'{v}/credentials/authorize', body, token)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r

    def sad(self, token, cred, num=1, hashes=None, **kw) -> str:
        return self.authorize(token, cred, num, hashes, **kw).json()['SAD']

    def sign(self, token, cred, sad, hashes, sign_algo=ECDSA_SHA256, *, v='v1',
             hash_algo=None, params=None) -> requests.Response:
        body = {'credentialID': cred, 'SAD': sad,
                ('hash' if v == 'v1' else 'hashes'): [b64(h) for h in hashes],
                'signAlgo': sign_algo}
        if hash_algo:
            body['hashAlgo' if v == 'v1' else 'hashAlgorithmOID'] = hash_algo
        if params:
            body['signAlgoParams'] = params
        return self.post(f'{v}/signatures/signHash', body, token)

    def info(self, token, cred, *, v='v1', certificates='chain') -> requests.Response:
        return self.post(f'{v}/credentials/info',
                         {'credentialID': cred, 'certificates': certificates}, token)


# --- small helpers -------------------------------------------------------------------------
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def digest(label: str, algo: str = 'sha256') -> bytes:
    return hashlib.new(algo, f'cscgate e2e {label} {time.monotonic_ns()}'.encode()).digest()


def assert_csc_error(r: requests.Response, status: int, error: str | None = None,
                     contains: str | None = None) -> dict:
    """The CSC error contract: the status, JSON content type, {error, error_description}."""
    assert r.status_code == status, f'expected {status}, got {r.status_code}: {r.text[:500]}'
    ctype = r.headers.get('Content-Type', '')
    assert ctype.startswith('application/json'), f'error content-type {ctype!r}: {r.text[:300]}'
    body = r.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get('error'), str) and body['error'], body
    assert isinstance(body.get('error_description'), str) and body['error_description'], body
    if error is not None:
        assert body['error'] == error, body
    if contains is not None:
        assert contains.lower() in body['error_description'].lower(), body
    return body


def load_cert(b64der: str) -> cx509.Certificate:
    return cx509.load_der_x509_certificate(base64.b64decode(b64der))


def verify_signature(cert: cx509.Certificate, sig_b64: str, digest_bytes: bytes, sign_algo: str,
                     hash_algo: str | None = None) -> None:
    """Raises InvalidSignature unless `sig_b64` signs the pre-computed `digest_bytes`."""
    sig = base64.b64decode(sig_b64)
    pub = cert.public_key()
    hname = {SHA256: chashes.SHA256(), SHA384: chashes.SHA384()}
    if sign_algo in (ECDSA_SHA256, ECDSA_SHA384):
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        assert sig[0] == 0x30, 'ECDSA signature is not DER'
        h = chashes.SHA256() if sign_algo == ECDSA_SHA256 else chashes.SHA384()
        pub.verify(sig, digest_bytes, ec.ECDSA(utils.Prehashed(h)))
    elif sign_algo == SHA256_RSA:
        assert isinstance(pub, rsa.RSAPublicKey)
        pub.verify(sig, digest_bytes, padding.PKCS1v15(), utils.Prehashed(chashes.SHA256()))
    elif sign_algo == RSA_ENC:
        assert isinstance(pub, rsa.RSAPublicKey)
        pub.verify(sig, digest_bytes, padding.PKCS1v15(), utils.Prehashed(hname[hash_algo]))
    elif sign_algo == RSA_PSS:  # the SHA-256 / salt 32 params above
        assert isinstance(pub, rsa.RSAPublicKey)
        pub.verify(sig, digest_bytes,
                   padding.PSS(mgf=padding.MGF1(chashes.SHA256()), salt_length=32),
                   utils.Prehashed(chashes.SHA256()))
    else:
        raise AssertionError(f'no verifier for {sign_algo}')


def signature_ok(*args, **kw) -> bool:
    try:
        verify_signature(*args, **kw)
        return True
    except InvalidSignature:
        return False


# --- the environment -----------------------------------------------------------------------
@dataclass
class ShortLived:
    """State taken from the short-lived gateway the moment it came up."""
    token: str
    token_issued: float  # time.monotonic() before the login request was sent
    sad: str  # alpha-ec, numSignatures 2, one already spent
    sad_issued: float
    sad_expires_in: int


@dataclass
class GatewayEnv:
    peers: dict
    main: GatewayHandle
    short: GatewayHandle
    proxy: FaultProxy
    dead_port: int
    api: Api  # main gateway
    short_api: Api
    ledger: SecretLedger
    tokens: dict  # client id -> an access token of the main gateway, for read-mostly tests
    early: ShortLived
    workdir: Path

    @property
    def url(self) -> str:
        return self.main.url

    def trust_root(self, cred: str) -> Path:
        up, _ = ROUTES[cred]
        return self.peers['vendor-a' if up in ('vendor-a', 'flaky', 'dead') else up].root_pem


def _start_env(peers, tmp: Path):
    ledger = SecretLedger()
    ledger.client_secrets.update(SECRETS.values())
    with ThreadPoolExecutor(4) as pool:
        hashes = dict(zip(SECRETS, pool.map(hash_secret, SECRETS.values())))

    proxy = FaultProxy(peers['vendor-a'].base_url.rsplit('/csc/', 1)[0]).start()
    # A bound socket that never listens: connecting to it is refused, and nobody can take the port.
    dead = socket.socket()
    dead.bind(('127.0.0.1', 0))
    dead_port = dead.getsockname()[1]

    a_url = peers['vendor-a'].base_url
    b_url = peers['vendor-b'].base_url
    upstreams = [
        {'name': 'vendor-a', 'baseURL': a_url},
        {'name': 'vendor-b', 'baseURL': b_url},
        {'name': 'flaky', 'baseURL': proxy.url, 'timeout': 1, 'connectTimeout': 1},
        {'name': 'dead', 'baseURL': f'http://127.0.0.1:{dead_port}', 'timeout': 2,
         'connectTimeout': 1},
    ]
    main_port, short_port = free_port(), free_port()
    while short_port == main_port:
        short_port = free_port()

    main_dir, short_dir = tmp / 'main', tmp / 'short'
    for d in (main_dir, short_dir):
        d.mkdir(parents=True)
        (d / 'sad.key').write_text(b64(os.urandom(32)) + '\n')
        (d / 'sad.key').chmod(0o600)

    env = {'CSCGATE_LOG_LEVEL': os.environ.get('CSCGATE_E2E_LOG_LEVEL', 'debug')}
    main_cfg = gateway_yaml(main_port, upstreams, max_body=4096)
    short_cfg = gateway_yaml(short_port, upstreams[:2], sad_lifetime=SHORT_SAD_LIFETIME,
                             token_lifetime=SHORT_TOKEN_LIFETIME)
    main_tenants = {t: tenant_yaml(t, hashes) for t in ('alpha', 'beta', 'gamma')}
    short_tenants = {t: tenant_yaml(t, hashes) for t in ('alpha', 'beta')}

    with ThreadPoolExecutor(2) as pool:
        f_short = pool.submit(start_gateway, short_dir, short_cfg, short_tenants, env,
                              url=f'http://127.0.0.1:{short_port}')
        f_main = pool.submit(start_gateway, main_dir, main_cfg, main_tenants, env,
                             url=f'http://127.0.0.1:{main_port}')
        short = f_short.result()
        try:
            main = f_main.result()
        except BaseException:
            short.stop()
            raise

    try:
        short_api = Api(short.url, ledger)
        # Start the short-lived clocks now, so the expiry tests late in the suite wait little.
        t_tok = time.monotonic()
        short_token = short_api.token('alpha-app')
        h0 = digest('short-early-0')
        t_sad = time.monotonic()
        r = short_api.authorize(short_token, 'alpha-ec', 2)
        short_sad, short_exp = r.json()['SAD'], r.json().get('expiresIn')
        r = short_api.sign(short_token, 'alpha-ec', short_sad, [h0])
        assert r.status_code == 200, f'short-lived gateway cannot sign: {r.text}'
        early = ShortLived(short_token, t_tok, short_sad, t_sad, short_exp)

        api = Api(main.url, ledger)
        with ThreadPoolExecutor(4) as pool:
            tokens = dict(zip(SECRETS, pool.map(api.token, SECRETS)))
    except BaseException:
        main.stop()
        short.stop()
        proxy.stop()
        dead.close()
        raise
    return GatewayEnv(peers=peers, main=main, short=short, proxy=proxy, dead_port=dead_port,
                      api=api, short_api=short_api, ledger=ledger, tokens=tokens, early=early,
                      workdir=tmp), dead


@pytest.fixture(scope='session')
def gw(peers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cscgate-e2e')
    env, dead_socket = _start_env(peers, tmp)
    try:
        yield env
    finally:
        env.main.stop()
        env.short.stop()
        env.proxy.stop()
        dead_socket.close()
