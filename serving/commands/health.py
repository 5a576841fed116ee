"""`dnnzoo health [--server H:P] [--service NAME]`: exit 0 only when grpc.health.v1 says SERVING.

Small enough for a container HEALTHCHECK: one Check call with a short deadline.
"""

from __future__ import annotations

import sys

import grpc

from serving.commands import common


def main(argv: list[str], prog: str = "dnnzoo health") -> int:
    p = common.parser(prog, "Ask the server's grpc.health.v1 service; exit 0 only when SERVING.", None)
    p.add_argument("--service", default="", help="a service or model name (default: the whole server)")
    p.set_defaults(timeout=5.0)
    args = p.parse_args(argv)
    try:
        with common.client(args) as client:
            status = client.health(args.service)
    except grpc.RpcError as exc:
        status = f"{exc.code().name}: {exc.details()}"
    except (OSError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    common.emit(args, {"service": args.service, "status": status}, lambda: status)
    return 0 if status == "SERVING" else 1
