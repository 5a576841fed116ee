"""Starting and stopping the servers `peers.py` compares, each with its default settings.

Every server runs in its own session (process group) on free loopback ports, logs to a file, and is
ready when its gRPC ServerReady and ModelReady say so (`wait_ready`; no sleeps on a guess). The
`start_*` functions return at once, so that the caller can arrange `stop` before waiting. `stop` ends the whole
group: MLServer's inference workers go with it. MLServer is installed into a virtual environment of
its own, kept between runs (first run: a few minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MLSERVER_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dnnzoo-bench" / "mlserver-venv"
MLSERVER_SPEC = "mlserver==1.7.*"
UVLOOP_SPEC = "uvloop==0.21.0"  # later uvloop releases break MLServer 1.7's parallel workers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    label: str
    address: str
    process: subprocess.Popen
    log: Path
    startup_s: float  # how long `wait_ready` gives it

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


def launch(command: list[str], log: Path, cpus: str | None, **popen) -> subprocess.Popen:
    """Start `command` in a new session; `cpus` ("0", "1-3") pins it and its children with taskset."""
    if cpus:
        command = ["taskset", "-c", cpus, *command]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, **popen)
    return process


def wait_ready(server: Server, model: str) -> None:
    """Block until ServerReady and ModelReady(model) are true over gRPC, or fail with the log's tail."""
    import grpc

    from protos import grpc_service_pb2 as pb
    from protos import grpc_service_pb2_grpc as pb_grpc

    timeout = server.startup_s
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while True:
            if not server.alive():
                raise SystemExit(f"{server.label} exited with {server.process.returncode} before it was ready; "
                                 f"log {server.log}:\n{server.log_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"{server.label} not ready after {timeout:.0f} s; "
                                 f"log {server.log}:\n{server.log_tail()}")
            try:  # wait_for_ready: the call itself waits (up to 1 s) for the port to accept
                if (stub.ServerReady(pb.ServerReadyRequest(), timeout=min(1.0, left), wait_for_ready=True).ready
                        and stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=min(1.0, left)).ready):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)  # between two answered "not ready yet"


def start_dnnzoo(repository: Path, model: str, logs: Path, cpus: str | None, root: Path = ROOT) -> Server:
    """`root`: the checkout whose dnnzoo runs (another branch's, to compare two in one run)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(root))
    command = [sys.executable, "-m", "dnnzoo", "serve", "--repository", str(repository), "--host", "127.0.0.1",
               "--port", str(port), "--metrics-port", str(free_port()), "--providers", "cpu"]
    log = logs / f"dnnzoo-{repository.name}-{root.name}.log"
    server = Server("dnnzoo", f"127.0.0.1:{port}", launch(command, log, cpus, cwd=root, env=env), log, 180)
    return server


def start_thin(model_file: Path, model: str, logs: Path, cpus: str | None) -> Server:
    port = free_port()
    command = [sys.executable, str(HERE / "thin_server.py"), "--model-file", str(model_file), "--name", model,
               "--port", str(port)]
    log = logs / "thin.log"
    server = Server("grpc.aio+ORT", f"127.0.0.1:{port}", launch(command, log, cpus, cwd=ROOT), log, 60)
    return server


def _venv_ok(venv: Path, onnxruntime_version: str) -> bool:
    python = venv / "bin" / "python"
    if not python.exists():
        return False
    probe = ("import mlserver, uvloop, onnxruntime, sys; "
             f"sys.exit(not (mlserver.__version__.startswith('1.7.') and uvloop.__version__ == '0.21.0' "
             f"and onnxruntime.__version__ == {onnxruntime_version!r}))")
    return subprocess.run([str(python), "-c", probe], cwd="/", capture_output=True).returncode == 0


def ensure_mlserver(venv: Path = MLSERVER_VENV) -> str:
    """MLServer 1.7 in its own venv, with the ONNX Runtime version dnnzoo's environment has; its version."""
    import onnxruntime

    ours = onnxruntime.__version__
    if not _venv_ok(venv, ours):
        print(f"installing MLServer into {venv} (first run: a few minutes) ...", file=sys.stderr, flush=True)
        if not (venv / "bin" / "python").exists():
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(venv)], check=True)
        log = venv.parent / "mlserver-install.log"
        with open(log, "wb") as out:
            done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", MLSERVER_SPEC, UVLOOP_SPEC,
                                   f"onnxruntime=={ours}", "numpy"], stdout=out, stderr=subprocess.STDOUT, cwd="/")
        if done.returncode or not _venv_ok(venv, ours):
            raise SystemExit(f"could not install MLServer into {venv}; see {log}")
    return subprocess.run([str(venv / "bin" / "python"), "-c", "import mlserver; print(mlserver.__version__)"],
                          cwd="/", capture_output=True, text=True, check=True).stdout.strip()


def start_mlserver(model_file: Path, model: str, folder: Path, logs: Path, cpus: str | None,
                   venv: Path = MLSERVER_VENV) -> Server:
    """MLServer with the settings it ships with; only ports and the loopback host are set."""
    grpc_port = free_port()
    folder.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "grpc_port": grpc_port, "http_port": free_port(), "metrics_port": free_port(),
    }))
    model_folder = folder / model
    model_folder.mkdir()
    shutil.copy(HERE / "mlserver_onnx_runtime.py", model_folder / "mlserver_onnx_runtime.py")
    (model_folder / "model-settings.json").write_text(json.dumps({
        "name": model, "implementation": "mlserver_onnx_runtime.OnnxRuntimeModel",
        "parameters": {"uri": str(model_file.resolve())},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}
    env["PYTHONPATH"] = str(model_folder)  # the parallel workers import the runtime too
    log = logs / "mlserver.log"
    command = [str(venv / "bin" / "mlserver"), "start", str(folder)]
    server = Server("MLServer", f"127.0.0.1:{grpc_port}", launch(command, log, cpus, cwd=folder, env=env),
                    log, 180)
    return server
