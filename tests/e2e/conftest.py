"""Shared fixtures for the e2e tests (run with .venv/bin/pytest tests/e2e).

`peers` makes sure the third-party test peers (scripts/peers.sh: two certomancer-csc-dummy
"vendors" and their Certomancer Animators, all on 127.0.0.1) are up for the session. If they
were not all answering before, it runs `scripts/peers.sh start` and `stop`s them at the end;
peers that were already up are left running.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PEERS_SH = REPO / 'scripts' / 'peers.sh'

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_suite import gw  # noqa: E402,F401  (session fixture of the test_gateway_* files)


@dataclass(frozen=True)
class Vendor:
    name: str  # Certomancer architecture label, also the credential id prefix
    base_url: str  # CSC v1 base, e.g. http://127.0.0.1:9101/csc/v1
    scal: int
    animator_url: str
    root_pem: Path  # trust root exported by scripts/make-pki.sh

    def credential(self, label: str) -> str:
        return f'{self.name}/{label}'


def _vendors() -> dict[str, Vendor]:
    a = os.environ.get('CSC_A_PORT', '9101')
    b = os.environ.get('CSC_B_PORT', '9102')
    aa = os.environ.get('ANIM_A_PORT', '9111')
    ab = os.environ.get('ANIM_B_PORT', '9112')
    pki = REPO / '.run' / 'pki'
    return {
        'vendor-a': Vendor('vendor-a', f'http://127.0.0.1:{a}/csc/v1', 1,
                           f'http://127.0.0.1:{aa}', pki / 'vendor-a-root.pem'),
        'vendor-b': Vendor('vendor-b', f'http://127.0.0.1:{b}/csc/v1', 2,
                           f'http://127.0.0.1:{ab}', pki / 'vendor-b-root.pem'),
    }


def _peers(cmd: str, check: bool) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', str(PEERS_SH), cmd], cwd=REPO, check=check,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope='session')
def peers() -> dict[str, Vendor]:
    already_up = _peers('status', check=False).returncode == 0
    if not already_up:
        r = _peers('start', check=False)
        if r.returncode != 0:
            pytest.fail(f'scripts/peers.sh start failed ({r.returncode}):\n{r.stdout}\n{r.stderr}',
                        pytrace=False)
    try:
        yield _vendors()
    finally:
        if not already_up:
            _peers('stop', check=False)


@pytest.fixture(scope='session', params=['vendor-a', 'vendor-b'])
def vendor(request, peers) -> Vendor:
    return peers[request.param]
