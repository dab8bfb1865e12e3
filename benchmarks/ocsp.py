"""signHash throughput with signer-certificate checking (OCSP) on, warm cache, versus off.

One run starts two release-built gateways in front of the same dummy (vendor-a, EC P-256,
SCAL 1): `off` without an `ocsp` block, `on` with OCSP checking against vendor-a's Animator.
They are measured alternately with wrk at concurrency 1 and 8; medians and the on/off ratio
are printed (target: on >= 0.95 x off). The `on` gateway's cache is warmed before measuring
(its nextUpdate is 10 minutes away, longer than the run).

Cold-miss latency: a third gateway with `maxAge: 1` re-checks the certificate on the first
request after each second; the median of its logged `check_ms` (verifier plus one responder
exchange) and of the whole request are printed.
Usage: .venv/bin/python benchmarks/ocsp.py [--seconds 5] [--rounds 3] [--misses 15]
"""
from __future__ import annotations

import argparse
import base64
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import signhash  # noqa: E402  (post, run_wrk, gateway_bodies, digest)
from signhash import BIN, DUMMY_PORT, EC_OID, SECRET, post  # noqa: E402
import gateway_process  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
ROOT_PEM = ROOT / ".run" / "pki" / "vendor-a-root.pem"
PORTS = {"off": 8291, "on": 8292, "cold": 8293}


def start(workdir: Path, name: str, ocsp: str) -> subprocess.Popen:
    d = workdir / name
    (d / "tenants").mkdir(parents=True)
    (d / "policies").mkdir()
    (d / "sad.key").write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    secret_hash = subprocess.run([BIN, "secret", "hash"], input=SECRET, capture_output=True, text=True,
                                 check=True).stdout.strip()
    (d / "gateway.yaml").write_text(f"""
listen: {{host: 127.0.0.1, port: {PORTS[name]}}}
sad: {{keyFile: sad.key}}
ledger: {{path: "{d / 'ledger.sqlite'}"}}
{ocsp}
upstreams:
  - {{name: vendor-a, kind: csc, baseURL: "http://127.0.0.1:{DUMMY_PORT}", version: v1, maxConnections: 16,
     trustAnchors: ["{ROOT_PEM}"]}}
""")
    (d / "tenants" / "bench.yaml").write_text(f"""
tenant: bench
clients:
  - {{id: bench-app, secretHash: "{secret_hash}", scopes: [service]}}
credentials:
  - {{id: bench-ec, upstream: vendor-a, upstreamCredentialID: "vendor-a/ec-signer"}}
""")
    level = "info" if name == "cold" else "warning"
    return gateway_process.serve(BIN, d / "gateway.yaml", PORTS[name], d / "gateway.log", level=level)


def cold_misses(workdir: Path, count: int) -> tuple[list[float], list[float]]:
    port = PORTS["cold"]
    token = post(port, "/csc/v1/auth/login", {}, basic=f"bench-app:{SECRET}")["access_token"]
    request_ms = []
    for _ in range(count):
        time.sleep(1.1)  # past maxAge: the next request misses the verdict cache
        sad = None
        t0 = time.perf_counter()
        sad = post(port, "/csc/v1/credentials/authorize", {"credentialID": "bench-ec", "numSignatures": 1},
                   token=token)["SAD"]
        request_ms.append((time.perf_counter() - t0) * 1000)
        post(port, "/csc/v1/signatures/signHash", {"credentialID": "bench-ec", "SAD": sad,
                                                   "hash": [signhash.digest()], "signAlgo": EC_OID}, token=token)
    log = (workdir / "cold" / "gateway.log").read_text()
    checks = [float(x) for x in re.findall(r"check_ms=([\d.]+)", log)]
    return checks, request_ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--misses", type=int, default=15)
    ap.add_argument("--max-rate", type=int, default=10000)
    args = ap.parse_args()
    if not Path(BIN).exists():
        raise SystemExit(f"{BIN} missing: swift build -c release --scratch-path .build-release --product cscgate")
    count = args.max_rate * args.seconds
    on_block = "ocsp: {enabled: true, failureMode: hard, timeout: 2}"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        gws = {"off": start(workdir, "off", ""), "on": start(workdir, "on", on_block)}
        try:
            tokens, per_sad = {}, {}
            for side in ("off", "on"):
                port = PORTS[side]
                tokens[side] = post(port, "/csc/v1/auth/login", {}, basic=f"bench-app:{SECRET}")["access_token"]
                info = post(port, "/csc/v1/credentials/info", {"credentialID": "bench-ec"}, token=tokens[side])
                per_sad[side] = int(info["multisign"])
                if side == "on":
                    assert info["cert"].get("status") == "valid", info  # warms the verdict cache
            results = {(side, c): [] for side in ("off", "on") for c in (1, 8)}
            for r in range(args.rounds):
                for conc in (1, 8):
                    # ABBA order: whichever side runs second in a pair gets no systematic edge.
                    for side in (("off", "on") if r % 2 == 0 else ("on", "off")):
                        bodies = signhash.gateway_bodies(count, tokens[side], per_sad[side], PORTS[side])
                        res = signhash.run_wrk(PORTS[side], bodies, tokens[side], conc, args.seconds, workdir)
                        if res["errors"]:
                            raise SystemExit(f"{side} c{conc}: {res['errors']} non-2xx answers")
                        results[(side, conc)].append(res)
                        print(f"round {r + 1} ocsp {side:3} c{conc}: {res['rps']:8.0f} req/s  p50 {res['p50']:.2f} ms"
                              f"  p99 {res['p99']:.2f} ms", flush=True)
        finally:
            for p in gws.values():
                p.terminate()
                p.wait(10)
        cold = start(workdir, "cold", "ocsp: {enabled: true, failureMode: hard, timeout: 2, maxAge: 1}")
        try:
            checks, request_ms = cold_misses(workdir, args.misses)
        finally:
            cold.terminate()
            cold.wait(10)
    med = lambda side, c, k: statistics.median(x[k] for x in results[(side, c)])
    print(f"\nsignHash through cscgate, EC P-256, {args.rounds} rounds of {args.seconds} s, medians:")
    print(f"{'':10}{'off req/s':>11}{'on req/s':>10}{'on/off':>8}{'p50 off':>10}{'p50 on':>9}{'p99 off':>10}{'p99 on':>9}")
    for c in (1, 8):
        off, on = med("off", c, "rps"), med("on", c, "rps")
        print(f"{'conc ' + str(c):10}{off:11.0f}{on:10.0f}{on / off:8.3f}{med('off', c, 'p50'):8.2f}ms"
              f"{med('on', c, 'p50'):7.2f}ms{med('off', c, 'p99'):8.2f}ms{med('on', c, 'p99'):7.2f}ms")
    if checks:
        print(f"\ncold miss ({len(checks)} checks against the Animator): verifier + responder median "
              f"{statistics.median(checks):.2f} ms (min {min(checks):.2f}, max {max(checks):.2f}); "
              f"whole authorize request median {statistics.median(request_ms):.2f} ms")


if __name__ == "__main__":
    main()
