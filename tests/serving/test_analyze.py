"""`dnnzoo analyze`: a real sweep (a fresh `dnnzoo serve` per plan) on a tiny model with a tiny grid.

Speed is not asserted here (benchmarks measure it): these tests check that every plan is measured and
shown, that the chart is a PNG, that `--write` replaces config.pbtxt with the chosen plan and keeps
the rest, and that a server started on the written config runs the plan analyze reported.
"""

from __future__ import annotations

import json
import os

import grpc
import pytest
from PIL import Image

from dnnzoo.cli import main as dnnzoo
from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from protos.config_text import parse_config
from protos.model_config_pb2 import ModelConfig, ModelInstanceGroup
from serving.analyze.grid import Plan, apply_plan, best, grid, plan_of, thread_splits
from tests.serving.builders import write_model
from tests.serving.conftest import server_config, start_server

FAST = ["--seconds", "0.3", "--warmup", "0.1"]


@pytest.fixture
def repository(tmp_path):
    write_model(tmp_path / "repo", "doubler")  # max_batch_size 8, two KIND_CPU instances, 2000 us delay
    return tmp_path / "repo"


def _read(path) -> ModelConfig:
    return parse_config(path.read_text(encoding="utf-8"))


def test_analyze_measures_every_plan_charts_them_and_writes_the_best(repository, tmp_path, capsys):
    config_path = repository / "doubler" / "config.pbtxt"
    before = _read(config_path)
    os.link(config_path, tmp_path / "old-config.pbtxt")  # a replaced file leaves this link on the old text
    old_text = config_path.read_text()
    chart, report = tmp_path / "chart.png", tmp_path / "analyze.json"

    code = dnnzoo(["analyze", "doubler", "--repository", str(repository), "--quick", "--concurrency", "2",
                   *FAST, "--chart", str(chart), "--json", str(report), "--write"])

    out = capsys.readouterr().out
    assert code == 0, out
    measured = json.loads(report.read_text())
    plans = [Plan(r["plan"]["instances"], r["plan"]["intra_op_threads"], r["plan"]["max_queue_delay_us"],
                  tuple(r["plan"]["preferred_batch_size"]), r["plan"]["side_by_side_threads"])
             for r in measured["results"]]
    assert plans == grid(before, 1, 2, measured["cores"], quick=True)
    assert all(r["items_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] for r in measured["results"])
    for plan in plans:  # one table row per plan, the chosen one marked
        assert any(line.split()[1:2] == [plan.label.split()[0]] for line in out.splitlines())
    chosen = measured["chosen"]
    fastest = max(measured["results"], key=lambda r: r["items_s"])
    assert chosen == fastest["plan"]  # no budget: the highest throughput
    assert [line for line in out.splitlines() if "<- chosen" in line][0].split()[1] == chosen["label"]

    with Image.open(chart) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300
        image.verify()

    after = _read(config_path)
    assert (tmp_path / "old-config.pbtxt").read_text() == old_text  # replaced, not written through
    assert not [p.name for p in config_path.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    if chosen["side_by_side_threads"] is None:  # a fixed plan: written as Triton reads it
        assert [(g.kind, g.count) for g in after.instance_group] == [(ModelInstanceGroup.KIND_CPU, chosen["instances"])]
        assert after.parameters["intra_op_thread_count"].string_value == str(chosen["intra_op_threads"])
    else:  # the adaptive plan: neither count nor threads, so the server adapts wherever it runs
        assert [(g.kind, g.count) for g in after.instance_group] == [(ModelInstanceGroup.KIND_CPU, 0)]
        assert "intra_op_thread_count" not in after.parameters
    assert after.dynamic_batching.max_queue_delay_microseconds == chosen["max_queue_delay_us"] == 0  # was 2000
    expected = apply_plan(before, plan_of(after))
    assert after == expected  # inputs, outputs, labels, everything else as it was

    running = start_server(server_config(repository))
    try:
        with grpc.insecure_channel(running.address) as channel:
            served = pb_grpc.GRPCInferenceServiceStub(channel).ModelConfig(pb.ModelConfigRequest(name="doubler")).config
    finally:
        running.stop()
    assert plan_of(served).as_dict() == chosen


def test_when_no_plan_meets_the_budget_nothing_is_written(repository, capsys):
    config_path = repository / "doubler" / "config.pbtxt"
    text = config_path.read_text()
    code = dnnzoo(["analyze", "doubler", "--repository", str(repository), "--instances", "1", "--threads", "1",
                   "--delays-us", "0", "--latency-budget-ms", "0.001", *FAST, "--chart",
                   str(repository.parent / "c.png"), "--write"])
    captured = capsys.readouterr()
    assert code == 1
    assert "no plan kept p99 within 0.001 ms" in captured.err and "nothing written" in captured.err
    row = [line.split() for line in captured.out.splitlines() if line.startswith("1 ")]
    assert row[0][1] == "1x1" and row[0][-1] == "no"  # over the budget, and not chosen
    assert config_path.read_text() == text


def test_url_measures_the_running_servers_own_plan(repository, tmp_path, capsys):
    running = start_server(server_config(repository))
    try:
        code = dnnzoo(["analyze", "doubler", "--url", running.address, *FAST, "--chart", str(tmp_path / "u.png"),
                       "--json", str(tmp_path / "u.json")])
    finally:
        running.stop()
    assert code == 0, capsys.readouterr()
    measured = json.loads((tmp_path / "u.json").read_text())
    on_disk = plan_of(_read(repository / "doubler" / "config.pbtxt"))  # what the server makes of it here
    assert on_disk.delay_us == 2000 and on_disk.instances == 2
    assert [r["plan"] for r in measured["results"]] == [on_disk.as_dict()]


@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "cannot analyze model 'nosuch': no model folder named 'nosuch' in the repository (models in"),
    (["doubler", "--repository", "missing-folder"], "model repository missing-folder does not exist"),
])
def test_a_bad_model_or_folder_is_one_clear_line(repository, argv, message, capsys, monkeypatch):
    monkeypatch.chdir(repository.parent)
    args = argv if "--repository" in argv else [*argv, "--repository", "repo"]
    assert dnnzoo(["analyze", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_url_cannot_try_or_write_plans(capsys):
    with pytest.raises(SystemExit) as exit_:
        dnnzoo(["analyze", "doubler", "--url", "127.0.0.1:1", "--write"])
    assert exit_.value.code == 2
    assert "--url measures the running server's plan only" in capsys.readouterr().err


def test_the_default_grid_fits_the_cores_and_the_load():
    config = parse_config('name: "m" max_batch_size: 32 input [{name: "x" data_type: TYPE_FP32 dims: [4]}]')
    for cores in (1, 2, 16):
        splits = thread_splits(cores, concurrency=64)
        default = (2, cores, cores // 2 if cores > 1 else None)
        assert splits[0] == default  # the server's own default plan (adaptive) is always a candidate
        assert all(i * t <= cores and s is None for i, t, s in splits[1:])
    assert max(i for i, _, _ in thread_splits(16, concurrency=4)) == 4  # no more instances than clients...
    assert (2, 16, 8) in thread_splits(16, concurrency=1)  # ...but the default plan is always there
    # b32 on max_batch_size 32 cannot merge: no delays; b1 x 16 can: delays, and 16 as a preferred size
    assert {p.delay_us for p in grid(config, 32, 2, 2)} == {0}
    merging = grid(config, 1, 16, 2)
    assert {p.delay_us for p in merging} == {0, 1000} and {p.preferred for p in merging} == {(), (16,)}
    assert not [p for p in merging if p.preferred and not p.delay_us]


def test_best_is_the_fastest_plan_within_the_budget():
    a, b, c = Plan(1, 2), Plan(2, 1), Plan(2, 2, 500)
    rows = [(a, {"items_s": 100, "p99_ms": 5}), (b, {"items_s": 300, "p99_ms": 20}), (c, {"items_s": 200, "p99_ms": 9})]
    assert best(rows, None)[0] == b
    assert best(rows, 10)[0] == c
    assert best(rows, 1) is None


def test_the_adaptive_plan_is_written_as_a_config_without_count_or_threads():
    """Written back, the adaptive plan is the plain config that asks for it, and reads back the same."""
    config = parse_config('name: "m" max_batch_size: 8 instance_group [{ kind: KIND_CPU count: 3 }] '
                          'parameters { key: "intra_op_thread_count" value { string_value: "1" } }')
    adaptive = thread_splits(4, concurrency=2)[0]
    plan = Plan(adaptive[0], adaptive[1], 0, (), adaptive[2])
    written = apply_plan(config, plan)
    assert [(g.kind, g.count) for g in written.instance_group] == [(ModelInstanceGroup.KIND_CPU, 0)]
    assert "intra_op_thread_count" not in written.parameters
    assert plan_of(written, cores=4) == plan and plan.label == "2x4/2"
    fixed = apply_plan(written, Plan(1, 4, 0))
    assert plan_of(fixed, cores=4) == Plan(1, 4, 0)  # and a fixed plan replaces it


def test_the_load_requests_decode_on_the_server_side_for_every_input_kind():
    from protos import grpc_service_pb2 as pb
    from serving.codec import decode_request
    from serving.loadgen import request_for

    config = parse_config('name: "m" max_batch_size: 8 input [{name: "a" data_type: TYPE_FP32 dims: [2, -1]},'
                          '{name: "b" data_type: TYPE_UINT8 dims: [3]}, {name: "c" data_type: TYPE_INT64 dims: [1]},'
                          '{name: "d" data_type: TYPE_STRING dims: [2]}]')
    decoded = {t.name: t.data for t in decode_request(pb.ModelInferRequest.FromString(request_for(config, 4))).inputs}
    assert {k: (v.shape, v.dtype.kind) for k, v in decoded.items()} == {
        "a": ((4, 2, 1), "f"), "b": ((4, 3), "u"), "c": ((4, 1), "i"), "d": ((4, 2), "O")}
    with pytest.raises(ValueError, match="above model 'm'"):
        request_for(config, 9)
    shaped = pb.ModelInferRequest.FromString(request_for(config, 2, shapes={"a": (2, 5)}))
    assert [list(tensor.shape) for tensor in shaped.inputs][0] == [2, 2, 5]  # --shape a:2,5
    with pytest.raises(ValueError, match=r"does not fit the config's dims \[2, -1\]"):
        request_for(config, 1, shapes={"a": (3, 5)})
    with pytest.raises(ValueError, match="has inputs"):
        request_for(config, 1, shapes={"nosuch": (1,)})


def test_a_variable_size_input_is_analyzed_at_the_shape_given(tmp_path, capsys):
    """A CNN with a dynamic height and width, whose 5x5 convolution has no padding: the default 1x1
    images fail every request; `--shape image:1,16,16` (perf_analyzer's spelling) measures it."""
    from tests.serving.builders import unpadded_conv_graph
    from tests.serving.test_config_fields import unpadded_conv_config

    write_model(tmp_path / "repo", "conv5", graph=lambda: unpadded_conv_graph(5), config=unpadded_conv_config("conv5"))
    running = start_server(server_config(tmp_path / "repo"))
    try:
        code = dnnzoo(["analyze", "conv5", "--url", running.address, *FAST, "--shape", "image:1,16,16",
                       "--chart", str(tmp_path / "c.png"), "--json", str(tmp_path / "c.json")])
        assert code == 0, capsys.readouterr()
        assert json.loads((tmp_path / "c.json").read_text())["results"][0]["items_s"] > 0
        assert dnnzoo(["analyze", "conv5", "--url", running.address, *FAST, "--shape", "image:16,16"]) == 2
        assert "does not fit the config's dims [1, -1, -1]" in capsys.readouterr().err
    finally:
        running.stop()
