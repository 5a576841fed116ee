"""Model folders built to hurt the server: a FIFO or a device where a file should be, links out of
the repository, a config line of megabytes, a warm-up file that never ends. Each leaves its own model
UNAVAILABLE with a short reason and costs the rest of the repository nothing."""

from __future__ import annotations

import logging
import os
import threading

import grpc
import numpy as np

from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from serving.repository import MAX_REASON_CHARS, Repository
from tests.serving.builders import doubler_graph, write_model
from tests.serving.conftest import server_config, start_server, wait_until
from tests.serving.test_protocol import output, raw_request


def read_within(repository: Repository, name: str, seconds: float = 10.0):
    """Repository.read on a thread, failing the test if it does not return (a FIFO read blocks forever)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(repository.read(name)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"reading model {name!r} did not return within {seconds} s"
    return result[0]


def test_a_fifo_or_a_device_in_place_of_a_file_is_refused_without_reading_it(tmp_path):
    root = tmp_path / "repo"
    for name, file_name in (("fifo_config", "config.pbtxt"), ("fifo_labels", "labels.txt")):
        folder = write_model(root, "doubler")
        os.rename(folder, root / name)
        (root / name / "config.pbtxt").write_text((root / name / "config.pbtxt").read_text().replace('"doubler"', f'"{name}"'))
        (root / name / file_name).unlink()
        os.mkfifo(root / name / file_name)
    zero = write_model(root, "doubler")
    os.rename(zero, root / "zero_labels")
    (root / "zero_labels" / "config.pbtxt").write_text((root / "zero_labels" / "config.pbtxt").read_text().replace('"doubler"', '"zero_labels"'))
    (root / "zero_labels" / "labels.txt").unlink()
    (root / "zero_labels" / "labels.txt").symlink_to("/dev/zero")
    repository = Repository(root)
    assert "config.pbtxt is not a regular file" in read_within(repository, "fifo_config").error
    assert "labels.txt is not a regular file" in read_within(repository, "fifo_labels").error
    assert "labels.txt points outside the model repository" in read_within(repository, "zero_labels").error


def test_links_out_of_the_repository_are_refused_and_links_inside_it_are_followed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-1\nSECRET-2\nSECRET-3\nSECRET-4\n")
    root = tmp_path / "repo"
    folder = write_model(root, "doubler")
    (folder / "labels.txt").unlink()
    (folder / "labels.txt").symlink_to(secret)
    assert "labels.txt points outside the model repository" in Repository(root).read("doubler").error
    # a link to a file elsewhere inside the repository (as a ConfigMap mount's ..data links) is fine
    shared = root / ".shared"
    shared.mkdir()
    (shared / "labels.txt").write_text("a\nb\nc\nd\n")
    (folder / "labels.txt").unlink()
    (folder / "labels.txt").symlink_to(shared / "labels.txt")
    source = Repository(root).read("doubler")
    assert source.error is None and source.spec.outputs[1].labels == ("a", "b", "c", "d")
    # a version's model file linked out of the repository is not handed to ONNX Runtime
    outside = tmp_path / "model.onnx"
    (folder / "1" / "model.onnx").rename(outside)
    (folder / "1" / "model.onnx").symlink_to(outside)
    source = Repository(root).read("doubler")
    assert source.versions == {} and "model.onnx points outside the model repository" in source.version_errors[1]


def test_a_reason_quoting_megabytes_is_cut_to_a_short_one(tmp_path):
    root = tmp_path / "repo"
    folder = write_model(root, "doubler")
    (folder / "config.pbtxt").write_text('name: "doubler"\nplatform: "' + "x" * 2_000_000 + "\n")
    error = Repository(root).read("doubler").error
    assert len(error) < MAX_REASON_CHARS + 100 and "characters in all" in error


def test_a_broken_folder_is_logged_once_and_polling_goes_on(tmp_path, caplog):
    root = tmp_path / "repo"
    write_model(root, "doubler")
    broken = root / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "broken"\nno_such_field: 1\n')
    os.mkfifo(root / "doubler" / "stuck")  # a FIFO the server has no reason to open
    running = start_server(server_config(root, model_control_mode="poll", poll_seconds=0.1))
    try:
        with caplog.at_level(logging.ERROR, logger="serving.models"):
            write_model(root, "later", graph=doubler_graph, config=(root / "doubler" / "config.pbtxt").read_text()
                        .replace('"doubler"', '"later"').replace(' label_filename: "labels.txt"', ""))
            with grpc.insecure_channel(running.address) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                wait_until(lambda: stub.ModelReady(pb.ModelReadyRequest(name="later")).ready, what="a model added later")
                for _ in range(10):  # ten polls or more
                    response = stub.ModelInfer(raw_request("doubler", x=("FP32", np.ones((1, 4), np.float32))), timeout=10)
                    np.testing.assert_array_equal(output(response, "y"), np.full((1, 4), 2, np.float32))
                    threading.Event().wait(0.1)
        lines = [r for r in caplog.records if "'broken'" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]
    finally:
        running.stop()


def test_a_warmup_file_that_is_a_fifo_leaves_the_model_unavailable(tmp_path):
    root = tmp_path / "repo"
    folder = write_model(root, "doubler")
    config = (folder / "config.pbtxt").read_text() + (
        'model_warmup [ { name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 4 ] '
        'input_data_file: "f" } } } ]\n')
    (folder / "config.pbtxt").write_text(config)
    (folder / "warmup").mkdir()
    os.mkfifo(folder / "warmup" / "f")
    running = start_server(server_config(root))
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            index = {m.name: m for m in stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10).models}
            assert index["doubler"].state == "UNAVAILABLE" and "f is not a regular file" in index["doubler"].reason
            assert str(tmp_path) not in index["doubler"].reason
    finally:
        running.stop()



def test_a_version_policy_selecting_more_versions_than_the_bound_is_refused(tmp_path):
    from serving.limits import MAX_VERSIONS

    root = tmp_path / "repo"
    folder = write_model(root, "doubler")
    for version in range(2, MAX_VERSIONS + 2):
        (folder / str(version)).mkdir()
        os.link(folder / "1" / "model.onnx", folder / str(version) / "model.onnx")
    config = (folder / "config.pbtxt").read_text()
    (folder / "config.pbtxt").write_text(config + "version_policy { all { } }\n")
    error = Repository(root).read("doubler").error
    assert f"version_policy selects {MAX_VERSIONS + 1} versions; this server loads at most {MAX_VERSIONS}" in error
    (folder / "config.pbtxt").write_text(config + "version_policy { latest { num_versions: 3 } }\n")
    assert sorted(Repository(root).read("doubler").versions) == [MAX_VERSIONS - 1, MAX_VERSIONS, MAX_VERSIONS + 1]


def loop_graph(steps: int = 10**15):
    """x [1,4] -> y = x, through a Loop of `steps` identity steps: a graph whose run never ends."""
    from onnx import TensorProto as T
    from onnx import helper as h

    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Identity", ["v_in"], ["v_out"])], "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("v_in", T.FLOAT, ["N", 4])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, ["N", 4])])
    m, c = h.make_tensor("M", T.INT64, [], [steps]), h.make_tensor("C", T.BOOL, [], [True])
    return h.make_graph([h.make_node("Loop", ["M", "C", "x"], ["y"], body=body)], "loop",
                        [h.make_tensor_value_info("x", T.FLOAT, ["N", 4])], [h.make_tensor_value_info("y", T.FLOAT, ["N", 4])], [m, c])


def test_a_warm_up_that_never_ends_is_stopped_and_the_rest_loads(tmp_path, monkeypatch):
    import time

    from serving import sessions

    monkeypatch.setattr(sessions, "WARM_UP_SECONDS", 1.0)
    root = tmp_path / "repo"
    write_model(root, "doubler")
    write_model(root, "endless", graph=loop_graph, config='name: "endless"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
                'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\noutput [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')
    started = time.monotonic()
    running = start_server(server_config(root))
    try:
        assert time.monotonic() - started < 30
        with grpc.insecure_channel(running.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            index = {m.name: m for m in stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10).models}
            assert index["endless"].state == "UNAVAILABLE" and "took more than 1 s and was stopped" in index["endless"].reason
            assert index["doubler"].state == "READY"
    finally:
        running.stop()


def test_an_unchanged_config_is_parsed_once_however_often_it_is_polled(tmp_path, monkeypatch):
    from serving import repository as module

    calls = []
    monkeypatch.setattr(module, "parse_config", lambda text, source: calls.append(source) or module.ModelConfig(name="doubler"))
    root = tmp_path / "repo"
    folder = write_model(root, "doubler")
    folder.rename(root / "parsed_once")  # a name no other test's cache entry has
    repository = Repository(root)
    for _ in range(3):
        repository.read("parsed_once")
    assert len(calls) == 1
    (root / "parsed_once" / "config.pbtxt").write_text('name: "parsed_once"\n')
    repository.read("parsed_once")
    assert len(calls) == 2


def test_a_folder_whose_name_is_not_a_model_name_is_said_once_not_skipped_silently(tmp_path, caplog):
    root = tmp_path / "repo"
    write_model(root, "doubler")
    for name in ("my model", "bad\nname", ".staging"):
        (root / name / "1").mkdir(parents=True)
    repository = Repository(root)
    with caplog.at_level(logging.WARNING, logger="serving.repository"):
        assert repository.scan() == ["doubler"]
        assert repository.scan() == ["doubler"]
    lines = sorted(r.getMessage() for r in caplog.records)
    assert len(lines) == 2, lines  # one each; the hidden staging folder is export's, not a mistake
    assert all("is not served: a model name uses letters, digits" in line for line in lines)
    assert "'bad\\nname'" in lines[0] and "'my model'" in lines[1]
