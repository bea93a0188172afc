"""Command line: `python -m localbatch serve` starts a local Batch account on loopback."""

import argparse
import signal
import sys
import time

from . import API_VERSION, DEFAULT_PORT, DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, __version__
from .bearer import BATCH_AUDIENCE, BearerAuth
from .server import Faults, TlsFiles, start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localbatch", description="A local Azure Batch service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Batch REST API and run tasks as local processes")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--data-dir", default="var/localbatch", help="where state and node directories live")
    serve.add_argument("--account-name", default=DEV_ACCOUNT_NAME)
    serve.add_argument("--account-key", default=DEV_ACCOUNT_KEY, help="base64 SharedKey (default: the dev key)")
    serve.add_argument("--node-start-seconds", type=float, default=2.0,
                       help="how long a new node takes to become idle (default 2)")
    serve.add_argument("--fault-rate", type=float, default=0.0, help="share of requests to fail (0..1)")
    serve.add_argument("--fault-status", type=int, default=503, choices=(429, 500, 503))
    serve.add_argument("--fault-delay-ms", type=int, default=0, help="delay added to every request")
    serve.add_argument("--tls", action="store_true", help="serve HTTPS with a certificate made at start")
    serve.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain) ...")
    serve.add_argument("--tls-key", help="... and this PEM private key")
    serve.add_argument("--trust-jwks", metavar="FILE_OR_URL",
                       help="accept Entra ID bearer tokens signed by a key of this JWKS (turns HTTPS on)")
    serve.add_argument("--trust-issuer", action="append", default=[], metavar="ISS",
                       help="a token issuer (the `iss` claim) to accept; repeat for several")
    serve.add_argument("--audience", action="append", default=[], metavar="AUD",
                       help=f"an accepted `aud` (default {BATCH_AUDIENCE})")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if bool(args.trust_jwks) != bool(args.trust_issuer):
        parser.error("--trust-jwks needs at least one --trust-issuer, and --trust-issuer needs --trust-jwks")

    faults = Faults(rate=args.fault_rate, status=args.fault_status, delay_ms=args.fault_delay_ms)
    bearer = BearerAuth(args.trust_jwks, args.trust_issuer, args.audience or (BATCH_AUDIENCE,)) \
        if args.trust_jwks else None
    tls: TlsFiles | bool = TlsFiles(args.tls_cert, args.tls_key, args.tls_cert) if args.tls_cert else args.tls
    running = start(args.data_dir, args.host, args.port, args.account_name, args.account_key,
                    args.node_start_seconds, faults, bearer=bearer, tls=tls)
    key_note = " (the well-known dev key)" if args.account_key == DEV_ACCOUNT_KEY else ""
    print(f"localbatch {__version__} serving the Batch API {API_VERSION}\n"
          f"  endpoint:     {running.endpoint}\n"
          f"  account name: {running.account_name}\n"
          f"  account key:  {running.account_key}{key_note}\n"
          f"  data dir:     {args.data_dir}", flush=True)
    if running.ca_path:
        print(f"  trust (CA):   {running.ca_path}", flush=True)
    if bearer:
        print(f"  bearer auth:  issuers {', '.join(bearer.issuers)}; audience {', '.join(bearer.audiences)}; "
              f"keys from {bearer.jwks}", flush=True)
    if args.fault_rate:
        print(f"  faults:       {args.fault_rate:.0%} of requests answer {args.fault_status}", flush=True)
    # Poll a plain flag: a signal the kernel delivers to another thread only marks the handler as due, and
    # it runs once the main thread executes bytecode, which an untimed Event.wait() never does again. The
    # handler takes no lock either (Event.set from a handler can deadlock on the Event's own lock).
    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, _frame: stopping.append(signum))
    while not stopping:
        time.sleep(0.2)
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
