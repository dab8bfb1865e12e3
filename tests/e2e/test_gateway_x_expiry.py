"""Expiry, on the short-lived gateway (sad.maxLifetime 10, tokens.accessTokenLifetime 30).

Its token and SAD were taken the moment it came up (gateway_suite._start_env); this file runs
late in the suite, so the only wait is whatever is left of ~31 s — one bounded sleep, shared by
the SAD and the token checks."""

import time

from gateway_suite import (
    SHORT_SAD_LIFETIME, SHORT_TOKEN_LIFETIME, assert_csc_error, digest,
)

MARGIN = 1.5


def _wait_until(t: float) -> None:
    left = t - time.monotonic()
    if left > 0:
        assert left <= SHORT_TOKEN_LIFETIME + MARGIN  # bounded: at most one ~31 s wait
        time.sleep(left)


def test_short_lived_sad_and_token_expire(gw):
    early = gw.early
    api = gw.short_api
    # authorize said how long the SAD lives: no longer than sad.maxLifetime
    assert early.sad_expires_in is not None and 0 < early.sad_expires_in <= SHORT_SAD_LIFETIME

    _wait_until(early.sad_issued + SHORT_SAD_LIFETIME + MARGIN)
    fresh = api.token('alpha-app')
    r = api.sign(fresh, 'alpha-ec', early.sad, [digest('late')])  # budget left: 1 of 2
    assert_csc_error(r, 400, 'invalid_request', 'SAD expired')
    # and an expired SAD cannot be extended
    r = api.post('v1/credentials/extendTransaction', {'credentialID': 'alpha-ec',
                                                      'SAD': early.sad}, fresh)
    assert_csc_error(r, 400, 'invalid_request', 'expired')

    _wait_until(early.token_issued + SHORT_TOKEN_LIFETIME + MARGIN)
    r = api.post('v1/credentials/list', {}, early.token)
    body = assert_csc_error(r, 401)
    assert body['error'] in ('expired_token', 'invalid_token'), body
    # a fresh login on the same gateway still works, and so does a fresh SAD
    fresh = api.token('alpha-app')
    h = digest('after-expiry')
    sad = api.sad(fresh, 'alpha-ec', 1)
    r = api.sign(fresh, 'alpha-ec', sad, [h])
    assert r.status_code == 200, r.text
