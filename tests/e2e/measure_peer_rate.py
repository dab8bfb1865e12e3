"""Bounded signHash rate probe against a running CSC v1 endpoint (default: the vendor-a dummy).

Concurrency 1, one keep-alive http.client connection (requests costs ~2 ms/call of client CPU
and would hide the server's speed), stops after --seconds (default 2, max 10) or
--max-requests (default 20000), whichever comes first. Loopback only.

usage: .venv/bin/python tests/e2e/measure_peer_rate.py [--base http://127.0.0.1:9101/csc/v1]
           [--credential vendor-a/ec-signer] [--sign-algo 1.2.840.10045.4.3.2] [--token T]
           [--with-authorize]   (one credentials/authorize per signHash, as pyHanko does)
"""

import argparse
import base64
import hashlib
import http.client
import json
import statistics
import sys
import time
from urllib.parse import urlparse


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--base', default='http://127.0.0.1:9101/csc/v1')
    p.add_argument('--credential', default='vendor-a/ec-signer')
    p.add_argument('--sign-algo', default='1.2.840.10045.4.3.2')
    p.add_argument('--token', default=None)
    p.add_argument('--seconds', type=float, default=2.0)
    p.add_argument('--max-requests', type=int, default=20000)
    p.add_argument('--with-authorize', action='store_true')
    a = p.parse_args()
    u = urlparse(a.base)
    if u.hostname not in ('127.0.0.1', 'localhost', '::1') or u.scheme != 'http':
        sys.exit('refusing a non-loopback / non-http target')
    seconds = min(a.seconds, 10.0)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    headers = {'Content-Type': 'application/json'}
    if a.token:
        headers['Authorization'] = f'Bearer {a.token}'
    prefix = u.path.rstrip('/')

    def post(method, body):
        conn.request('POST', f'{prefix}/{method}', json.dumps(body), headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            sys.exit(f'{method}: HTTP {r.status}: {data[:300]!r}')
        return json.loads(data)

    digest = base64.b64encode(hashlib.sha256(b'rate probe').digest()).decode()

    def authorize():
        return post('credentials/authorize', {
            'credentialID': a.credential, 'numSignatures': 1, 'hash': [digest]})['SAD']

    body = {'credentialID': a.credential, 'SAD': authorize(), 'hash': [digest],
            'signAlgo': a.sign_algo, 'hashAlgo': '2.16.840.1.101.3.4.2.1'}
    lat = []
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while len(lat) < a.max_requests:
        t = time.perf_counter()
        if t >= deadline:
            break
        if a.with_authorize:
            body['SAD'] = authorize()
        post('signatures/signHash', body)
        lat.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    lat.sort()
    n = len(lat)
    print(f'{a.credential} {a.sign_algo}{" +authorize" if a.with_authorize else ""}: '
          f'{n} ops in {elapsed:.2f}s = {n / elapsed:.0f}/s; '
          f'p50 {statistics.median(lat) * 1e3:.2f} ms, p99 {lat[int(n * 0.99) - 1 if n > 1 else 0] * 1e3:.2f} ms')


if __name__ == '__main__':
    main()
