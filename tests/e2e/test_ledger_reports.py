"""Reports, invoices, resellers and the CloudEvents export against a real gateway.

A gateway with two resellers (r1 with sub-tenant a, r2 with sub-tenant c) signs through
vendor-a. Each tenant's client runs a generated mix of operations: authorizations, signHash
calls of 1-3 hashes (one retried with the same X-Request-ID, one refused before it succeeds under
the same X-Request-ID), signHash calls with a bad SAD
(denied) and credentials/info on an unknown credential (denied). The test counts what it sent
and what it received; then `cscgate report` (JSON, CSV, HTML), the admin API, the tenant
endpoint and `cscgate ledger export` must show exactly those numbers, priced by a's plan, and
a reseller must never see the other reseller's tenants.
"""
from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import random
import secrets as pysecrets
import subprocess
import xml.etree.ElementTree as ET
from decimal import ROUND_HALF_UP, Decimal

import requests

from gateway_fixture import cscgate_bin, hash_secret, start_gateway

URL = 'http://127.0.0.1:8323'
EC = '1.2.840.10045.4.3.2'
ADMIN = 'reports-admin-secret-' + pysecrets.token_hex(4)
TENANTS = {'r1': None, 'a': 'r1', 'r2': None, 'c': 'r2'}
PLAN_A = {'monthlyFee': Decimal('19.90'), 'included': 5, 'price': Decimal('0.10'), 'overage': Decimal('0.045')}


def run(*args, check=True):
    r = subprocess.run([cscgate_bin(), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_reports_invoices_resellers_and_export_match_what_was_sent(peers, tmp_path):
    secrets = {t: f'{t}-client-secret-' + pysecrets.token_hex(4) for t in TENANTS}
    (tmp_path / 'sad.key').write_text(base64.b64encode(pysecrets.token_bytes(32)).decode())
    config = f"""
listen: {{host: 127.0.0.1, port: 8323}}
sad: {{keyFile: sad.key}}
ledger: {{path: ledger.sqlite, checkpointKeyFile: ledger.key, checkpointInterval: 5}}
upstreams:
  - {{name: vendor-a, kind: csc, baseURL: "{peers['vendor-a'].base_url}", version: v1}}
admin:
  operators:
    - {{id: billing, secretHash: "{hash_secret(ADMIN)}"}}
"""
    tenants = {}
    for t, parent in TENANTS.items():
        text = f"""
tenant: {t}
clients:
  - {{id: {t}-app, secretHash: "{hash_secret(secrets[t])}", scopes: [service]}}
credentials:
  - {{id: ec, upstream: vendor-a, upstreamCredentialID: vendor-a/ec-signer}}
"""
        if parent:
            text += f'parent: {parent}\n'
        if t == 'a':
            text += (f"plan: {{currency: EUR, monthlyFee: {PLAN_A['monthlyFee']}, includedSignatures: {PLAN_A['included']}, "
                     f"pricePerSignature: {PLAN_A['price']}, overagePrice: {PLAN_A['overage']}}}\n")
        tenants[t] = text

    sent = {t: {'ok': 0, 'denied': 0, 'failed': 0, 'billed': 0} for t in TENANTS}
    tokens = {}
    rng = random.Random(6)
    with start_gateway(tmp_path, config, tenants, url=URL):
        for t in TENANTS:
            s = requests.Session()
            r = s.post(f'{URL}/csc/v1/auth/login', json={}, auth=(f'{t}-app', secrets[t]), timeout=10)
            tokens[t] = r.json()['access_token']
            s.headers['Authorization'] = f'Bearer {tokens[t]}'

            def call(path, body, rid=None, count=True):
                headers = {'X-Request-ID': rid} if rid else {}
                r = s.post(f'{URL}/csc/v1/{path}', json=body, headers=headers, timeout=20)
                if count:
                    outcome = 'ok' if r.status_code < 400 else ('denied' if r.status_code < 500 else 'failed')
                    sent[t][outcome] += 1
                    if outcome == 'ok' and path == 'signatures/signHash':
                        sent[t]['billed'] += len(r.json()['signatures'])
                return r

            for i in range(rng.randint(3, 6)):
                rid = f'{t}-{i}-{pysecrets.token_hex(3)}'
                hashes = [base64.b64encode(hashlib.sha256(f'{rid}{k}'.encode()).digest()).decode()
                          for k in range(rng.randint(1, 3))]
                auth = call('credentials/authorize', {'credentialID': 'ec', 'numSignatures': len(hashes)})
                assert auth.status_code == 200, auth.text
                sad = auth.json()['SAD']
                body = {'credentialID': 'ec', 'SAD': sad, 'hash': hashes, 'signAlgo': EC}
                if i == 1:
                    # Refused first, then done, under one request id: both recorded, the signing billed.
                    over = call('signatures/signHash', {**body, 'hash': hashes + [hashes[0]]}, rid)
                    assert over.status_code == 400, over.text
                first = call('signatures/signHash', body, rid)
                assert first.status_code == 200, first.text
                if i == 0:
                    # A retry: answered again from the ledger, neither recorded nor billed twice.
                    again = call('signatures/signHash', body, rid, count=False)
                    assert again.json()['signatures'] == first.json()['signatures']
            for i in range(rng.randint(1, 3)):
                r = call('signatures/signHash', {'credentialID': 'ec', 'SAD': 'not-a-sad', 'hash': ['AAAA'], 'signAlgo': EC})
                assert r.status_code == 400
            r = call('credentials/info', {'credentialID': 'no-such-credential'})
            assert r.status_code == 400

        today = dt.datetime.now(dt.timezone.utc).date()
        start, end = (today - dt.timedelta(days=1)).isoformat(), (today + dt.timedelta(days=2)).isoformat()
        month = today.strftime('%Y-%m')
        cfg = str(tmp_path / 'gateway.yaml')

        def expect_totals(total, t):
            got = [total['operations'], total['ok'], total['denied'], total['failed'], total['billed_signatures']]
            want = [sum(sent[t][k] for k in ('ok', 'denied', 'failed')), sent[t]['ok'], sent[t]['denied'], sent[t]['failed'],
                    sent[t]['billed']]
            assert got == want, (t, got, want)

        # CLI, JSON, a reseller with its sub-tenant and a's invoice.
        report = json.loads(run('report', '--config', cfg, '--tenant', 'r1', '--include-subtenants', '--from', start,
                                '--to', end, '--group-by', 'outcome', '--format', 'json').stdout)
        expect_totals(report['total'], 'r1')
        assert [s['tenant'] for s in report['subtenants']] == ['a']
        expect_totals(report['subtenants'][0]['total'], 'a')
        billed_a = sent['a']['billed']
        exact = PLAN_A['monthlyFee'] + min(billed_a, PLAN_A['included']) * PLAN_A['price'] \
            + max(0, billed_a - PLAN_A['included']) * PLAN_A['overage']
        invoice = report['subtenants'][0]['invoice']['months']
        if today.day != 1 and (today + dt.timedelta(days=1)).month == today.month:
            assert [m['month'] for m in invoice] == [month]
        this_month = next(m for m in invoice if m['month'] == month)
        assert this_month['billed_signatures'] == billed_a
        assert Decimal(this_month['total_exact']) == exact
        assert Decimal(this_month['total']) == exact.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)
        assert report['invoice'] is None  # r1 has no plan

        # CSV: the same numbers.
        text = run('report', '--config', cfg, '--tenant', 'a', '--from', start, '--to', end, '--group-by', 'outcome',
                   '--format', 'csv').stdout
        usage, invoices = text.split('\n\n')
        rows = list(csv.DictReader(io.StringIO(usage)))
        total = next(r for r in rows if r['outcome'] == 'total')
        expect_totals({k: int(v) for k, v in total.items() if k not in ('tenant', 'outcome')}, 'a')
        inv = list(csv.DictReader(io.StringIO(invoices)))
        assert Decimal(next(r for r in inv if r['month'] == month and r['item'] == 'total')['amount']) == \
            exact.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)

        # HTML: self-contained, parseable, intact ledger, the totals shown.
        html = run('report', '--config', cfg, '--tenant', 'a', '--from', start, '--to', end, '--format', 'html').stdout
        assert 'http://' not in html.lower() and 'https://' not in html.lower() and '<script' not in html.lower()
        ET.fromstring(html.replace('<!DOCTYPE html>', '', 1))
        n = sum(sent['a'][k] for k in ('ok', 'denied', 'failed'))
        assert f'Intact: {n} events' in html
        assert f'<td class="n">{sent["a"]["billed"]}</td>' in html

        # Bad input on the CLI: a clear message and a non-zero exit, no stack trace.
        bad = run('report', '--config', cfg, '--tenant', 'r1', '--from', 'soon', '--to', end, check=False)
        assert bad.returncode != 0 and '--from' in bad.stderr
        unknown = run('report', '--config', cfg, '--tenant', 'nobody', '--include-subtenants', '--from', start, '--to', end,
                      check=False)
        assert unknown.returncode != 0 and "Unknown tenant 'nobody'" in unknown.stderr

        # Admin API: the same totals; bad input is CSC JSON.
        admin = {'Authorization': f'Bearer {ADMIN}'}
        r = requests.get(f'{URL}/admin/v1/reports', params={'tenant': 'c', 'from': start, 'to': end}, headers=admin, timeout=30)
        assert r.status_code == 200, r.text
        expect_totals(r.json()['total'], 'c')
        r = requests.get(f'{URL}/admin/v1/usage', params={'from': 'tomorrow'}, headers=admin, timeout=10)
        assert r.status_code == 400 and set(r.json()) == {'error', 'error_description'}

        # Tenant endpoint: r1's client sees r1 and a, never r2 or c.
        bearer = {'Authorization': f'Bearer {tokens["r1"]}'}
        r = requests.get(f'{URL}/tenant/v1/usage', params={'include_subtenants': 'true', 'limit': 1000}, headers=bearer,
                         timeout=10)
        assert {e['tenant'] for e in r.json()['events']} == {'r1', 'a'}
        for target in ('c', 'r2'):
            r = requests.get(f'{URL}/tenant/v1/reports', params={'tenant': target, 'from': start, 'to': end}, headers=bearer,
                             timeout=10)
            assert r.status_code == 404 and r.json()['error_description'] == f"Unknown tenant '{target}'"

        # CloudEvents: stable across exports (CLI and API agree), billable signatures add up.
        first = run('ledger', 'export', '--config', cfg, '--format', 'cloudevents', '--from', start, '--to', end).stdout
        second = run('ledger', 'export', '--config', cfg, '--format', 'cloudevents', '--from', start, '--to', end).stdout
        assert first == second
        events = [json.loads(line) for line in first.splitlines()]
        assert len({e['id'] for e in events}) == len(events) == sum(sum(sent[t][k] for k in ('ok', 'denied', 'failed'))
                                                                    for t in TENANTS)
        for t in TENANTS:
            assert sum(e['data']['billable_signatures'] for e in events if e['subject'] == t) == sent[t]['billed']
        api = requests.get(f'{URL}/admin/v1/usage/export', params={'from': start, 'to': end}, headers=admin, timeout=30)
        assert api.text == first
        for secret in [ADMIN, *secrets.values(), *tokens.values()]:
            assert secret not in first and secret not in html

    verify = run('ledger', 'verify', '--config', cfg)
    assert 'ledger intact' in verify.stdout
