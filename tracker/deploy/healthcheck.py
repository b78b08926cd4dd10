"""``python -m tracker.deploy.healthcheck``: ask a server's ``grpc.health.v1`` service whether it is SERVING.

The container images' HEALTHCHECK runs this. Exit status 0 when the server answers
SERVING, 1 otherwise (NOT_SERVING while engines warm up or while draining, or no answer).
Every option has an environment default so that the image can set them once:

* ``TRACKER_HEALTH_ADDRESS`` (default ``127.0.0.1:50051``);
* ``TRACKER_HEALTH_TLS_CA``: PEM CA bundle that signed the server certificate; empty or
  unset means plaintext (a server started with ``--insecure``). A self-signed server
  certificate is its own CA;
* ``TRACKER_HEALTH_SERVER_NAME`` (default ``localhost``): the name checked against the
  server certificate, since the check connects to a loopback address;
* ``TRACKER_HEALTH_TLS_CERT`` / ``TRACKER_HEALTH_TLS_KEY``: a client certificate, for a
  server that requires one (mutual TLS).

The health service needs no bearer token (see :mod:`tracker.server.security`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if not args.tls_ca:
        return grpc.insecure_channel(args.address)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("a client certificate needs both TRACKER_HEALTH_TLS_CERT and TRACKER_HEALTH_TLS_KEY")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(args.tls_ca).read_bytes(),
        private_key=Path(args.tls_key).read_bytes() if args.tls_key else None,
        certificate_chain=Path(args.tls_cert).read_bytes() if args.tls_cert else None,
    )
    return grpc.secure_channel(
        args.address, credentials, options=[("grpc.ssl_target_name_override", args.server_name)]
    )


def check(args: argparse.Namespace) -> str:
    """The serving status's name, or ``UNREACHABLE: <reason>``."""
    with _channel(args) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout_s
            )
        except grpc.RpcError as exc:
            return f"UNREACHABLE: {exc.code().name} {exc.details()}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m tracker.deploy.healthcheck", description=__doc__.splitlines()[0]
    )
    p.add_argument("--address", default=env("TRACKER_HEALTH_ADDRESS", "127.0.0.1:50051"))
    p.add_argument("--tls-ca", default=env("TRACKER_HEALTH_TLS_CA", ""), help="CA bundle; empty: plaintext")
    p.add_argument("--server-name", default=env("TRACKER_HEALTH_SERVER_NAME", "localhost"))
    p.add_argument("--tls-cert", default=env("TRACKER_HEALTH_TLS_CERT", ""), help="client certificate (mTLS)")
    p.add_argument("--tls-key", default=env("TRACKER_HEALTH_TLS_KEY", ""), help="client key (mTLS)")
    p.add_argument("--service", default="", help='health service name; "" is the whole server')
    p.add_argument("--timeout-s", type=float, default=3.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = check(args)
    except (OSError, ValueError) as exc:  # a missing CA file is a failed check, said plainly
        status = f"UNREACHABLE: {exc}"
    print(f"{args.address}: {status}")  # noqa: T201 - the health check's output (docker inspect shows it)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
