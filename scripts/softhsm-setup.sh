#!/usr/bin/env bash
# Idempotently prepare a SoftHSM2 token for a `kind: pkcs11` upstream: the token, its keys
# (made on the token by `cscgate keys generate`), a demo CA (openssl) and, for each key, a
# certificate issued from a CSR made by `cscgate keys csr` and attached with
# `cscgate keys import-cert`. Re-running changes nothing that is already there.
#
# Settings (environment, with the demo's defaults):
#   HSM_DIR      token state: softhsm2.conf, tokens/, user.pin, so.pin   (.run/softhsm)
#   CA_DIR       demo CA: ca.key.pem, ca.pem, issued/                     (.run/pki/demo-ca)
#   CONFIG       gateway.yaml whose pkcs11 upstream names this token      (gateway.yaml)
#   UPSTREAM     that upstream's name (optional when there is only one)
#   TOKEN_LABEL  the token's label                                        (cscgate-demo)
#   HSM_KEYS     "label:type:subject ..." (type: ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096)
#   CSCGATE_BIN  the cscgate binary                                       (.build/debug/cscgate)
# The upstream's pinFile must be $HSM_DIR/user.pin. Run the gateway with the printed
# SOFTHSM2_CONF.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HSM_DIR="${HSM_DIR:-$ROOT/.run/softhsm}"
CA_DIR="${CA_DIR:-$ROOT/.run/pki/demo-ca}"
CONFIG="${CONFIG:-$ROOT/gateway.yaml}"
TOKEN_LABEL="${TOKEN_LABEL:-cscgate-demo}"
HSM_KEYS="${HSM_KEYS:-demo-ec:ec-p256:CN=cscgate demo EC signer,O=cscgate demo,C=EU demo-rsa:rsa-2048:CN=cscgate demo RSA signer,O=cscgate demo,C=EU}"
BIN="${CSCGATE_BIN:-$ROOT/.build/debug/cscgate}"
UPSTREAM_ARGS=()
[[ -n "${UPSTREAM:-}" ]] && UPSTREAM_ARGS=(--upstream "$UPSTREAM")

command -v softhsm2-util >/dev/null || { echo "softhsm-setup: softhsm2-util missing (apt-get install softhsm2)" >&2; exit 1; }
[[ -x "$BIN" ]] || { echo "softhsm-setup: $BIN missing (swift build)" >&2; exit 1; }

mkdir -p "$HSM_DIR/tokens" "$CA_DIR/issued"
chmod 700 "$HSM_DIR" "$CA_DIR"
export SOFTHSM2_CONF="$HSM_DIR/softhsm2.conf"
if [[ ! -s "$SOFTHSM2_CONF" ]]; then
    cat > "$SOFTHSM2_CONF" <<EOF
directories.tokendir = $HSM_DIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
fi
# Random PINs, kept in files only the gateway reads (gateway.yaml names user.pin by pinFile).
umask 077
[[ -s "$HSM_DIR/user.pin" ]] || od -An -N8 -tx1 /dev/urandom | tr -d ' \n' > "$HSM_DIR/user.pin"
[[ -s "$HSM_DIR/so.pin" ]] || od -An -N8 -tx1 /dev/urandom | tr -d ' \n' > "$HSM_DIR/so.pin"
umask 022

if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label: *$TOKEN_LABEL *$"; then
    softhsm2-util --init-token --free --label "$TOKEN_LABEL" --pin "$(cat "$HSM_DIR/user.pin")" \
        --so-pin "$(cat "$HSM_DIR/so.pin")" >/dev/null
    echo "softhsm-setup: initialised token '$TOKEN_LABEL' in ${HSM_DIR#"$ROOT"/}"
fi

# The demo CA: one self-signed root that issues the signer certificates directly.
if [[ ! -s "$CA_DIR/ca.pem" ]]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CA_DIR/ca.key.pem" 2>/dev/null
    openssl req -new -x509 -key "$CA_DIR/ca.key.pem" -out "$CA_DIR/ca.pem" -days 3650 -sha256 \
        -subj "/C=EU/O=cscgate demo/CN=cscgate demo CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
    echo "softhsm-setup: created demo CA ${CA_DIR#"$ROOT"/}/ca.pem"
fi
cat > "$CA_DIR/signer.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,nonRepudiation
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF

listing="$("$BIN" keys list --config "$CONFIG" "${UPSTREAM_ARGS[@]}")"
# HSM_KEYS entries are separated by " <label>:" boundaries; subjects may contain spaces.
while IFS= read -r entry; do
    [[ -z "$entry" ]] && continue
    label="${entry%%:*}"; rest="${entry#*:}"; type="${rest%%:*}"; subject="${rest#*:}"
    if ! grep -q "^$label	" <<<"$listing"; then
        "$BIN" keys generate --config "$CONFIG" "${UPSTREAM_ARGS[@]}" --label "$label" --type "$type"
    fi
    if ! "$BIN" keys list --config "$CONFIG" "${UPSTREAM_ARGS[@]}" | grep "^$label	" | grep -q "issuer:"; then
        "$BIN" keys csr --config "$CONFIG" "${UPSTREAM_ARGS[@]}" --label "$label" --subject "$subject" \
            --out "$CA_DIR/issued/$label.csr.pem"
        openssl req -in "$CA_DIR/issued/$label.csr.pem" -verify -noout 2>/dev/null
        openssl x509 -req -in "$CA_DIR/issued/$label.csr.pem" -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca.key.pem" \
            -CAcreateserial -days 825 -sha256 -extfile "$CA_DIR/signer.ext" -out "$CA_DIR/issued/$label.pem" 2>/dev/null
        "$BIN" keys import-cert --config "$CONFIG" "${UPSTREAM_ARGS[@]}" --label "$label" \
            --cert "$CA_DIR/issued/$label.pem" --chain "$CA_DIR/ca.pem"
    fi
done < <(sed -E 's/ ([A-Za-z0-9._-]+:(ec-p256|ec-p384|rsa-2048|rsa-3072|rsa-4096):)/\n\1/g' <<<"$HSM_KEYS")

echo "softhsm-setup: token '$TOKEN_LABEL' ready; run the gateway with SOFTHSM2_CONF=$SOFTHSM2_CONF"
