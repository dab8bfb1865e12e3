"""OCSP responders for the e2e tests, loopback only.

`OCSPTestResponder` listens on 127.0.0.1:<port> (RFC 5019 GET and POST) and answers in one
of these modes, switchable at run time:

  * 'openssl'     an independent responder: each request is handed to `openssl ocsp` in
                  responder mode (-index/-CA/-rsigner/-rkey, -reqin/-respout). `openssl ocsp
                  -port` binds every address in OpenSSL 3.0; this wrapper keeps the socket on
                  loopback and lets OpenSSL do the OCSP work.
  * 'forward'     POST the request on to a real responder (Certomancer's Animator) and pass its
                  answer back; used to count how often the gateway really asks.
  faults a real responder cannot be made to produce (the request's CertID and nonce are read
  from the request; responses are built with `cryptography`):
  * 'wrong-key'   a response naming the real CA as signer, signed by another key;
  * 'stale'       signed by the real CA key, thisUpdate/nextUpdate hours in the past;
  * 'other-cert'  signed by the real CA key, about another certificate (`other_cert`);
  * 'replay'      the last genuine response again (its nonce belongs to an earlier request);
  * 'hang'        read the request and answer nothing for `hang_seconds`.

`stop()` closes the socket (the responder is then refused, as a stopped one is).
Every request is counted in `hits`; GET and POST separately in `methods`.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp


class OCSPTestResponder:
    def __init__(self, *, issuer_pem: Path, issuer_key: Path, index: Path | None = None,
                 forward_to: str | None = None, mode: str = 'openssl'):
        self.issuer_pem = Path(issuer_pem)
        self.issuer = x509.load_pem_x509_certificate(self.issuer_pem.read_bytes())
        self.issuer_key_path = Path(issuer_key)
        self.issuer_key = serialization.load_pem_private_key(self.issuer_key_path.read_bytes(), None)
        self.index = index
        self.forward_to = forward_to
        self.mode = mode
        self.other_cert: x509.Certificate | None = None
        self.subject_cert: x509.Certificate | None = None
        self.hang_seconds = 5.0
        self.hits = 0
        self.methods: dict[str, int] = {}
        self.last_genuine: bytes | None = None
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(('127.0.0.1', 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={'poll_interval': 0.1},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self._server.server_address[1]}/ocsp'

    def start(self) -> 'OCSPTestResponder':
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def set_mode(self, mode: str) -> None:
        with self._lock:
            self.mode = mode
            self._release.clear()

    # -- answers ---------------------------------------------------------------------------
    def answer(self, der_request: bytes) -> bytes:
        mode = self.mode
        if mode == 'openssl':
            resp = self._openssl(der_request)
            self.last_genuine = resp
            return resp
        if mode == 'forward':
            req = urllib.request.Request(self.forward_to, data=der_request,
                                         headers={'Content-Type': 'application/ocsp-request'})
            with urllib.request.urlopen(req, timeout=5) as r:
                resp = r.read()
            self.last_genuine = resp
            return resp
        if mode == 'replay':
            assert self.last_genuine is not None, 'replay needs an earlier genuine response'
            return self.last_genuine
        request = ocsp.load_der_ocsp_request(der_request)
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        key, responder = self.issuer_key, self.issuer
        this_update, next_update = now, now + dt.timedelta(minutes=5)
        serial = request.serial_number
        if mode == 'wrong-key':  # the CA's name, another key
            key = ec.generate_private_key(ec.SECP256R1())
            responder = (x509.CertificateBuilder().subject_name(self.issuer.subject).issuer_name(self.issuer.subject)
                         .public_key(key.public_key()).serial_number(x509.random_serial_number())
                         .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
                         .sign(key, hashes.SHA256()))
        elif mode == 'stale':
            this_update, next_update = now - dt.timedelta(hours=4), now - dt.timedelta(hours=3)
        elif mode == 'other-cert':
            serial = self.other_cert.serial_number
        else:
            raise AssertionError(f'unknown mode {mode}')
        subject = self.other_cert if mode == 'other-cert' else self.subject_cert
        assert subject is not None and subject.serial_number == serial, 'set subject_cert/other_cert first'
        builder = (ocsp.OCSPResponseBuilder()
                   .add_response(cert=subject, issuer=self.issuer, algorithm=hashes.SHA1(),
                                 cert_status=ocsp.OCSPCertStatus.GOOD, this_update=this_update,
                                 next_update=next_update, revocation_time=None, revocation_reason=None)
                   .responder_id(ocsp.OCSPResponderEncoding.NAME, responder))
        for ext in request.extensions:
            if isinstance(ext.value, x509.OCSPNonce):
                builder = builder.add_extension(ext.value, critical=False)
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def _openssl(self, der_request: bytes) -> bytes:
        with tempfile.TemporaryDirectory() as d:
            req, resp = Path(d) / 'req.der', Path(d) / 'resp.der'
            req.write_bytes(der_request)
            subprocess.run(['openssl', 'ocsp', '-index', str(self.index), '-CA', str(self.issuer_pem),
                            '-rsigner', str(self.issuer_pem), '-rkey', str(self.issuer_key_path),
                            '-reqin', str(req), '-respout', str(resp), '-nmin', '5'],
                           check=True, capture_output=True, timeout=10)
            return resp.read_bytes()

    def _handler(self):
        responder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def _serve(self, der: bytes, method: str) -> None:
                with responder._lock:
                    responder.hits += 1
                    responder.methods[method] = responder.methods.get(method, 0) + 1
                if responder.mode == 'hang':
                    responder._release.wait(responder.hang_seconds)
                    self.close_connection = True
                    return
                try:
                    body = responder.answer(der)
                    self.send_response(200)
                    self.send_header('Content-Type', 'application/ocsp-response')
                except Exception as e:  # noqa: BLE001 - a test responder reports, it does not crash
                    body = f'{type(e).__name__}: {e}'.encode()
                    self.send_response(500)
                    self.send_header('Content-Type', 'text/plain')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get('Content-Length') or 0)
                self._serve(self.rfile.read(n), 'POST')

            def do_GET(self):
                encoded = self.path.rsplit('/', 1)[-1]
                self._serve(base64.b64decode(urllib.parse.unquote(encoded)), 'GET')

        return Handler


def openssl_index(path: Path, good: list[x509.Certificate], revoked: list[x509.Certificate]) -> Path:
    """An `openssl ca` index: V for good, R (keyCompromise) for revoked; others are unknown."""
    def line(flag: str, c: x509.Certificate, rev: str = '') -> str:
        exp = c.not_valid_after_utc.strftime('%y%m%d%H%M%SZ')
        h = f'{c.serial_number:X}'
        h = '0' + h if len(h) % 2 else h
        return f'{flag}\t{exp}\t{rev}\t{h}\tunknown\t/CN=e2e\n'
    text = ''.join(line('V', c) for c in good)
    text += ''.join(line('R', c, '240101000000Z,keyCompromise') for c in revoked)
    path.write_text(text)
    (path.parent / (path.name + '.attr')).write_text('unique_subject = no\n')
    return path


def ocsp_request_for(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    b = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    b = b.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
    return b.build().public_bytes(serialization.Encoding.DER)


def wait_until(pred, timeout: float, step: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()
