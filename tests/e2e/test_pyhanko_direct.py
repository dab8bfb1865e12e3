"""pyHanko's CSCSigner straight against each certomancer-csc-dummy (no gateway in between).

This is the baseline: the same `sign_and_validate` is later pointed at the gateway. Validation
runs with revocation_mode='hard-fail', so it also proves the OCSP/CRL URLs in the certificates
reach the loopback Animators.
"""

import pytest

from pyhanko_flow import sign_and_validate

CASES = [
    pytest.param('rsa-signer', False, 'sha256_rsa', id='rsa-pkcs1v15'),
    pytest.param('rsa-signer', True, 'rsassa_pss', id='rsa-pss'),
    pytest.param('ec-signer', False, 'sha256_ecdsa', id='ec-p256'),
]


@pytest.mark.parametrize('label,pss,mechanism', CASES)
def test_sign_and_validate_direct(vendor, label, pss, mechanism):
    r = sign_and_validate(vendor.base_url, vendor.credential(label), None, vendor.root_pem,
                          pss=pss, revocation_mode='hard-fail')
    st = r.status
    assert (st.intact, st.valid, st.trusted, st.revoked) == (True, True, True, False)
    assert st.pkcs7_signature_mechanism == mechanism
    # The dummy's SCAL is what pyHanko saw; our manager always pins the hashes anyway.
    assert r.credential_info.hash_pinning_required == (vendor.scal == 2)
    (req, resp), = r.authorize_exchanges
    assert req['numSignatures'] == len(req['hash']) == 1
    assert 'SAD' in resp


def test_revoked_signer_is_reported_revoked(vendor):
    r = sign_and_validate(vendor.base_url, vendor.credential('revoked-signer'), None,
                          vendor.root_pem, revocation_mode='hard-fail', check=False)
    st = r.status
    assert st.intact and st.valid  # the maths is fine...
    assert st.revoked and not st.trusted  # ...but the Animator's OCSP says revoked
