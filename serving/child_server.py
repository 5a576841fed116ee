"""A gRPC inference server run as a child process: started, waited for, stopped, its CPU counted.

`dnnzoo analyze` starts `dnnzoo serve` this way for each candidate plan, and the benchmarks start
dnnzoo and its peers the same way. A process of its own (not a thread in the caller) keeps the
server's GIL apart from the load generator's. Each server runs in its own session (process group) on
free loopback ports and logs to a file; it is ready when its gRPC ServerReady and ModelReady say so
(`wait_ready`, no sleeps on a guess). `start_*` return at once, so that the caller can arrange
`stop` before waiting; `stop` ends the whole group, worker processes included.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


class ServerFailed(RuntimeError):
    """The child server exited or did not become ready; the message ends with its log's tail."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_on_signals() -> dict:
    """SIGINT, SIGTERM and SIGHUP unwind, so that every `finally` stops what it started (child servers
    live in sessions of their own: nothing else would stop them). Returns the handlers replaced.

    SIGINT too, as a shell starting a harness in the background leaves it ignored. A second
    signal does not interrupt the clean-up."""
    def unwind(number, frame):
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {number}")

    return {sig: signal.signal(sig, unwind) for sig in STOP_SIGNALS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ChildServer:
    label: str
    address: str
    process: subprocess.Popen
    log: Path
    startup_s: float  # how long `wait_ready` gives it
    http_address: str | None = None  # host:port of its HTTP/REST front, when it has one

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """CPU time of every process in the server's session so far (Linux /proc; 0 elsewhere)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.process.pid:  # session id: the leader is the process we started
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # workers the leader left behind
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def launch(command: list[str], log: Path, cpus: str | None = None, **popen) -> subprocess.Popen:
    """Start `command` in a new session; `cpus` ("0", "1-3") pins it and its children with taskset."""
    if cpus:
        command = ["taskset", "-c", cpus, *command]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, **popen)
    return process


def wait_ready(server: ChildServer, model: str) -> None:
    """Block until ServerReady and ModelReady(model) are true over gRPC; ServerFailed with the log's tail."""
    import grpc

    from protos import grpc_service_pb2 as pb
    from protos import grpc_service_pb2_grpc as pb_grpc

    timeout = server.startup_s
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while True:
            if not server.alive():
                raise ServerFailed(f"{server.label} exited with {server.process.returncode} before it was ready; "
                                   f"log {server.log}:\n{server.log_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerFailed(f"{server.label} not ready after {timeout:.0f} s; log {server.log}:\n{server.log_tail()}")
            try:  # wait_for_ready: the call itself waits (up to 1 s) for the port to accept
                if (stub.ServerReady(pb.ServerReadyRequest(), timeout=min(1.0, left), wait_for_ready=True).ready
                        and stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=min(1.0, left)).ready):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)  # between two answered "not ready yet"


def start_dnnzoo(repository: Path, log: Path, cpus: str | None = None, providers: str = "cpu",
                 startup_s: float = 180, http: bool = False, **popen) -> ChildServer:
    """`dnnzoo serve` on `repository` on free loopback ports (metrics on, as deployed; REST only with
    `http`, for REST load: gRPC load does without it); `popen`: env, cwd."""
    port, http_port = free_port(), free_port() if http else -1
    command = [sys.executable, "-m", "dnnzoo", "serve", "--repository", str(repository), "--host", "127.0.0.1",
               "--port", str(port), "--metrics-port", str(free_port()), "--http-port", str(http_port),
               "--providers", providers]
    return ChildServer("dnnzoo", f"127.0.0.1:{port}", launch(command, log, cpus, **popen), log, startup_s,
                       f"127.0.0.1:{http_port}" if http else None)


def exit_with(main) -> None:
    """Run a benchmark's `main` and exit with its status: Ctrl-C stops the servers with one line, and
    a server that did not start exits with its log's tail instead of a traceback."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        sys.exit(130)
    except ServerFailed as failure:
        sys.exit(str(failure))
