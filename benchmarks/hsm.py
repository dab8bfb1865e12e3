"""Local HSM (SoftHSM2 over PKCS#11): the module's raw sign rate in-process versus signHash/s
through the gateway over HTTP, RSA-2048 and P-256, concurrency 1 and 8, in one run.

A fresh SoftHSM2 token is made in a temporary directory (scripts/softhsm-setup.sh), with an
RSA-2048 and a P-256 key certified by a throw-away CA. "raw" is `cscgate keys bench`: N threads,
each with its own session, C_SignInit + C_Sign in a loop, in one process, no HTTP. "gateway" is
wrk posting signHash requests (each with its own hash, spending a real gateway SAD) to a
release-built gateway whose pkcs11 upstream has `sessions` logged-in sessions. Both run on the
same 2 cores; rounds alternate raw and gateway, medians are printed with the ratio.

With --ledger-cost a second gateway on the same token runs with `ledger.enabled: false`, so
what the durable usage ledger costs on this path is printed too.

CPU/req is the gateway process's CPU time (signing included) per signHash answered; idle is the
share of both cores nobody used during the run: a closed loop of clients that waits (for a
flush, a session) leaves CPU unused that the raw run does not.

Usage: .venv/bin/python benchmarks/hsm.py [--seconds 5] [--rounds 3] [--sessions 4] [--ledger-cost]
       [--keys RSA-2048,P-256] [--concurrency 1,8]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import statistics
import subprocess
import tempfile
from pathlib import Path

import gateway_process
from signhash import post, run_wrk

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("CSCGATE_RELEASE_BIN", str(ROOT / ".build-release" / "release" / "cscgate"))
PORT = int(os.environ.get("BENCH_HSM_GATEWAY_PORT", "8289"))
SECRET = "bench-hsm-client-secret-0000"
KEYS = {"RSA-2048": ("bench-rsa", "rsa-2048", "1.2.840.113549.1.1.11"),
        "P-256": ("bench-ec", "ec-p256", "1.2.840.10045.4.3.2")}
MULTISIGN = 100000
# Where the ledger's journal goes (ledger.journal). Pointing it at tmpfs (/dev/shm) is NOT durable:
# it only measures what the ledger costs apart from the disk flush.
JOURNAL_DIR = os.environ.get("BENCH_JOURNAL_DIR")
# More ledger settings for the gateway with the ledger, as YAML flow entries (e.g. "commitDelay: 0").
LEDGER_OPTIONS = os.environ.get("BENCH_LEDGER_OPTIONS")


def setup(work: Path, sessions: int) -> dict:
    hsm_dir = work / "softhsm"
    (work / "tenants").mkdir()
    (work / "policies").mkdir()
    (work / "sad.key").write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    secret_hash = subprocess.run([BIN, "secret", "hash"], input=SECRET, capture_output=True, text=True,
                                 check=True).stdout.strip()
    creds = "\n".join(f"      - {{label: {label}, authMode: implicit, multisign: {MULTISIGN}}}"
                      for label, _, _ in KEYS.values())
    (work / "gateway.yaml").write_text(f"""
listen: {{host: 127.0.0.1, port: {PORT}}}
sad: {{keyFile: sad.key, maxLifetime: 3600}}
upstreams:
  - name: hsm
    kind: pkcs11
    module: /usr/lib/softhsm/libsofthsm2.so
    tokenLabel: bench
    pinFile: {hsm_dir}/user.pin
    sessions: {sessions}
    inlineECDSA: true
    credentials:
{creds}
""" + ledger_line(work))
    (work / "tenants" / "bench.yaml").write_text(f"""
tenant: bench
clients:
  - {{id: bench-app, secretHash: "{secret_hash}", scopes: [service]}}
credentials:
""" + "\n".join(f"  - {{id: {label}, upstream: hsm, upstreamCredentialID: {label}}}" for label, _, _ in KEYS.values()) + "\n")
    env = dict(os.environ, HSM_DIR=str(hsm_dir), CA_DIR=str(work / "ca"), CONFIG=str(work / "gateway.yaml"),
               TOKEN_LABEL="bench", CSCGATE_BIN=BIN,
               HSM_KEYS=" ".join(f"{label}:{kind}:CN={label},O=cscgate bench" for label, kind, _ in KEYS.values()))
    subprocess.run(["bash", str(ROOT / "scripts" / "softhsm-setup.sh")], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return {"SOFTHSM2_CONF": str(hsm_dir / "softhsm2.conf")}


def ledger_line(work: Path) -> str:
    entries = ([f'journal: "{Path(JOURNAL_DIR) / work.name}"'] if JOURNAL_DIR else []) + ([LEDGER_OPTIONS] if LEDGER_OPTIONS else [])
    return "ledger: {" + ", ".join(entries) + "}\n" if entries else ""


def start_gateway(work: Path, env: dict, port: int = PORT, ledger: bool = True) -> subprocess.Popen:
    config = work / "gateway.yaml"
    if not ledger:
        # The same upstream and tenant, another port, no usage ledger.
        config = work / "gateway-no-ledger.yaml"
        base = "".join(line for line in (work / "gateway.yaml").read_text().splitlines(keepends=True)
                       if not line.startswith("ledger:"))
        config.write_text(base.replace(f"port: {PORT}}}", f"port: {port}}}") + "ledger: {enabled: false}\n")
    return gateway_process.serve(BIN, config, port, work / f"gateway-{port}.log", env=dict(os.environ, **env))


def cpu_seconds(pid: int) -> float:
    """User and system CPU the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_seconds() -> float:
    """Idle time of all CPUs so far, summed."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def raw_rate(work: Path, env: dict, label: str, threads: int, seconds: int) -> float:
    out = subprocess.run([BIN, "keys", "bench", "--config", str(work / "gateway.yaml"), "--label", label,
                          "--threads", str(threads), "--seconds", str(seconds)],
                         capture_output=True, text=True, check=True, env=dict(os.environ, **env)).stdout
    return float(re.search(r"([\d.]+) signatures/s", out).group(1))


def bodies(token: str, label: str, algo: str, count: int, port: int = PORT) -> list[str]:
    out, left = [], count
    while left > 0:
        n = min(left, MULTISIGN)
        sad = post(port, "/csc/v1/credentials/authorize", {"credentialID": label, "numSignatures": n}, token=token)["SAD"]
        out += [json.dumps({"credentialID": label, "SAD": sad, "signAlgo": algo,
                            "hash": [base64.b64encode(secrets.token_bytes(32)).decode()]}) for _ in range(n)]
        left -= n
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=4, help="the pkcs11 upstream's session pool")
    ap.add_argument("--ledger-cost", action="store_true", help="also run a gateway with ledger.enabled: false")
    ap.add_argument("--keys", default=",".join(KEYS), help=f"which keys to measure, of {', '.join(KEYS)}")
    ap.add_argument("--concurrency", default="1,8", help="comma-separated client counts")
    args = ap.parse_args()
    keys = args.keys.split(",")
    if unknown := [k for k in keys if k not in KEYS]:
        raise SystemExit(f"unknown key {unknown[0]!r}; choose from {', '.join(KEYS)}")
    levels = [int(c) for c in args.concurrency.split(",")]
    if not Path(BIN).exists():
        raise SystemExit(f"{BIN} missing: swift build -c release --scratch-path .build-release --product cscgate")
    sides = {"gateway": PORT} | ({"no-ledger": PORT + 1} if args.ledger_cost else {})
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = setup(work, args.sessions)
        procs = []
        try:
            tokens, pids = {}, {}
            for side, port in sides.items():
                procs.append(start_gateway(work, env, port, ledger=side == "gateway"))
                pids[side] = procs[-1].pid
                tokens[side] = post(port, "/csc/v1/auth/login", {}, basic=f"bench-app:{SECRET}")["access_token"]
            for r in range(args.rounds):
                for name in keys:
                    label, _, algo = KEYS[name]
                    for conc in levels:
                        raw = raw_rate(work, env, label, conc, args.seconds)
                        row = {"raw": raw}
                        # Alternate which gateway goes first, so neither always follows the raw run.
                        order = list(sides) if r % 2 == 0 else list(reversed(sides))
                        for side in order:
                            # Sized from the raw rate: the gateway cannot sign faster than the module.
                            prepared = bodies(tokens[side], label, algo, int(raw * 1.5 * args.seconds) + 1000, sides[side])
                            cpu, idle = cpu_seconds(pids[side]), idle_seconds()
                            res = run_wrk(sides[side], prepared, tokens[side], conc, args.seconds, work)
                            # What one signHash costs the gateway in CPU (signing included), and how
                            # much of the machine stayed idle: a closed loop that waits leaves CPU unused.
                            res["cpu_us"] = (cpu_seconds(pids[side]) - cpu) / (res["rps"] * args.seconds) * 1e6
                            res["idle"] = (idle_seconds() - idle) / (args.seconds * os.cpu_count())
                            if res["errors"]:
                                raise SystemExit(f"{name} c{conc} {side}: {res['errors']} non-2xx answers; see {work}")
                            row[side] = res
                            print(f"round {r + 1} {name:8} c{conc} {side:9}: raw {raw:8.0f}/s  signHash {res['rps']:8.0f}/s"
                                  f"  ratio {res['rps'] / raw:5.2f}  p50 {res['p50']:.2f} ms  p99 {res['p99']:.2f} ms"
                                  f"  gateway CPU {res['cpu_us']:4.0f} µs/req  idle {res['idle']:4.0%}", flush=True)
                        results.setdefault((name, conc), []).append(row)
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    med = statistics.median
    print(f"\nSoftHSM2 via PKCS#11, {args.rounds} rounds of {args.seconds} s, medians; pool of {args.sessions} sessions; "
          "raw = in-process threads, gateway = wrk over HTTP, same 2 cores; paired = median of each round's own ratio:")
    print(f"{'':14}{'raw signs/s':>13}{'signHash/s':>12}{'ratio':>8}{'paired':>8}{'p50':>9}{'p99':>9}"
          + f"{'CPU/req':>9}{'idle':>6}"
          + (f"{'no ledger':>11}{'ratio':>8}{'CPU/req':>9}{'idle':>6}{'ledger cost':>13}" if args.ledger_cost else ""))
    for (name, conc), rows in results.items():
        raw = med(x["raw"] for x in rows)
        gw_rps = med(x["gateway"]["rps"] for x in rows)
        line = (f"{name + ' c' + str(conc):14}{raw:13.0f}{gw_rps:12.0f}{gw_rps / raw:8.2f}"
                f"{med(x['gateway']['rps'] / x['raw'] for x in rows):8.2f}"
                f"{med(x['gateway']['p50'] for x in rows):7.2f}ms{med(x['gateway']['p99'] for x in rows):7.2f}ms"
                f"{med(x['gateway']['cpu_us'] for x in rows):7.0f}µs{med(x['gateway']['idle'] for x in rows):6.0%}")
        if args.ledger_cost:
            free = med(x["no-ledger"]["rps"] for x in rows)
            line += (f"{free:11.0f}{free / raw:8.2f}"
                     f"{med(x['no-ledger']['cpu_us'] for x in rows):7.0f}µs{med(x['no-ledger']['idle'] for x in rows):6.0%}"
                     f"{med(x['gateway']['rps'] / x['no-ledger']['rps'] for x in rows):13.2f}")
        print(line)


if __name__ == "__main__":
    main()
