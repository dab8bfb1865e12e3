"""A small fault-injecting HTTP proxy for the e2e tests (loopback only).

    proxy = FaultProxy('http://127.0.0.1:9101')   # forwards to the real dummy
    proxy.start()                                  # listens on 127.0.0.1:<proxy.port>
    proxy.set_fault('delay', paths=['signatures/signHash'], delay=4.0)
    ...
    proxy.clear()                                  # back to plain forwarding
    proxy.stop()

Fault modes (applied to requests whose path ends with one of `paths`, or to every request
when `paths` is None):
  * 'delay'      wait `delay` seconds (cut short by clear()/stop()), then forward;
  * 'text500'    answer 500 with the dummy's own plain-text crash body;
  * 'nonjson200' answer 200 with an HTML body;
  * 'close'      read the request, then close the connection without answering.

Every request is counted per path (`hits`), the most requests it held at once (read and not yet
answered) is `max_active` (reset with `reset_active()`), and every "SAD" the real upstream returns through
the proxy is kept in `seen_sads`, so a test can check that upstream SADs never leave the
gateway and never reach its log.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

TEXT_500_BODY = b'500 Internal Server Error\n\nServer got itself in trouble'
NON_JSON_BODY = b'<html><body>Service temporarily moved</body></html>'
MODES = ('delay', 'text500', 'nonjson200', 'close')
FORWARD_TIMEOUT = 10.0


class FaultProxy:
    def __init__(self, target_base: str, host: str = '127.0.0.1'):
        if host != '127.0.0.1':
            raise ValueError('the fault proxy listens on 127.0.0.1 only')
        t = urlsplit(target_base)
        if t.hostname != '127.0.0.1':
            raise ValueError(f'the fault proxy forwards to 127.0.0.1 only, not {target_base}')
        self.target_host = t.hostname
        self.target_port = t.port or 80
        self._lock = threading.Lock()
        self._mode: str | None = None
        self._paths: tuple[str, ...] | None = None
        self._delay = 0.0
        self._release = threading.Event()
        self.hits: dict[str, int] = {}
        self.faults_served: dict[str, int] = {}
        self.seen_sads: set[str] = set()
        self.active = 0
        self.max_active = 0
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def start(self) -> 'FaultProxy':
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={'poll_interval': 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def set_fault(self, mode: str, paths=None, delay: float = 4.0) -> None:
        if mode not in MODES:
            raise ValueError(f'unknown fault mode {mode!r}')
        with self._lock:
            self._release = threading.Event()
            self._mode = mode
            self._paths = tuple(paths) if paths else None
            self._delay = float(delay)

    def clear(self) -> None:
        with self._lock:
            self._mode = None
            self._paths = None
            self._release.set()

    def reset_active(self) -> None:
        with self._lock:
            self.max_active = self.active

    def _enter(self) -> None:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def _fault_for(self, path: str):
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            if self._mode is None:
                return None, 0.0, self._release
            if self._paths is not None and not any(path.endswith(p) for p in self._paths):
                return None, 0.0, self._release
            self.faults_served[self._mode] = self.faults_served.get(self._mode, 0) + 1
            return self._mode, self._delay, self._release

    # -- HTTP ----------------------------------------------------------------------------------
    def _forward(self, method: str, path: str, headers, body: bytes):
        conn = http.client.HTTPConnection(self.target_host, self.target_port,
                                          timeout=FORWARD_TIMEOUT)
        try:
            fwd = {k: v for k, v in headers.items()
                   if k.lower() in ('content-type', 'authorization', 'accept', 'x-request-id')}
            conn.request(method, path, body=body if method != 'GET' else None, headers=fwd)
            resp = conn.getresponse()
            data = resp.read()
            ctype = resp.getheader('Content-Type', 'application/octet-stream')
            if resp.status == 200:
                try:
                    obj = json.loads(data)
                    if isinstance(obj, dict) and isinstance(obj.get('SAD'), str):
                        with self._lock:
                            self.seen_sads.add(obj['SAD'])
                except ValueError:
                    pass
            return resp.status, ctype, data
        finally:
            conn.close()

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.0'  # one request per connection: simple and honest

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _done(self) -> None:
                # Once per request, before its answer is written: the gateway may open its next
                # connection as soon as it has read the answer, often before this thread runs again.
                if not self._left:
                    self._left = True
                    proxy._leave()

            def _send(self, status: int, ctype: str, data: bytes):
                self._done()
                self.send_response(status)
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str):
                proxy._enter()
                self._left = False
                try:
                    return self._serve(method)
                finally:
                    self._done()

            def _serve(self, method: str):
                n = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(n) if n > 0 else b''
                mode, delay, release = proxy._fault_for(self.path)
                try:
                    if mode == 'delay':
                        release.wait(min(delay, 30.0))
                    elif mode == 'text500':
                        return self._send(500, 'text/plain; charset=utf-8', TEXT_500_BODY)
                    elif mode == 'nonjson200':
                        return self._send(200, 'text/html', NON_JSON_BODY)
                    elif mode == 'close':
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return None
                    status, ctype, data = proxy._forward(method, self.path, self.headers, body)
                    return self._send(status, ctype, data)
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    return None  # the gateway gave up first (timeout test): nothing to do
                except OSError as e:  # target down: say so, as a plain proxy would
                    try:
                        return self._send(502, 'text/plain', f'proxy: {e}'.encode())
                    except OSError:
                        return None

            def do_POST(self):
                self._handle('POST')

            def do_GET(self):
                self._handle('GET')

        return Handler
