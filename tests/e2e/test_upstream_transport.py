"""The upstream HTTP transport: TLS to an HTTPS RSSP, the connection limit and its queue.

A second certomancer-csc-dummy (vendor-a's PKI) serves HTTPS with a server certificate from a
throw-away CA made here; a FaultProxy in front of the plain vendor-a dummy slows requests so
that the connection limit can be watched at the upstream."""
from __future__ import annotations

import base64
import datetime
import ipaddress
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fault_proxy import FaultProxy
from gateway_fixture import REPO, gateway_login, hash_secret, start_gateway
from gateway_suite import ECDSA_SHA256, assert_csc_error, b64, digest, free_port, load_cert, verify_signature

SECRET = 'transport-client-secret-0001'
CRED = 'vendor-a/ec-signer'


def _ca_and_server_cert(tmp):
    """A CA and a server certificate for 127.0.0.1 and localhost, as PEM files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'cscgate e2e upstream TLS CA')])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'localhost')]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName('localhost'),
                                                        x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {'ca': tmp / 'upstream-ca.pem', 'cert': tmp / 'upstream-cert.pem', 'key': tmp / 'upstream-key.pem'}
    paths['ca'].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths['cert'].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths['key'].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


@pytest.fixture(scope='module')
def transport(peers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('transport')
    tls = _ca_and_server_cert(tmp)
    tls_port = free_port()
    dummy_log = open(tmp / 'tls-dummy.log', 'wb')
    dummy = subprocess.Popen(
        [sys.executable, str(REPO / 'scripts' / 'csc_dummy_launch.py'),
         '--config', str(REPO / 'tests' / 'fixtures' / 'pki' / 'vendor-a.yml'), '--key-root', str(REPO),
         '--service-url-prefix', peers['vendor-a'].animator_url, '--host', '127.0.0.1', '--port', str(tls_port),
         '--scal', '1', '--tls-cert', str(tls['cert']), '--tls-key', str(tls['key'])],
        stdout=dummy_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proxy = FaultProxy(peers['vendor-a'].base_url.removesuffix('/csc/v1')).start()
    gw = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.post(f'https://127.0.0.1:{tls_port}/csc/v1/info', json={}, verify=str(tls['ca']), timeout=1)
                break
            except requests.RequestException:
                if dummy.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError('the HTTPS dummy did not start; see ' + str(tmp / 'tls-dummy.log'))
                time.sleep(0.2)
        port = free_port()
        url = f'http://127.0.0.1:{port}'
        config = f"""
listen: {{host: 127.0.0.1, port: {port}}}
sad: {{keyFile: sad.key}}
upstreams:
  - {{name: tls-ip, kind: csc, baseURL: "https://127.0.0.1:{tls_port}", caFile: "{tls['ca']}", timeout: 5}}
  - {{name: tls-name, kind: csc, baseURL: "https://localhost:{tls_port}", caFile: "{tls['ca']}", timeout: 5}}
  - {{name: tls-untrusted, kind: csc, baseURL: "https://127.0.0.1:{tls_port}", timeout: 5}}
  - {{name: narrow, kind: csc, baseURL: "{proxy.url}", maxConnections: 2, timeout: 5}}
  - {{name: single, kind: csc, baseURL: "{proxy.url}", maxConnections: 1, timeout: 1}}
"""
        (tmp / 'sad.key').write_text(base64.b64encode(bytes(range(32))).decode())
        credentials = '\n'.join(f'  - {{id: {u}, upstream: {u}, upstreamCredentialID: {CRED}}}'
                                for u in ('tls-ip', 'tls-name', 'tls-untrusted', 'narrow', 'single'))
        tenant = f"""
tenant: transport
clients:
  - {{id: transport-app, secretHash: "{hash_secret(SECRET)}", scopes: [service]}}
credentials:
{credentials}
"""
        gw = start_gateway(tmp, config, {'transport': tenant}, url=url)
        yield {'url': url, 'token': gateway_login(url, 'transport-app', SECRET), 'proxy': proxy, 'gw': gw}
    finally:
        if gw:
            gw.stop()
        proxy.stop()
        dummy.terminate()
        dummy.wait(10)


def _post(t, method, body):
    return requests.post(f"{t['url']}/csc/v1/{method}", json=body, headers={'Authorization': f"Bearer {t['token']}"},
                         timeout=20)


def _sign(t, credential):
    h = digest(f'transport {credential}')
    r = _post(t, 'credentials/authorize', {'credentialID': credential, 'numSignatures': 1})
    if r.status_code != 200:
        return r, h
    return _post(t, 'signatures/signHash', {'credentialID': credential, 'SAD': r.json()['SAD'], 'hash': [b64(h)],
                                            'signAlgo': ECDSA_SHA256}), h


@pytest.mark.parametrize('credential', ['tls-ip', 'tls-name'])
def test_signs_through_an_https_upstream_trusted_by_ca_file(transport, credential):
    info = _post(transport, 'credentials/info', {'credentialID': credential, 'certificates': 'single'})
    assert info.status_code == 200, info.text
    r, h = _sign(transport, credential)
    assert r.status_code == 200, r.text
    verify_signature(load_cert(info.json()['cert']['certificates'][0]), r.json()['signatures'][0], h, ECDSA_SHA256)


def test_untrusted_https_upstream_is_refused_without_leaking(transport):
    r = _post(transport, 'credentials/info', {'credentialID': 'tls-untrusted'})
    body = assert_csc_error(r, 503)
    assert 'tls-untrusted' in body['error_description'] and 'TLS' in body['error_description'], body
    assert 'BoringSSL' not in r.text and 'CERTIFICATE_VERIFY' not in r.text, r.text


def test_connection_limit_queues_requests_and_all_of_them_sign(transport):
    proxy = transport['proxy']
    assert _sign(transport, 'narrow')[0].status_code == 200  # warms the credential cache
    proxy.set_fault('delay', paths=['signatures/signHash'], delay=0.3)
    proxy.reset_active()
    try:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: _sign(transport, 'narrow')[0], range(6)))
    finally:
        proxy.clear()
    assert [r.status_code for r in results] == [200] * 6, [r.text for r in results]
    assert proxy.max_active <= 2, f'the upstream saw {proxy.max_active} requests at once with maxConnections: 2'
    assert proxy.max_active == 2, 'the two connections were never used together'


def test_a_request_queued_behind_the_limit_keeps_its_deadline(transport):
    proxy = transport['proxy']
    assert _sign(transport, 'single')[0].status_code == 200
    sads = [_post(transport, 'credentials/authorize', {'credentialID': 'single', 'numSignatures': 1}).json()['SAD']
            for _ in range(2)]
    proxy.set_fault('delay', paths=['signatures/signHash'], delay=3.0)
    try:
        def call(label, sad):
            started = time.monotonic()
            r = _post(transport, 'signatures/signHash', {'credentialID': 'single', 'SAD': sad,
                                                         'hash': [b64(digest(label))], 'signAlgo': ECDSA_SHA256})
            return r, time.monotonic() - started
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(call, 'first', sads[0])
            time.sleep(0.2)
            second = pool.submit(call, 'second', sads[1])
            results = [first.result(), second.result()]
    finally:
        proxy.clear()
    for r, took in results:
        body = assert_csc_error(r, 504)
        assert 'single' in body['error_description'], body
        assert took < 1.9, f'a 1 s upstream timeout answered after {took:.2f} s'
    # The connection that timed out was closed, not handed to the next caller mid-answer.
    assert _sign(transport, 'single')[0].status_code == 200


def _event_loop_threads(pid: int) -> set[str]:
    """Names of the gateway's NIO event-loop threads (`NIO-SGLTN-<group>-#<n>`, one per loop)."""
    from pathlib import Path
    names = {(t / 'comm').read_text().strip() for t in Path(f'/proc/{pid}/task').iterdir()}
    return {n for n in names if n.startswith('NIO-SGLTN-')}


@pytest.mark.parametrize('value,loops', [('1', 1), ('3', 3), ('lots', None)])
def test_event_loop_count_comes_from_the_environment(peers, tmp_path, value, loops):
    import os
    port = free_port()
    url = f'http://127.0.0.1:{port}'
    (tmp_path / 'sad.key').write_text(base64.b64encode(bytes(range(32))).decode())
    config = f"""
listen: {{host: 127.0.0.1, port: {port}}}
sad: {{keyFile: sad.key}}
ledger: {{enabled: false}}
upstreams:
  - {{name: vendor-a, kind: csc, baseURL: "{peers['vendor-a'].base_url}"}}
"""
    tenant = f"""
tenant: loops
clients:
  - {{id: loops-app, secretHash: "{hash_secret(SECRET)}", scopes: [service]}}
credentials:
  - {{id: ec, upstream: vendor-a, upstreamCredentialID: {CRED}}}
"""
    with start_gateway(tmp_path, config, {'loops': tenant}, url=url, env={'CSCGATE_EVENT_LOOPS': value}) as gw:
        token = gateway_login(url, 'loops-app', SECRET)
        # Traffic on several connections, so that every loop has served something.
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: requests.post(f'{url}/csc/v1/credentials/list', json={},
                                                          headers={'Authorization': f'Bearer {token}'}).status_code,
                                  range(8)))
        assert codes == [200] * 8
        threads = _event_loop_threads(gw.proc.pid)
        if loops is None:
            assert 'CSCGATE_EVENT_LOOPS must be a number' in gw.log_path.read_text()
            assert len(threads) == os.cpu_count(), threads
        else:
            assert len(threads) == loops, threads
