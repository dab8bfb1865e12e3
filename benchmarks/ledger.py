#!/usr/bin/env python3
"""The usage ledger alone, release build: durable events/s and report time, SQLite and PostgreSQL.

- record: N events through `record()` from many concurrent recorders (group commit); each
  call returns only once its event is durable (SQLite: flushed in the journal, then stored
  in the file in the background; PostgreSQL: committed with synchronous_commit on).
  Figure: events/s.
- report: 1,000,000 events of one tenant bulk-loaded over one month (chained and hashed as
  usual), then `cscgate report`'s query over that month, per grouping (best of 3).

Targets (issue 6): >= 20,000 durable events/s on SQLite; a one-month report over 1,000,000
events in < 2 s.

  make bench-ledger                       # both backends (starts scripts/postgres.sh)
  python3 benchmarks/ledger.py --no-postgres --events 50000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get('CSCGATE_BENCH_BIN') or REPO / '.build-release' / 'release' / 'cscgate')
RECORD_TARGET = 20_000
REPORT_TARGET = 2.0


def build():
    if not BIN.exists() or os.environ.get('CSCGATE_BENCH_REBUILD'):
        subprocess.run(['swift', 'build', '-c', 'release', '--scratch-path', '.build-release', '--product', 'cscgate'],
                       cwd=REPO, check=True)


def bench(args: list[str]) -> list[dict]:
    cmd = [str(BIN), 'ledger', 'bench', *args]
    print('$', ' '.join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
    figures = [json.loads(line) for line in r.stdout.splitlines() if line.startswith('{')]
    for f in figures:
        print('  ', json.dumps(f), flush=True)
    if r.returncode != 0:
        print(f'ledger bench failed ({r.returncode}):\n{r.stderr[-4000:]}', flush=True)
        figures.append({'backend': 'postgres' if '--postgres' in args else 'sqlite', 'figure': 'failed'})
    return figures


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--events', type=int, default=200_000, help='events recorded through record() per backend')
    p.add_argument('--concurrency', type=int, default=1024, help='concurrent recorders')
    p.add_argument('--tenants', type=int, default=8)
    p.add_argument('--report-events', type=int, default=1_000_000)
    p.add_argument('--client-request-ids', type=int, default=0,
                   help='percent of events whose request id the client chose (looked up as possible retries)')
    p.add_argument('--no-postgres', action='store_true')
    a = p.parse_args()
    build()
    work = REPO / '.run' / 'bench-ledger'
    work.mkdir(parents=True, exist_ok=True)
    common = ['--events', str(a.events), '--concurrency', str(a.concurrency), '--tenants', str(a.tenants),
              '--report-events', str(a.report_events), '--client-request-ids', str(a.client_request_ids), '--verify']
    figures = bench(['--sqlite', str(work / 'ledger.sqlite'), *common])
    pg_url = os.environ.get('CSCGATE_TEST_POSTGRES_URL')
    if pg_url and not a.no_postgres:
        figures += bench(['--postgres', pg_url, *common])
    elif not a.no_postgres:
        print('PostgreSQL skipped: CSCGATE_TEST_POSTGRES_URL is unset (make bench-ledger starts a server and sets it)')

    print()
    print(f'{"backend":<9} {"figure":<28} {"value":>14}  note')
    ok = True
    for f in figures:
        b = f['backend']
        if f['figure'] == 'record':
            v = f['events_per_s']
            note = (f"{f['events']} events, {f['concurrency']} recorders, {f['seconds']:.2f} s, "
                    f"{f.get('client_request_ids_percent', 0)} % client-chosen request ids")
            if b == 'sqlite':
                note += f"  (target >= {RECORD_TARGET:,}: {'met' if v >= RECORD_TARGET else 'NOT met'})"
                ok &= v >= RECORD_TARGET
            print(f'{b:<9} {"durable events/s":<28} {v:>14,.0f}  {note}')
        elif f['figure'] == 'failed':
            ok = False
            print(f'{b:<9} FAILED (see above)')
        elif f['figure'] == 'verify':
            print(f'{b:<9} {"chains after recording":<28} {"intact" if f["intact"] else "BROKEN":>14}  {f["events"]} events')
            ok &= f['intact']
        elif f['figure'] == 'bulk-load':
            print(f'{b:<9} {"bulk load (chained) ev/s":<28} {f["events_per_s"]:>14,.0f}  {f["events"]} events in {f["seconds"]:.1f} s')
        elif f['figure'] == 'report':
            v = f['seconds']
            met = v < REPORT_TARGET
            ok &= met
            print(f'{b:<9} {"report by " + f["group_by"] + " (s)":<28} {v:>14.3f}  '
                  f'{f["operations_counted"]:,} events, {f["lines"]} lines  (target < {REPORT_TARGET} s: '
                  f'{"met" if met else "NOT met"})')
        elif f['figure'] == 'report+invoice':
            v = f['seconds']
            met = v < REPORT_TARGET
            ok &= met
            print(f'{b:<9} {"report+invoice (s)":<28} {v:>14.3f}  '
                  f'by client, {f["billed"]:,} billed signatures priced  (target < {REPORT_TARGET} s: '
                  f'{"met" if met else "NOT met"})')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
