#!/usr/bin/env bash
# Generate the (uncommitted) private keys for the test PKIs in tests/fixtures/pki/*.yml into
# .run/pki/keys/<vendor>/, only where missing, then export each vendor's trust root to
# .run/pki/<vendor>-root.pem. Needs .venv (scripts/setup-python.sh) for the export step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEYS="$ROOT/.run/pki/keys"
VENDORS=(vendor-a vendor-b)
RSA_KEYS=(root interm interm-ocsp tsa rsa-signer revoked-signer)
EC_KEYS=(ec-signer)

gen() { # gen <out> <openssl genpkey args...>
    local out="$1"; shift
    [[ -s "$out" ]] && return 0
    openssl genpkey "$@" -out "$out.tmp" 2>/dev/null
    mv "$out.tmp" "$out"
    echo "make-pki: generated ${out#"$ROOT"/}"
}

for v in "${VENDORS[@]}"; do
    mkdir -p "$KEYS/$v"
    chmod 700 "$KEYS/$v"
    for k in "${RSA_KEYS[@]}"; do
        gen "$KEYS/$v/$k.key.pem" -algorithm RSA -pkeyopt rsa_keygen_bits:2048
    done
    for k in "${EC_KEYS[@]}"; do
        gen "$KEYS/$v/$k.key.pem" -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
            -pkeyopt ec_param_enc:named_curve
    done
done

CERTOMANCER="$ROOT/.venv/bin/certomancer"
if [[ ! -x "$CERTOMANCER" ]]; then
    echo "make-pki: $CERTOMANCER missing; run scripts/setup-python.sh" >&2
    exit 1
fi
pids=()
for v in "${VENDORS[@]}"; do
    out="$ROOT/.run/pki/$v-root.pem"
    yml="$ROOT/tests/fixtures/pki/$v.yml"
    # Certs are derived deterministically from config + keys: re-export only when either changed.
    if [[ -s "$out" && "$out" -nt "$yml" && "$out" -nt "$KEYS/$v/root.key.pem" ]]; then
        continue
    fi
    ( "$CERTOMANCER" --config "$yml" --key-root "$ROOT" summon "$v" root "$out.tmp" \
          >"$out.log" 2>&1 && mv "$out.tmp" "$out" && rm -f "$out.log" ) &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || { echo "make-pki: certomancer summon failed:" >&2; cat "$ROOT"/.run/pki/*.log >&2; exit 1; }
done
echo "make-pki: keys in .run/pki/keys/, roots in .run/pki/{$(IFS=,; echo "${VENDORS[*]}")}-root.pem"
