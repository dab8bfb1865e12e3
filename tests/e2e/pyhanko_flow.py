"""Sign a small PDF with pyHanko's CSCSigner against a CSC v1 endpoint and validate it.

Reusable against any CSC v1 service: the certomancer-csc-dummy peers directly
(http://127.0.0.1:9101/csc/v1, no token needed) or the gateway
(http://127.0.0.1:8088/csc/v1, bearer token from its auth/login).

    result = sign_and_validate(base_url, credential_id, token, trust_root_pem, pss=False)
    result.status     # pyhanko PdfSignatureStatus (intact/valid/trusted/revoked/...)
    result.signed_pdf # bytes

pyHanko calls, in this order: credentials/info {credentialID, certificates: chain,
certInfo: false}, credentials/authorize {credentialID, numSignatures, hash[, PIN]} (our
HashBoundAuthorizationManager below), signatures/signHash {credentialID, SAD, hashAlgo,
signAlgo, hash[, signAlgoParams]}. Every HTTP status >= 400 is a failure.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from io import BytesIO

import aiohttp
from asn1crypto import pem, x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCServiceSessionInfo,
    CSCSigner,
    fetch_certs_in_csc_credential,
)
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

HTTP_TIMEOUT = 30


class HashBoundAuthorizationManager(CSCAuthorizationManager):
    """Calls credentials/authorize with the hashes about to be signed (works for SCAL 1 and 2).

    Posts {credentialID, numSignatures (= number of hashes), hash[], PIN?} with the session's
    bearer token and returns the SAD (expiresIn defaults to 3600 when absent). Keeps every
    request/response pair in `.exchanges` for assertions and debugging.
    """

    def __init__(self, session: aiohttp.ClientSession, csc_session_info, credential_info,
                 pin: str | None = None):
        super().__init__(csc_session_info=csc_session_info, credential_info=credential_info)
        self.session = session
        self.pin = pin
        self.exchanges: list[tuple[dict, dict]] = []

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        req = self.format_csc_auth_request(hash_b64s=hash_b64s, pin=self.pin)
        url = self.csc_session_info.endpoint_url('credentials/authorize')
        async with self.session.post(
            url, headers=self.auth_headers, json=req,
            timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT),
        ) as resp:
            body = await resp.text()
            if resp.status >= 400:
                raise SigningError(
                    f'credentials/authorize failed: HTTP {resp.status}: {body[:500]}')
            data = await resp.json(content_type=None)
        self.exchanges.append((req, data))
        return self.parse_csc_auth_response(data)


@dataclass
class SignResult:
    status: object  # pyhanko.sign.validation.status.PdfSignatureStatus
    signed_pdf: bytes
    credential_info: object  # pyhanko CSCCredentialInfo (key.algo, SCAL, multisign, certs)
    authorize_exchanges: list = field(default_factory=list)


def make_small_pdf(text: str = 'cscgate e2e test document') -> bytes:
    """A one-page A4 PDF with one line of Helvetica text, written by pyHanko's own writer."""
    w = PdfFileWriter()
    font = generic.DictionaryObject({
        generic.pdf_name('/Type'): generic.pdf_name('/Font'),
        generic.pdf_name('/Subtype'): generic.pdf_name('/Type1'),
        generic.pdf_name('/BaseFont'): generic.pdf_name('/Helvetica'),
    })
    resources = generic.DictionaryObject({
        generic.pdf_name('/Font'): generic.DictionaryObject({
            generic.pdf_name('/F1'): w.add_object(font)}),
    })
    safe = text.replace('\\', '\\\\').replace('(', '\\(').replace(')', '\\)')
    content = generic.StreamObject(stream_data=f'BT /F1 14 Tf 72 770 Td ({safe}) Tj ET'.encode())
    w.insert_page(PageObject(
        contents=w.add_object(content),
        media_box=generic.ArrayObject(map(generic.NumberObject, (0, 0, 595, 842))),
        resources=resources,
    ))
    out = BytesIO()
    w.write(out)
    return out.getvalue()


def _load_root(trust_root_pem) -> x509.Certificate:
    """Accept a path, PEM text/bytes, DER bytes or an asn1crypto Certificate."""
    if isinstance(trust_root_pem, x509.Certificate):
        return trust_root_pem
    if isinstance(trust_root_pem, str) and '-----BEGIN' in trust_root_pem:
        data = trust_root_pem.encode()
    elif isinstance(trust_root_pem, bytes):
        data = trust_root_pem
    else:
        with open(os.fspath(trust_root_pem), 'rb') as f:
            data = f.read()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


def _service_url(base_url: str) -> str:
    """pyHanko wants the part before /csc/v1; accept both forms."""
    base = base_url.rstrip('/')
    return base[: -len('/csc/v1')] if base.endswith('/csc/v1') else base


async def async_sign_and_validate(
    base_url: str, credential_id: str, token: str | None, trust_root_pem, pss: bool = False,
    *, pin: str | None = None, allow_fetching: bool = True,
    revocation_mode: str = 'soft-fail', check: bool = True,
    pdf: bytes | None = None, field_name: str = 'Signature1',
) -> SignResult:
    session_info = CSCServiceSessionInfo(
        service_url=_service_url(base_url), credential_id=credential_id,
        oauth_token=token, api_ver='v1',
    )
    pdf = pdf if pdf is not None else make_small_pdf()
    async with aiohttp.ClientSession() as session:
        cred_info = await fetch_certs_in_csc_credential(session, session_info,
                                                        timeout=HTTP_TIMEOUT)
        auth = HashBoundAuthorizationManager(session, session_info, cred_info, pin=pin)
        signer = CSCSigner(session, auth_manager=auth, prefer_pss=pss,
                           sign_timeout=HTTP_TIMEOUT)
        out = await signers.async_sign_pdf(
            IncrementalPdfFileWriter(BytesIO(pdf)),
            signers.PdfSignatureMetadata(field_name=field_name, md_algorithm='sha256'),
            signer=signer,
        )
        signed = out.getvalue()

        # Revocation info (OCSP/CRL) is fetched, if allowed, from the URLs in the certificates:
        # the loopback Animator. The fetcher shares our session so nothing is left unclosed.
        vc = ValidationContext(
            trust_roots=[_load_root(trust_root_pem)],
            allow_fetching=allow_fetching,
            revocation_mode=revocation_mode,
            fetcher_backend=AIOHttpFetcherBackend(session, per_request_timeout=10),
        )
        emb = PdfFileReader(BytesIO(signed)).embedded_signatures[0]
        status = await async_validate_pdf_signature(emb, vc)
    result = SignResult(status=status, signed_pdf=signed, credential_info=cred_info,
                        authorize_exchanges=auth.exchanges)
    if check:
        assert status.intact, f'signature not intact: {status.pretty_print_details()}'
        assert status.valid, f'signature not valid: {status.pretty_print_details()}'
        assert status.trusted, f'signer not trusted: {status.pretty_print_details()}'
        key_algo = cred_info.signing_cert.public_key.algorithm
        want = {'rsa': 'rsassa_pss' if pss else 'sha256_rsa', 'ec': 'sha256_ecdsa'}.get(key_algo)
        assert status.pkcs7_signature_mechanism == want, \
            f'mechanism {status.pkcs7_signature_mechanism}, expected {want}'
    return result


def sign_and_validate(base_url: str, credential_id: str, token: str | None, trust_root_pem,
                      pss: bool = False, **kwargs) -> SignResult:
    """Synchronous wrapper. base_url like http://127.0.0.1:9101/csc/v1 (or without /csc/v1).

    token: bearer token or None. trust_root_pem: path, PEM text, PEM/DER bytes or an asn1crypto
    Certificate. kwargs: pin, allow_fetching (True: OCSP/CRL fetched from the
    loopback Animator named in the certs), revocation_mode ('soft-fail'|'hard-fail'|'require'),
    check (assert intact/valid/trusted, default True), pdf, field_name.
    """
    return asyncio.run(async_sign_and_validate(
        base_url, credential_id, token, trust_root_pem, pss, **kwargs))
