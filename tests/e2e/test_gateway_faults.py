"""Upstream faults become CSC errors that name the upstream — fast, without its internals.

`flaky` is a FaultProxy (fault_proxy.py) in front of vendor-a with a 1 s gateway timeout;
`dead` is a loopback port that refuses connections. Both serve tenant gamma only."""

import time

import pytest

from fault_proxy import TEXT_500_BODY
from gateway_suite import ECDSA_SHA256, assert_csc_error, digest, load_cert, verify_signature

CRED = 'gamma-flaky-ec'
SIGN = 'signatures/signHash'
AUTHORIZE = 'credentials/authorize'


@pytest.fixture
def proxy(gw):
    gw.proxy.clear()
    yield gw.proxy
    gw.proxy.clear()


@pytest.fixture(scope='module')
def gamma(gw):
    token = gw.tokens['gamma-app']
    gw.proxy.clear()
    r = gw.api.info(token, CRED)  # warms the gateway's credential cache through the proxy
    assert r.status_code == 200, r.text
    return token, load_cert(r.json()['cert']['certificates'][0])


def _sign_once(gw, token, cert):
    h = digest('flaky-ok')
    sad = gw.api.sad(token, CRED, 1)
    r = gw.api.sign(token, CRED, sad, [h])
    assert r.status_code == 200, r.text
    verify_signature(cert, r.json()['signatures'][0], h, ECDSA_SHA256)


def _timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


def test_flaky_works_when_healthy(gw, gamma, proxy):
    token, cert = gamma
    before = dict(proxy.hits)
    _sign_once(gw, token, cert)
    assert sum(proxy.hits.values()) > sum(before.values()), 'the flaky route bypassed the proxy'


def test_dead_upstream_is_503_and_fast(gw):
    token = gw.tokens['gamma-app']
    for call in (lambda: gw.api.info(token, 'gamma-dead-ec'),
                 lambda: gw.api.authorize(token, 'gamma-dead-ec', 1, expect=None)):
        r, took = _timed(call)
        body = assert_csc_error(r, 503)
        assert 'dead' in body['error_description'], body
        assert str(gw.dead_port) not in r.text  # no addresses or internals
        assert took < 2.0, f'refused connection took {took:.2f}s to report'


def test_upstream_timeout_is_504(gw, gamma, proxy):
    token, cert = gamma
    sad = gw.api.sad(token, CRED, 1)
    proxy.set_fault('delay', paths=[SIGN], delay=5.0)
    r, took = _timed(lambda: gw.api.sign(token, CRED, sad, [digest('slow')]))
    body = assert_csc_error(r, 504)
    assert 'flaky' in body['error_description'], body
    assert 0.8 <= took < 1.9, f'timeout of 1 s answered after {took:.2f}s'
    proxy.clear()
    _sign_once(gw, token, cert)


def test_upstream_timeout_on_authorize(gw, gamma, proxy):
    token, cert = gamma
    proxy.set_fault('delay', paths=[AUTHORIZE], delay=5.0)
    r, took = _timed(lambda: gw.api.authorize(token, CRED, 1, expect=None))
    body = assert_csc_error(r, 504)
    assert 'flaky' in body['error_description'] and 'SAD' not in r.json()
    assert took < 1.9, took
    proxy.clear()
    _sign_once(gw, token, cert)


@pytest.mark.parametrize('path', [SIGN, AUTHORIZE])
def test_upstream_plain_text_500_is_502(gw, gamma, proxy, path):
    token, cert = gamma
    sad = gw.api.sad(token, CRED, 1)
    proxy.set_fault('text500', paths=[path])
    r = (gw.api.sign(token, CRED, sad, [digest('t500')]) if path == SIGN
         else gw.api.authorize(token, CRED, 1, expect=None))
    body = assert_csc_error(r, 502)
    assert 'flaky' in body['error_description'], body
    for leaked in (TEXT_500_BODY.decode(), 'Server got itself in trouble', 'Internal Server Error'):
        assert leaked not in r.text, r.text
    assert proxy.faults_served.get('text500'), 'the fault was never hit'
    proxy.clear()
    _sign_once(gw, token, cert)


@pytest.mark.parametrize('path', [SIGN, AUTHORIZE])
def test_upstream_non_json_200_is_502(gw, gamma, proxy, path):
    token, cert = gamma
    sad = gw.api.sad(token, CRED, 1)
    proxy.set_fault('nonjson200', paths=[path])
    r = (gw.api.sign(token, CRED, sad, [digest('html')]) if path == SIGN
         else gw.api.authorize(token, CRED, 1, expect=None))
    body = assert_csc_error(r, 502)
    assert 'flaky' in body['error_description'], body
    assert '<html' not in r.text and 'moved' not in r.text
    proxy.clear()
    _sign_once(gw, token, cert)


def test_upstream_closes_connection(gw, gamma, proxy):
    token, cert = gamma
    sad = gw.api.sad(token, CRED, 1)
    proxy.set_fault('close', paths=[SIGN])
    r, took = _timed(lambda: gw.api.sign(token, CRED, sad, [digest('closed')]))
    assert r.status_code in (502, 503), r.text
    body = assert_csc_error(r, r.status_code)
    assert 'flaky' in body['error_description'], body
    assert took < 1.9, took
    proxy.clear()
    _sign_once(gw, token, cert)


def test_faults_do_not_leak_into_other_tenants(gw, proxy):
    """While flaky is down, alpha's credentials on vendor-a keep working."""
    proxy.set_fault('delay', delay=5.0)
    token = gw.tokens['alpha-app']
    h = digest('unaffected')
    sad = gw.api.sad(token, 'alpha-ec', 1)
    r, took = _timed(lambda: gw.api.sign(token, 'alpha-ec', sad, [h]))
    assert r.status_code == 200, r.text
    assert took < 1.0, took
