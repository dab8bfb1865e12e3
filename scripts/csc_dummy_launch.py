"""Run certomancer-csc-dummy bound to one address (default 127.0.0.1).

The stock `certomancer-csc CONFIG PORT SCAL` binds the name `localhost` (possibly ::1 too) and
resolves key paths against the config file's directory. This launcher uses the package's own
classes (csc_dummy.csc_dummy_server.CSCWithCertomancer) with an explicit host and key root.

usage: csc_dummy_launch.py --config FILE --port N --scal {1,2} [--key-root DIR] [--host H]
                           [--service-url-prefix URL]   (must match the Animator's, if given)
                           [--tls-cert PEM --tls-key PEM] (serve HTTPS instead of HTTP)
Set CSC_DUMMY_ACCESS_LOG=1 to log every request (off by default: it halves throughput).
"""

import argparse
import logging
import os
import ssl

from aiohttp import web
from certomancer import registry
from csc_dummy.csc_dummy_server import CSCWithCertomancer, DummyServiceParams


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', required=True)
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--scal', type=int, choices=(1, 2), default=1)
    p.add_argument('--key-root', default=None, help='default: the config file directory')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--service-url-prefix', default=None,
                   help="override the config's external-url-prefix (AIA/CRL URLs in certs)")
    p.add_argument('--tls-cert', default=None, help='serve HTTPS with this certificate (PEM, chain first)')
    p.add_argument('--tls-key', default=None, help='the private key of --tls-cert (PEM)')
    args = p.parse_args()
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)

    logging.basicConfig(
        level=logging.INFO, format='%(asctime)s - %(name)s - %(levelname)s - %(message)s'
    )
    access_log = logging.getLogger('aiohttp.access')
    if os.environ.get('CSC_DUMMY_ACCESS_LOG') != '1':
        access_log = None

    cfg = registry.CertomancerConfig.from_file(
        args.config, key_search_dir=args.key_root,
        external_url_prefix=args.service_url_prefix,
    )
    app = CSCWithCertomancer(
        cfg, service_params=DummyServiceParams(hash_pinning_required=args.scal >= 2)
    )
    app.register_routes()
    web.run_app(app.app, host=args.host, port=args.port, access_log=access_log, ssl_context=tls,
                print=lambda msg: logging.info('%s', msg))


if __name__ == '__main__':
    main()
