"""What large gRPC messages cost the server in memory before it can refuse them, per front.

    python benchmarks/oversize.py [--mb 1024] [--streams 64] [--connections 4] [--stream-mb 60]

Starts `dnnzoo serve` on an empty repository with each front (`--grpc-front native`, then
`grpcio`) and measures the server's peak resident memory (VmHWM) over two loads:

1. one ModelInfer message of `--mb` MiB, over the server's `--max-message-mb` (64): grpc-core
   reads the message's length prefix and refuses it before buffering the body; pygrpc-native's
   front (0.5) buffers the whole message before the server sees it and can refuse it;
2. `--streams` messages of `--stream-mb` MiB, under the limit, all sent at once over
   `--connections` connections, to a model that does not exist: every front holds each message
   until it is whole, so the in-flight bytes add up whichever front serves.

Each load prints the status the client got and the peak memory. Why this exists: neither front
bounds the bytes of calls still arriving (`--max-queued-mb` counts accepted requests only), so the
README's hardening section states what is and is not bounded, with these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from abuse import peak_rss_mb, reset_peak, running_server  # noqa: E402
from serving.loadgen import INFER  # noqa: E402

UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def message(mib: int) -> bytes:
    """A ModelInferRequest for model "absent" carrying `mib` MiB in an unknown field (15), which any
    parser skips: the size is all that matters here."""
    size = mib << 20
    length = bytearray()
    rest = size
    while True:
        low, rest = rest & 0x7F, rest >> 7
        length.append(low | (0x80 if rest else 0))
        if not rest:
            break
    return b"\x0a\x06absent" + bytes([15 << 3 | 2]) + bytes(length) + bytes(size)


async def send(address: str, payload: bytes, calls: int, connections: int) -> collections.Counter:
    channels = [grpc.aio.insecure_channel(address, options=UNLIMITED + [("grpc.use_local_subchannel_pool", 1)])
                for _ in range(connections)]
    stubs = [channel.unary_unary(INFER) for channel in channels]
    answers: collections.Counter = collections.Counter()

    async def one(i: int) -> None:
        try:
            await stubs[i % connections](payload, timeout=300)
            answers["OK"] += 1
        except grpc.aio.AioRpcError as error:
            answers[f"{error.code().name}: {(error.details() or '')[:70]}"] += 1

    await asyncio.gather(*(one(i) for i in range(calls)))
    for channel in channels:
        await channel.close()
    return answers


def measure(front: str, loads: list[tuple[str, bytes, int, int]]) -> list[tuple[str, str, float, float, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as repository, running_server(Path(repository), front) as (server, address, _):
        for label, payload, calls, connections in loads:
            reset_peak(server.pid)
            start = time.perf_counter()
            answers = asyncio.run(send(address, payload, calls, connections))
            seconds = time.perf_counter() - start
            rows.append((front, label, peak_rss_mb(server.pid), seconds,
                         ", ".join(f"{answer} x{n}" for answer, n in answers.most_common())))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="the one oversized message, MiB (default 1024)")
    parser.add_argument("--streams", type=int, default=64, help="messages under the limit sent at once (default 64)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--stream-mb", type=int, default=60, help="size of each of those, MiB (default 60)")
    args = parser.parse_args()
    loads = [(f"1 message of {args.mb} MiB", message(args.mb), 1, 1),
             (f"{args.streams} x {args.stream_mb} MiB at once", message(args.stream_mb), args.streams, args.connections)]
    rows = [row for front in ("native", "grpcio") for row in measure(front, loads)]
    print(f"\n{'front':<8}{'load':<26}{'peak RSS MB':>12}{'seconds':>9}  answers")
    for front, label, peak, seconds, answers in rows:
        print(f"{front:<8}{label:<26}{peak:>12.0f}{seconds:>9.1f}  {answers}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
