"""Starting and stopping the servers `peers.py` compares, each with its default settings.

Every server runs as a `serving.child_server.ChildServer`: its own session (process group), free
loopback ports, a log file, ready when its gRPC ServerReady and ModelReady say so. The `start_*`
functions return at once, so that the caller can arrange `stop` before waiting. `stop` ends the
whole group: MLServer's inference workers go with it. MLServer is installed into a virtual environment of
its own, kept between runs (first run: a few minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from serving import child_server  # noqa: E402
from serving.child_server import ChildServer as Server  # noqa: E402
from serving.child_server import free_port, launch, wait_ready  # noqa: E402,F401 (peers.py imports wait_ready here)

MLSERVER_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dnnzoo-bench" / "mlserver-venv"
MLSERVER_SPEC = "mlserver==1.7.*"
UVLOOP_SPEC = "uvloop==0.21.0"  # later uvloop releases break MLServer 1.7's parallel workers


def start_dnnzoo(repository: Path, model: str, logs: Path, cpus: str | None, root: Path = ROOT,
                 http: bool = False, **popen) -> Server:
    """`root`: the checkout whose dnnzoo runs (another branch's, to compare two in one run); `http`:
    with its REST front on (for the REST targets); `popen`: e.g. preexec_fn (every start_* takes it)."""
    env = dict(os.environ, PYTHONPATH=str(root))
    return child_server.start_dnnzoo(repository, logs / f"dnnzoo-{repository.name}-{root.name}.log", cpus, http=http,
                                     cwd=root, env=env, **popen)


def start_thin(model_file: Path, model: str, logs: Path, cpus: str | None, **popen) -> Server:
    port = free_port()
    command = [sys.executable, str(HERE / "thin_server.py"), "--model-file", str(model_file), "--name", model,
               "--port", str(port)]
    log = logs / "thin.log"
    server = Server("grpc.aio+ORT", f"127.0.0.1:{port}", launch(command, log, cpus, cwd=ROOT, **popen), log, 60)
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
                   venv: Path = MLSERVER_VENV, **popen) -> Server:
    """MLServer with the settings it ships with; only ports and the loopback host are set."""
    grpc_port, http_port = free_port(), free_port()
    folder.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "grpc_port": grpc_port, "http_port": http_port, "metrics_port": free_port(),
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
    server = Server("MLServer", f"127.0.0.1:{grpc_port}", launch(command, log, cpus, cwd=folder, env=env, **popen),
                    log, 180, f"127.0.0.1:{http_port}")
    return server
