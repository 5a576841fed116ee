"""Around the protocol: health, reflection, metrics, TLS, graceful shutdown, config, no torch."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from dnnzoo.errors import UserError
from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from serving.config import from_env
from tests.serving.conftest import FRONTS, server_config, spawn_server, start_server, wait_until
from tests.serving.test_protocol import output, raw_request

ROOT = Path(__file__).resolve().parents[2]


def test_health_overall_and_per_model(channel):
    health = health_pb2_grpc.HealthStub(channel)

    def status(service: str):
        return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status

    assert status("") == health_pb2.HealthCheckResponse.SERVING
    assert status("inference.GRPCInferenceService") == health_pb2.HealthCheckResponse.SERVING
    wait_until(lambda: status("doubler") == health_pb2.HealthCheckResponse.SERVING, what="doubler SERVING")
    assert status("corrupt") == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as caught:
        status("ghost")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_services_and_resolves_messages(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
    described = database.FindFileContainingSymbol("inference.GRPCInferenceService")
    assert described.name == "grpc_service.proto"


def test_metrics_scraped_over_http(stub, served):
    stub.ModelInfer(raw_request("pixels", images=("UINT8", np.ones((2, 3), np.uint8))))
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(raw_request("pixels", images=("UINT8", np.ones((2, 4), np.uint8))))
    url = f"http://127.0.0.1:{served.server.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    labels = 'model="pixels",version="1"'
    assert re.search(rf"dnnzoo_request_success_total\{{{labels}\}} [1-9]", text)
    assert re.search(r'dnnzoo_request_failure_total\{model="pixels",reason="InvalidInput",version="1"\} [1-9]', text)
    for histogram in ("request_duration_seconds", "queue_duration_seconds", "compute_duration_seconds", "batch_size"):
        assert re.search(rf"dnnzoo_{histogram}_count\{{{labels}\}} [1-9]", text), histogram
    assert f"dnnzoo_requests_in_flight{{{labels}}} 0.0" in text
    assert re.search(r'dnnzoo_model_loaded\{model="doubler",providers="[A-Za-z,]*CPUExecutionProvider",version="1"\} 1', text)


def test_idle_connections_to_the_metrics_port_cost_no_thread_and_are_closed(repository):
    """A client holding connections open to /metrics neither grows the server's threads nor keeps
    them: they close after --http-read-seconds, and scrapes are answered meanwhile (gzip when asked)."""
    import gzip
    import socket
    import threading

    running = start_server(server_config(repository, http_read_seconds=1.0))
    try:
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", running.server.metrics_port), timeout=10) for _ in range(64)]
        request = urllib.request.Request(f"http://127.0.0.1:{running.server.metrics_port}/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            assert b"dnnzoo_model_loaded" in gzip.decompress(answer.read())
        assert threading.active_count() < before + 8  # the threaded server started one per connection
        for connection in idle:
            assert connection.recv(1) == b""  # closed by the server, well before the 10 s socket timeout
            connection.close()
    finally:
        running.stop()


def _scraped(served, model: str) -> dict[str, float]:
    """The pixels model's samples on /metrics, by sample name (failures summed over reasons)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{served.server.metrics_port}/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") == model and "le" not in sample.labels:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def test_metrics_agree_with_model_statistics(stub, served):
    """/metrics is read from the statistics ModelStatistics reports: after N calls both say the same."""
    before = _scraped(served, "pixels").get("dnnzoo_request_success_total", 0.0)
    for rows in (1, 2, 3, 1, 4):
        stub.ModelInfer(raw_request("pixels", images=("UINT8", np.ones((rows, 3), np.uint8))))
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(raw_request("pixels", images=("UINT8", np.ones((1, 4), np.uint8))))
    scraped = _scraped(served, "pixels")
    stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name="pixels")).model_stats[0]
    phases = stats.inference_stats
    assert scraped["dnnzoo_request_success_total"] == phases.success.count == before + 5
    assert scraped["dnnzoo_request_failure_total"] == phases.fail.count >= 3
    assert scraped["dnnzoo_request_duration_seconds_count"] == phases.success.count + phases.fail.count
    assert scraped["dnnzoo_request_duration_seconds_sum"] == pytest.approx((phases.success.ns + phases.fail.ns) / 1e9)
    assert scraped["dnnzoo_queue_duration_seconds_count"] == phases.queue.count
    assert scraped["dnnzoo_queue_duration_seconds_sum"] == pytest.approx(phases.queue.ns / 1e9)
    compute_ns = phases.compute_input.ns + phases.compute_infer.ns + phases.compute_output.ns
    assert scraped["dnnzoo_compute_duration_seconds_count"] == phases.compute_infer.count
    assert scraped["dnnzoo_compute_duration_seconds_sum"] == pytest.approx(compute_ns / 1e9)
    assert scraped["dnnzoo_batch_size_count"] == stats.execution_count
    assert scraped["dnnzoo_batch_size_sum"] == stats.inference_count
    assert scraped["dnnzoo_requests_in_flight"] == 0


def test_two_servers_in_one_process_keep_separate_metrics(repository):
    second = start_server(server_config(repository, providers="cpu"))
    try:
        assert second.server.metrics.registry is not None and second.server.metrics_port
    finally:
        second.stop()


# -- TLS -----------------------------------------------------------------------------------------


def _certificate(name: str, issuer_key=None, issuer_name=None, ca: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key, cert, cert.public_bytes(serialization.Encoding.PEM), pem_key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert, ca_pem, _ = _certificate("dnnzoo test CA", ca=True)
    files = {"ca.pem": ca_pem}
    for who in ("server", "client"):
        _, _, cert_pem, key_pem = _certificate("localhost" if who == "server" else "client", ca_key, ca_cert.subject)
        files[f"{who}.pem"], files[f"{who}.key"] = cert_pem, key_pem
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _secure_live(port: int, pki: Path, client_cert: bool) -> bool:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / "client.key").read_bytes() if client_cert else None,
        certificate_chain=(pki / "client.pem").read_bytes() if client_cert else None,
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live


def test_tls_and_mutual_tls(tmp_path, pki):
    from tests.serving.builders import write_model

    repo = tmp_path / "repo"
    write_model(repo, "pixels")
    tls = start_server(server_config(repo, providers="cpu", tls_cert=pki / "server.pem", tls_key=pki / "server.key"))
    try:
        assert _secure_live(tls.port, pki, client_cert=False)
        with grpc.insecure_channel(tls.address) as channel, pytest.raises(grpc.RpcError):
            pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=5)
    finally:
        tls.stop()
    mutual = start_server(server_config(repo, providers="cpu", tls_cert=pki / "server.pem",
                                        tls_key=pki / "server.key", tls_client_ca=pki / "ca.pem"))
    try:
        assert _secure_live(mutual.port, pki, client_cert=True)
        with pytest.raises(grpc.RpcError):
            _secure_live(mutual.port, pki, client_cert=False)
    finally:
        mutual.stop()


# -- graceful shutdown in a real process ------------------------------------------------------------


@pytest.mark.parametrize("front", FRONTS)
def test_sigterm_finishes_queued_requests_and_exits_zero(repository, front):
    process, port, metrics_port = spawn_server(repository, "--metrics-port", "0", "--grace-seconds", "20",
                                               DNNZOO_GRPC_FRONT=front)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            inputs = [np.full((1, 2), i, np.float32) for i in (1, 2)]
            # 'held' waits up to a minute for a full batch: these two sit in its queue
            futures = [stub.ModelInfer.future(raw_request("held", x=("FP32", x)), timeout=60) for x in inputs]

            def in_flight() -> bool:
                text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
                return 'dnnzoo_requests_in_flight{model="held",version="1"} 2.0' in text

            wait_until(in_flight, what="two requests queued in the server")
            process.send_signal(signal.SIGTERM)
            for x, future in zip(inputs, futures):
                np.testing.assert_array_equal(output(future.result(), "y"), x + 1)
        assert process.wait(timeout=30) == 0
        rest = process.stderr.read()
        assert "stopped" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- configuration and import hygiene ----------------------------------------------------------------


def test_environment_variables_and_flags():
    config = from_env({"DNNZOO_PORT": "9001", "DNNZOO_PROVIDERS": "cpu", "DNNZOO_LOAD_MODEL": "a,b",
                       "DNNZOO_MODEL_CONTROL_MODE": "explicit"}, port=9100)
    assert (config.port, config.providers, config.load_model) == (9100, "cpu", ["a", "b"])
    with pytest.raises(UserError, match="DNNZOO_PORT"):
        from_env({"DNNZOO_PORT": "eighty"})
    with pytest.raises(UserError, match="--providers"):
        from_env({"DNNZOO_PROVIDERS": "quantum"})
    with pytest.raises(UserError, match="--tls-key"):
        from_env({}, tls_cert="cert.pem")


@contextlib.contextmanager
def serving_process(command: list[str], cwd, env: dict):
    """`dnnzoo serve` as its own process: yields a stub on the gRPC port it reports (after any build),
    then stops it with SIGTERM, which must end it with status 0."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = next((int(m.group(1)) for line in process.stderr
                     if (m := re.search(r"on 127\.0\.0\.1:(\d+) \(gRPC\)", line))), None)
        assert port, "server did not report its port"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.GRPCInferenceServiceStub(channel)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_tritons_flag_names_start_the_server(repository, tmp_path):
    """An operator's `tritonserver --model-repository=... --grpc-port ...` line carries over as it is."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), DNNZOO_PROVIDERS="cpu")
    command = [sys.executable, "-m", "dnnzoo", "serve", f"--model-repository={repository}", "--grpc-port", "0",
               "--host", "127.0.0.1", "--http-port", "-1", "--metrics-port", "-1"]
    with serving_process(command, tmp_path, env) as stub:
        assert stub.ModelReady(pb.ModelReadyRequest(name="doubler"), timeout=30).ready


def test_cli_reports_a_missing_repository_without_training_extra_or_builds(tmp_path, monkeypatch):
    from serving import cli

    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert cli.main(["--repository", str(tmp_path / "nowhere")]) == 2


def test_serve_builds_a_missing_repository_then_serves_it(tmp_path):
    repository = tmp_path / "model_repository"
    env = dict(os.environ, PYTHONPATH=str(ROOT), DNNZOO_PROVIDERS="cpu", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "dnnzoo", "serve", "--repository", str(repository), "--build-profile", "tiny",
               "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--http-port", "0"]
    with serving_process(command, tmp_path, env) as stub:  # the build runs first; the port is reported when it serves
        assert (tmp_path / "runs" / "classifier-tiny" / "checkpoint.pt").is_file()
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name="digits_classifier"), timeout=30).ready


def test_serving_never_imports_torch_training_or_export():
    code = (
        "import sys, serving.server, serving.cli, serving.grpc_inference, serving.dataplane;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training', 'export'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("front", FRONTS)
def test_message_size_limit_is_configurable(tmp_path, front):
    from tests.serving.builders import write_model

    repo = tmp_path / "repo"
    write_model(repo, "doubler")
    small = start_server(server_config(repo, providers="cpu", max_message_mb=1, grpc_front=front))
    try:
        with grpc.insecure_channel(small.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            big = np.zeros((8, 4), np.float32)
            request = raw_request("doubler", x=("FP32", big))
            request.id = "x" * (2 * 1024 * 1024)  # a 2 MiB message
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request, timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert stub.ModelInfer(raw_request("doubler", x=("FP32", big)), timeout=10).model_name == "doubler"
    finally:
        small.stop()


@pytest.mark.parametrize("front", FRONTS)
def test_a_port_in_use_is_a_plain_error(repository, front):
    first = start_server(server_config(repository, providers="cpu", grpc_front=front))
    try:
        with pytest.raises(OSError, match=f"cannot bind gRPC port 127.0.0.1:{first.port}"):
            start_server(server_config(repository, providers="cpu", grpc_front=front, port=first.port))
    finally:
        first.stop()
