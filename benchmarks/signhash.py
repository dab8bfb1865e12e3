"""signHash throughput and latency: directly against certomancer-csc-dummy, and through cscgate.

One run measures both side by side, alternating, at concurrency 1 and 8, and prints medians
and the gateway/direct ratio. The gateway runs from a release build with its own temporary
configuration in front of the same dummy (vendor-a, EC P-256 credential, SCAL 1).

Every request is a real signature: through the gateway each body carries its own share of a
gateway SAD (numSignatures = multisign), so the gateway's budget checks run on every call.
With --ledger-cost a third side runs: the same gateway configuration with `ledger.enabled:
false`, on its own port, so the ledger's cost on the signHash path is printed too (latency at
each concurrency, and throughput where group commit hides the fsync). "paired" is the median of
the per-round ratios (each round runs every side back to back).

With --event-loops N the gateways run with CSCGATE_EVENT_LOOPS=N: on this 2-core machine the
gateway then leaves the other core to the dummy (a single-threaded Python process) instead of
competing with it for both.

Usage: .venv/bin/python benchmarks/signhash.py [--seconds 5] [--rounds 3] [--concurrency 1,8]
                                                [--ledger-cost] [--event-loops N]
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("CSCGATE_RELEASE_BIN", str(ROOT / ".build-release" / "release" / "cscgate"))
DUMMY_PORT = int(os.environ.get("CSC_A_PORT", "9101"))
GATEWAY_PORT = int(os.environ.get("BENCH_GATEWAY_PORT", "8288"))
CREDENTIAL = "vendor-a/ec-signer"
EC_OID = "1.2.840.10045.4.3.2"
SECRET = "bench-client-secret-000000"


def post(port, path, body, token=None, basic=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    conn.request("POST", path, json.dumps(body), headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"{path}: HTTP {r.status} {data[:200]!r}")
    return json.loads(data)


LEDGER_DIR = os.environ.get("BENCH_LEDGER_DIR")
# Where the ledger's journal goes (ledger.journal). Pointing it at tmpfs (/dev/shm) is NOT durable:
# it only measures what the ledger costs apart from the disk flush.
JOURNAL_DIR = os.environ.get("BENCH_JOURNAL_DIR")
# More ledger settings for the gateway with the ledger, as YAML flow entries (e.g. "commitDelay: 0").
LEDGER_OPTIONS = os.environ.get("BENCH_LEDGER_OPTIONS")


def start_gateway(workdir: Path, port: int = GATEWAY_PORT, ledger: bool = True,
                  event_loops: int | None = None) -> subprocess.Popen:
    workdir.mkdir(exist_ok=True)
    secret_hash = subprocess.run([BIN, "secret", "hash"], input=SECRET, capture_output=True, text=True,
                                 check=True).stdout.strip()
    (workdir / "tenants").mkdir()
    (workdir / "policies").mkdir()
    (workdir / "sad.key").write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    journal = f', journal: "{Path(JOURNAL_DIR) / workdir.name / "journal"}"' if JOURNAL_DIR else ""
    if LEDGER_OPTIONS and ledger:
        journal += ", " + LEDGER_OPTIONS
    (workdir / "gateway.yaml").write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
sad: {{keyFile: sad.key}}
ledger: {{path: "{(Path(LEDGER_DIR) if LEDGER_DIR else workdir) / 'ledger.sqlite'}", enabled: {str(ledger).lower()}{journal}}}
upstreams:
  - {{name: vendor-a, kind: csc, baseURL: "http://127.0.0.1:{DUMMY_PORT}", version: v1, maxConnections: 16}}
""")
    (workdir / "tenants" / "bench.yaml").write_text(f"""
tenant: bench
clients:
  - {{id: bench-app, secretHash: "{secret_hash}", scopes: [service]}}
credentials:
  - {{id: bench-ec, upstream: vendor-a, upstreamCredentialID: "{CREDENTIAL}"}}
""")
    env = dict(os.environ, **({"CSCGATE_EVENT_LOOPS": str(event_loops)} if event_loops else {}))
    return gateway_process.serve(BIN, workdir / "gateway.yaml", port, workdir / "gateway.log", env=env)


def digest() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def direct_bodies(count: int) -> list[str]:
    # The dummy neither expires nor counts SADs: one SAD serves the whole run.
    sad = post(DUMMY_PORT, "/csc/v1/credentials/authorize",
               {"credentialID": CREDENTIAL, "numSignatures": 1})["SAD"]
    return [json.dumps({"credentialID": CREDENTIAL, "SAD": sad, "hash": [digest()], "signAlgo": EC_OID})
            for _ in range(count)]


def gateway_bodies(count: int, token: str, per_sad: int, port: int = GATEWAY_PORT) -> list[str]:
    def one_sad(_):
        sad = post(port, "/csc/v1/credentials/authorize",
                   {"credentialID": "bench-ec", "numSignatures": per_sad}, token=token)["SAD"]
        return [json.dumps({"credentialID": "bench-ec", "SAD": sad, "hash": [digest()], "signAlgo": EC_OID})
                for _ in range(per_sad)]
    with ThreadPoolExecutor(8) as pool:
        groups = list(pool.map(one_sad, range((count + per_sad - 1) // per_sad)))
    # Interleave SADs so that each wrk thread (every n-th line) gets whole budgets.
    return [b for g in groups for b in g][:count]


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(port: int, bodies: list[str], token: str, conc: int, seconds: int, workdir: Path) -> dict:
    threads = 1 if conc == 1 else 2
    # Reorder so that thread t (lines where index % threads == t) gets contiguous SAD groups.
    path = workdir / f"bodies-{port}-{conc}.txt"
    per_thread = [bodies[i::threads] for i in range(threads)]
    lines = []
    for i in range(max(len(p) for p in per_thread)):
        for p in per_thread:
            if i < len(p):
                lines.append(p[i])
    path.write_text("\n".join(lines) + "\n")
    env = dict(os.environ, BENCH_BODIES=str(path), BENCH_THREADS=str(threads), BENCH_TOKEN=token,
               BENCH_PATH="/csc/v1/signatures/signHash")
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{seconds}s", "--latency",
                          "-s", str(ROOT / "benchmarks" / "signhash.lua"), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, env=env, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        return float(m.group(1)) * UNITS[m.group(2)]
    if total > len(bodies):
        raise SystemExit(f"prepared {len(bodies)} bodies but wrk sent {total}: raise the estimate")
    return {"rps": rps, "p50": pct(50), "p99": pct(99), "errors": int(bad.group(1)) if bad else 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-rate", type=int, default=10000, help="upper bound on req/s, to size the prepared bodies")
    ap.add_argument("--concurrency", default="1,8", help="comma-separated wrk connection counts")
    ap.add_argument("--ledger-cost", action="store_true", help="also run a gateway with ledger.enabled: false")
    ap.add_argument("--event-loops", type=int, default=None, help="CSCGATE_EVENT_LOOPS for the gateways")
    args = ap.parse_args()
    if not Path(BIN).exists():
        raise SystemExit(f"{BIN} missing: swift build -c release --scratch-path .build-release --product cscgate")
    concs = [int(c) for c in args.concurrency.split(",")]
    count = args.max_rate * args.seconds
    sides = ["direct", "gateway"] + (["no-ledger"] if args.ledger_cost else [])
    ports = {"direct": DUMMY_PORT, "gateway": GATEWAY_PORT, "no-ledger": GATEWAY_PORT + 1}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        procs, tokens = [], {}
        try:
            for side in sides[1:]:
                procs.append(start_gateway(workdir / side, ports[side], ledger=side == "gateway",
                                           event_loops=args.event_loops))
                tokens[side] = post(ports[side], "/csc/v1/auth/login", {}, basic=f"bench-app:{SECRET}")["access_token"]
            info = post(GATEWAY_PORT, "/csc/v1/credentials/info", {"credentialID": "bench-ec"}, token=tokens["gateway"])
            per_sad = int(info["multisign"])
            results = {(side, c): [] for side in sides for c in concs}
            for r in range(args.rounds):
                for conc in concs:
                    # Rotate the order each round: no side always follows the same one.
                    for side in sides[r % len(sides):] + sides[:r % len(sides)]:
                        token = tokens.get(side, "")
                        bodies = direct_bodies(count) if side == "direct" else gateway_bodies(count, token, per_sad, ports[side])
                        res = run_wrk(ports[side], bodies, token, conc, args.seconds, workdir)
                        if res["errors"]:
                            raise SystemExit(f"{side} c{conc}: {res['errors']} non-2xx answers; see gateway.log")
                        results[(side, conc)].append(res)
                        print(f"round {r + 1} {side:9} c{conc}: {res['rps']:8.0f} req/s  p50 {res['p50']:.2f} ms"
                              f"  p99 {res['p99']:.2f} ms", flush=True)
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    med = lambda side, c, k: statistics.median(x[k] for x in results[(side, c)])
    # Each round measures every side back to back, so a round's own ratio cancels the drifts of
    # a shared machine better than a ratio of medians taken from different rounds.
    paired = lambda a, b, c: statistics.median(x["rps"] / y["rps"] for x, y in zip(results[(a, c)], results[(b, c)]))
    loops = f", CSCGATE_EVENT_LOOPS={args.event_loops}" if args.event_loops else ""
    print(f"\nsignHash, EC P-256, {args.rounds} rounds of {args.seconds} s, medians (wrk on the same 2 cores{loops}):")
    print(f"{'':12}{'direct req/s':>14}{'gateway req/s':>15}{'ratio':>8}{'paired':>8}{'p50 direct':>12}{'p50 gw':>9}"
          f"{'added p50':>11}{'p99 direct':>12}{'p99 gw':>9}")
    for c in concs:
        d, g = med("direct", c, "rps"), med("gateway", c, "rps")
        dp, gp = med("direct", c, "p50"), med("gateway", c, "p50")
        print(f"{'conc ' + str(c):12}{d:14.0f}{g:15.0f}{g / d:8.2f}{paired('gateway', 'direct', c):8.2f}"
              f"{dp:11.2f}ms{gp:7.2f}ms{gp - dp:9.2f}ms"
              f"{med('direct', c, 'p99'):10.2f}ms{med('gateway', c, 'p99'):7.2f}ms")
    if args.ledger_cost:
        print("\nthe ledger's cost: the same gateway with and without the usage ledger (SQLite: journal flushed per batch, file at synchronous=FULL):")
        print(f"{'':12}{'no ledger':>12}{'ledger':>10}{'ratio':>8}{'paired':>8}{'p50 no-ledger':>15}{'p50 ledger':>12}"
              f"{'added':>9}")
        for c in concs:
            n, g = med("no-ledger", c, "rps"), med("gateway", c, "rps")
            np_, gp = med("no-ledger", c, "p50"), med("gateway", c, "p50")
            print(f"{'conc ' + str(c):12}{n:12.0f}{g:10.0f}{g / n:8.2f}{paired('gateway', 'no-ledger', c):8.2f}"
                  f"{np_:13.2f}ms{gp:10.2f}ms{gp - np_:7.2f}ms")


if __name__ == "__main__":
    main()
