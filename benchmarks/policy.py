"""Policy and limits: what they cost.

1. In-process, per decision (policy evaluation + limit and quota checks, in-memory counters),
   with 1,000 tenants, 10,000 credentials and 10 rules per tenant: the hidden
   `cscgate policy bench`, run --runs times; prints each run and the median of the medians.
2. signHash throughput through the gateway with policies and limits on versus off, in one run:
   two gateways from the same release build in front of the same dummy (vendor-a, EC P-256),
   both with the same 1,000 tenants; "on" attaches 10 rules per tenant (two of them limits that
   never refuse) and a monthly quota. wrk alternates between them; medians and the on/off ratio.

Usage: .venv/bin/python benchmarks/policy.py [--seconds 5] [--rounds 3] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from signhash import BIN, DUMMY_PORT, EC_OID, SECRET, digest, post, run_wrk  # noqa: E402
import gateway_process  # noqa: E402


PORTS = {"off": 8291, "on": 8292}
TENANTS = 1000
CREDENTIALS = 10


def rules(t: int) -> str:
    return f"""policy: p{t}
default: deny
rules:
  - {{id: no-sha1-rsa, when: {{signAlgo: 1.2.840.113549.1.1.5}}, effect: deny, reason: SHA-1 is refused}}
  - {{id: no-sha1, when: {{hashAlgo: 1.3.14.3.2.26}}, effect: deny, reason: SHA-1 is refused}}
  - {{id: blocked-net, when: {{source: [203.0.113.0/24, "2001:db8::/32"]}}, effect: deny, reason: blocked network}}
  - {{id: big-batches, when: {{operation: signatures/signHash, hashes: {{min: 101}}}}, effect: deny, reason: too many}}
  - {{id: blocked-label, when: {{labels: {{blocked: "yes"}}}}, effect: deny, reason: blocked credential}}
  - {{id: own-keys, when: {{credential: "t{t}-*"}}, effect: allow}}
  - {{id: reads, when: {{operation: [credentials/list, credentials/info, credentials/authorize]}}, effect: allow}}
  - {{id: per-credential, when: {{operation: signatures/signHash}}, effect: limit,
     limit: {{scope: credential, unit: signatures, rate: 1000000000, period: 1s}}}}
  - {{id: per-tenant, effect: limit, limit: {{scope: tenant, unit: requests, rate: 1000000000, period: 1s}}}}
  - {{id: maintenance, when: {{time: {{days: [sun], from: "03:00", to: "03:01", zone: Europe/Berlin}}}},
     effect: deny, reason: maintenance window}}
"""


def start(workdir: Path, name: str, with_policies: bool, secret_hash: str) -> subprocess.Popen:
    port = PORTS[name]
    (workdir / "tenants").mkdir(parents=True)
    (workdir / "policies").mkdir()
    (workdir / "sad.key").write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
    (workdir / "gateway.yaml").write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
sad: {{keyFile: sad.key}}
ledger: {{path: ledger.sqlite}}
reload: {{pollInterval: 0}}
upstreams:
  - {{name: vendor-a, kind: csc, baseURL: "http://127.0.0.1:{DUMMY_PORT}", version: v1, maxConnections: 16}}
""")
    for t in range(TENANTS):
        creds = "\n".join(f"  - {{id: t{t}-ec{c}, upstream: vendor-a, upstreamCredentialID: vendor-a/ec-signer, "
                          f"labels: {{country: DE}}}}" for c in range(CREDENTIALS))
        extra = ""
        if with_policies:
            extra = (f"policies: [p{t}]\nplan: {{currency: EUR, pricePerSignature: \"0.01\", monthlyQuota: 1000000000}}\n")
            (workdir / "policies" / f"p{t}.yaml").write_text(rules(t))
        (workdir / "tenants" / f"t{t}.yaml").write_text(
            f"tenant: t{t}\nclients:\n  - {{id: t{t}-app, secretHash: \"{secret_hash}\", scopes: [service]}}\n"
            f"credentials:\n{creds}\n{extra}")
    return gateway_process.serve(BIN, workdir / "gateway.yaml", port, workdir / "gateway.log", timeout=60)


def bodies(port: int, count: int, token: str, per_sad: int) -> list[str]:
    out = []
    while len(out) < count:
        sad = post(port, "/csc/v1/credentials/authorize", {"credentialID": "t7-ec3", "numSignatures": per_sad},
                   token=token)["SAD"]
        out += [json.dumps({"credentialID": "t7-ec3", "SAD": sad, "hash": [digest()], "signAlgo": EC_OID})
                for _ in range(per_sad)]
    return out[:count]


def decision_bench(runs: int) -> None:
    medians = []
    for i in range(runs):
        out = subprocess.run([BIN, "policy", "bench", "--tenants", str(TENANTS), "--credentials", str(CREDENTIALS)],
                             capture_output=True, text=True, check=True).stdout
        figure = json.loads(out.strip().splitlines()[-1])
        medians.append(figure["median_us"])
        print(f"decision run {i + 1}: {json.dumps(figure)}", flush=True)
    print(f"\npolicy+limits decision, {TENANTS} tenants x {CREDENTIALS} credentials, 10 rules/tenant: "
          f"median {statistics.median(medians):.2f} us (target < 20 us)\n", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-rate", type=int, default=10000)
    ap.add_argument("--skip-decisions", action="store_true")
    args = ap.parse_args()
    if not Path(BIN).exists():
        raise SystemExit(f"{BIN} missing: swift build -c release --scratch-path .build-release --product cscgate")
    if not args.skip_decisions:
        decision_bench(args.runs)
    secret_hash = subprocess.run([BIN, "secret", "hash"], input=SECRET, capture_output=True, text=True,
                                 check=True).stdout.strip()
    count = args.max_rate * args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        try:
            for name in ("off", "on"):
                procs[name] = start(Path(tmp) / name, name, name == "on", secret_hash)
            tokens = {n: post(PORTS[n], "/csc/v1/auth/login", {}, basic=f"t7-app:{SECRET}")["access_token"] for n in PORTS}
            per_sad = int(post(PORTS["off"], "/csc/v1/credentials/info", {"credentialID": "t7-ec3"},
                               token=tokens["off"])["multisign"])
            results = {(n, c): [] for n in PORTS for c in (1, 8)}
            for r in range(args.rounds):
                for conc in (1, 8):
                    # ABBA order: whichever side runs second in a pair gets no systematic edge.
                    for name in (("off", "on") if r % 2 == 0 else ("on", "off")):
                        res = run_wrk(PORTS[name], bodies(PORTS[name], count, tokens[name], per_sad), tokens[name], conc,
                                      args.seconds, Path(tmp))
                        if res["errors"]:
                            raise SystemExit(f"{name} c{conc}: {res['errors']} non-2xx answers; see {tmp}/{name}/gateway.log")
                        results[(name, conc)].append(res)
                        print(f"round {r + 1} policies {name:3} c{conc}: {res['rps']:8.0f} req/s  p50 {res['p50']:.2f} ms"
                              f"  p99 {res['p99']:.2f} ms", flush=True)
        finally:
            for p in procs.values():
                p.terminate()
                p.wait(10)
    med = lambda n, c, k: statistics.median(x[k] for x in results[(n, c)])
    print(f"\nsignHash through the gateway, policies+limits off vs on, {args.rounds} rounds of {args.seconds} s, medians:")
    print(f"{'':12}{'off req/s':>11}{'on req/s':>10}{'on/off':>8}{'p50 off':>10}{'p50 on':>9}")
    for c in (1, 8):
        off, on = med("off", c, "rps"), med("on", c, "rps")
        print(f"{'conc ' + str(c):12}{off:11.0f}{on:10.0f}{on / off:8.3f}{med('off', c, 'p50'):8.2f}ms{med('on', c, 'p50'):7.2f}ms")


if __name__ == "__main__":
    main()
