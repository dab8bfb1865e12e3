# cscgate — the two commands that matter: `make demo` and `make test`.
# Everything else here is a step of those two.

SHELL := /bin/bash
SWIFT ?= swift
VENV := .venv
PYTEST := $(VENV)/bin/pytest
BIN := $(CURDIR)/.build/debug/cscgate
CONFIG ?= gateway.yaml

# Debian packages the project needs beyond the Swift toolchain: openssl (demo PKI keys),
# curl and jq (demo), wrk (benchmarks).
APT_PACKAGES := openssl curl wrk jq
# Packages found by a file rather than a command of the same name (package:file): SoftHSM2 (the
# demo and test HSM), OpenSC (pkcs11-tool, to inspect tokens), the PKCS#11 header.
APT_FILES := softhsm2:/usr/lib/softhsm/libsofthsm2.so opensc:/usr/bin/pkcs11-tool \
	libp11-kit-dev:/usr/include/p11-kit-1/p11-kit/pkcs11.h postgresql:/usr/lib/postgresql/15/bin/postgres
# The PostgreSQL ledger's tests and benchmark: scripts/postgres.sh runs a server on loopback.
PG_TEST_URL := postgres://cscgate@127.0.0.1:55432/cscgate_test?sslmode=disable

.PHONY: all build test unit-test policy-test e2e-test demo hsm-demo bench-hsm bench-ledger bench-ledger-cost bench-policy \
	deps venv peers peers-stop postgres postgres-stop bench bench-ocsp check clean

all: build

deps:
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	for pf in $(APT_FILES); do [ -e "$${pf#*:}" ] || missing="$$missing $${pf%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv:
	bash scripts/setup-python.sh

build:
	$(SWIFT) build

check: build
	$(BIN) check --config $(CONFIG)

peers: venv
	bash scripts/peers.sh start

peers-stop:
	bash scripts/peers.sh stop

postgres: deps
	bash scripts/postgres.sh start

postgres-stop:
	bash scripts/postgres.sh stop

.run/sad.key:
	@mkdir -p .run && umask 077 && head -c 32 /dev/urandom | base64 > .run/sad.key

# Sets everything up on a fresh machine and runs the gateway in the foreground with the demo
# tenant (tenants/demo.yaml) in front of two demo vendors. README "Quick start" shows the calls.
# The demo HSM: a SoftHSM2 token in .run/softhsm with an EC and an RSA key whose certificates
# come from a demo CA in .run/pki/demo-ca (idempotent).
# gateway.yaml names the vendors' exported roots as trust anchors, so they must exist first.
hsm-demo: deps venv build
	bash scripts/make-pki.sh
	bash scripts/softhsm-setup.sh

demo: deps venv build peers .run/sad.key hsm-demo
	$(BIN) check --config $(CONFIG)
	@echo "cscgate demo: http://127.0.0.1:8088  (client demo-app / demo-client-secret-0001); Ctrl-C stops it"
	SOFTHSM2_CONF=$(CURDIR)/.run/softhsm/softhsm2.conf $(BIN) serve --config $(CONFIG)

# Unit tests (Swift Testing), then the end-to-end tests against the real peers and pyHanko.
test: deps venv
	$(SWIFT) build --build-tests
	$(SWIFT) build --product cscgate
	bash scripts/postgres.sh start
	@# PostgreSQL stops whatever the outcome: a server left running keeps the shared e2e lock
	@# (flock) held through the descriptor it inherited.
	CSCGATE_TEST_POSTGRES_URL='$(PG_TEST_URL)' $(MAKE) unit-test policy-test e2e-test; rc=$$?; \
	  bash scripts/postgres.sh stop; exit $$rc

unit-test:
	$(SWIFT) test --skip-build

# The test cases carried by the shipped policy files (policies/*.yaml).
policy-test:
	$(BIN) policy test --policies policies

e2e-test:
	CSCGATE_BIN=$(BIN) $(PYTEST) -q tests/e2e

bench: deps venv peers
	bash benchmarks/signhash.sh
	bash benchmarks/hsm.sh

# The usage ledger's cost on signHash: the same gateway with and without it, in one run.
bench-ledger-cost: deps venv peers
	bash benchmarks/signhash.sh --concurrency 1,8,64 --ledger-cost
# signHash with OCSP checking on (warm verdict cache) versus off, and the cold-miss latency.
bench-ocsp: deps venv peers
	bash benchmarks/ocsp.sh

# Local HSM only: raw SoftHSM2 sign rate versus signHash/s through the gateway (no peers needed).
bench-hsm: deps venv
	bash benchmarks/hsm.sh

# The ledger alone: durable events/s on SQLite and PostgreSQL, report time over 1,000,000 events.
bench-ledger: deps postgres
	CSCGATE_TEST_POSTGRES_URL='$(PG_TEST_URL)' python3 benchmarks/ledger.py

# Policy and limits: in-process cost per decision (1,000 tenants, 10,000 credentials, 10 rules
# per tenant), and signHash throughput with policies and limits on versus off, in one run.
bench-policy: deps venv peers
	bash benchmarks/policy.sh

clean: peers-stop postgres-stop
	rm -rf .run
