"""What every client subcommand shares: connection flags, the client, output as a table or JSON.

Flags also read environment variables (DNNZOO_SERVER, DNNZOO_TIMEOUT, DNNZOO_TLS_CA, ...), so a
container or a shell profile sets them once. The bearer token of a server started with
--auth-token-file comes only from DNNZOO_TOKEN (a flag would show it in `ps`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import grpc

from serving.client import DEFAULT_ADDRESS, TLS, TOKEN_ENV, Client


def parser(prog: str, description: str, model: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                epilog=f"{TOKEN_ENV}: bearer token sent as `authorization: Bearer ...` when set")
    env = os.environ.get
    p.add_argument("--server", default=env("DNNZOO_SERVER", DEFAULT_ADDRESS), help=f"host:port of the server (default {DEFAULT_ADDRESS}; DNNZOO_SERVER)")
    if model is not None:
        p.add_argument("--model", default=model, help=f"model name in the repository (default {model})")
    p.add_argument("--timeout", type=float, default=float(env("DNNZOO_TIMEOUT", "30")), help="deadline in seconds (default 30)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tls = p.add_argument_group("TLS")
    tls.add_argument("--tls", action="store_true", default=bool(env("DNNZOO_TLS")), help="connect with TLS (system roots unless --tls-ca)")
    tls.add_argument("--tls-ca", type=Path, default=env("DNNZOO_TLS_CA"), help="CA certificate (PEM) that signed the server's")
    tls.add_argument("--tls-cert", type=Path, default=env("DNNZOO_TLS_CERT"), help="client certificate (PEM), for mutual TLS")
    tls.add_argument("--tls-key", type=Path, default=env("DNNZOO_TLS_KEY"), help="client private key (PEM), for mutual TLS")
    tls.add_argument("--tls-server-name", default=env("DNNZOO_TLS_SERVER_NAME"), help="name to expect in the server certificate")
    return p


def client(args: argparse.Namespace) -> Client:
    secure = args.tls or args.tls_ca or args.tls_cert or args.tls_key
    tls = TLS(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name) if secure else None
    return Client(args.server, timeout=args.timeout, tls=tls, token=os.environ.get(TOKEN_ENV, ""))


def table(rows: list[list[object]], header: list[str]) -> str:
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(args: argparse.Namespace, data: object, text: Callable[[], str]) -> None:
    print(json.dumps(data, indent=2) if args.json else text())


def wrote(path) -> None:
    """Say where a picture went, on stderr so that --json output stays one document."""
    print(f"wrote {path}", file=sys.stderr)


def run(prog: str, body: Callable[[], int]) -> int:
    """Run a subcommand: gRPC failures and bad files print one line and exit 1 (server) or 2 (usage)."""
    try:
        return body()
    except grpc.RpcError as exc:
        print(f"{prog}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
