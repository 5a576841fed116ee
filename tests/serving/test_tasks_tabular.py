"""The tabular model served: the Open Inference Protocol with BYTES inputs, TabularPrediction.Predict with
row maps and CSV, `dnnzoo predict`, and clear errors for unknown, missing and mistyped columns."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from protos import grpc_service_pb2 as oip
from serving.client import Client
from serving.commands import predict as predict_command

MODEL = "penguins_tabular"
NUMBERS = {"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181.0, "body_mass_g": 3750.0, "year": 2007.0}
ROW = {**NUMBERS, "island": "Torgersen", "sex": "male"}
HEADER = ",".join(ROW)
MAX_ROWS = 5  # the served fixture's --max-rows


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import torch

    from export.pipeline import export_run
    from tests.serving.conftest import server_config, start_server
    from training import tabular
    from training.config import TrainConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tabular-serving")
    tabular.train(TrainConfig(family="tabular", profile="tiny", out=root / "run", progress=False), tabular.Options())
    export_run(root / "run", root / "repo")
    running = start_server(server_config(root / "repo", providers="cpu", max_rows=MAX_ROWS))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(served):
    with Client(served.address, timeout=30) as c:
        yield c


def _oip(row: dict) -> dict[str, np.ndarray]:
    return {k: (np.array([[v]], np.float32) if k in NUMBERS else np.array([[v]], dtype=object)) for k, v in row.items()}


def test_the_inference_protocol_takes_bytes_columns_and_answers_probabilities_and_a_label(client):
    out = client.infer(MODEL, _oip(ROW))
    assert out["probabilities"].shape == (1, 3) and out["probabilities"].sum() == pytest.approx(1, abs=1e-5)
    labels = ["Adelie", "Chinstrap", "Gentoo"]
    assert out["label"][0, 0].decode() == labels[int(out["probabilities"].argmax())]
    unseen = client.infer(MODEL, _oip({**ROW, "island": "DESERT", "sex": "", "bill_depth_mm": float("nan")}))
    assert np.isfinite(unseen["probabilities"]).all()


def test_columns_describe_the_models_inputs_with_what_training_saw(client, served):
    """TabularPrediction.Columns (what the console's form is built from): the model's columns in its
    input order; the text columns' values are the table's, numeric means near the table's."""
    import csv
    import io
    import statistics
    from importlib import resources

    table = list(csv.DictReader(io.StringIO(resources.files("palmerpenguins").joinpath("data", "penguins.csv").read_text())))
    found = client.columns(MODEL)
    config = client.inference.ModelMetadata(oip.ModelMetadataRequest(name=MODEL))
    assert [c.name for c in found.columns] == [t.name for t in config.inputs]
    assert found.kind == "classification" and found.target == "species" and "NA" in found.missing_tokens
    by_name = {c.name: c for c in found.columns}
    for name in ("island", "sex"):
        assert not by_name[name].numeric
        assert set(by_name[name].values) == {row[name] for row in table if row[name] != "NA"}
    for name in NUMBERS:
        column = by_name[name]
        values = [float(row[name]) for row in table if row[name] != "NA"]
        assert column.numeric and not column.values
        assert abs(column.mean - statistics.mean(values)) < 0.25 * statistics.stdev(values)  # a training split's mean
        assert 0.5 < column.std / statistics.stdev(values) < 1.5
    with pytest.raises(grpc.RpcError) as error:
        client.columns("no_such_model")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("schema", ['{"numeric": [{"name": "year", "mean": "abc", "std": 1}]}', '{"categorical": 5}',
                                    '{"missing_tokens": "NA"}', '[1, 2]', "not json"])
def test_a_schema_file_that_is_not_what_export_writes_is_refused_not_a_500(served, tmp_path, schema):
    """The model folder may be hostile: its schema file is checked when read, for Columns and Predict."""
    import shutil

    from export.graphs.tabular import SCHEMA_FILE
    from tests.serving.conftest import server_config, start_server

    folder = tmp_path / "repo" / MODEL
    shutil.copytree(served.server.models.repository.root / MODEL, folder)
    (folder / SCHEMA_FILE).write_text(schema)
    running = start_server(server_config(tmp_path / "repo", providers="cpu"))
    try:
        with Client(running.address, timeout=30) as hostile:
            for call in (lambda: hostile.columns(MODEL), lambda: hostile.predict(MODEL, rows=[ROW])):
                with pytest.raises(grpc.RpcError) as error:
                    call()
                assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "is not the JSON export writes" in error.value.details()
    finally:
        running.stop()


def test_predict_rows_and_csv_agree_with_the_inference_protocol(client):
    typed = client.predict(MODEL, rows=[ROW, {**ROW, "island": "DESERT", "sex": None}])
    assert typed.kind == "classification" and typed.target == "species" and len(typed.predictions) == 2
    first = typed.predictions[0]
    assert [c.label for c in first.classes][0] == first.label and len(first.classes) == 3
    oip = client.infer(MODEL, _oip(ROW))["probabilities"][0]
    assert {c.label: c.score for c in first.classes} == pytest.approx(dict(zip(["Adelie", "Chinstrap", "Gentoo"], oip.tolist())), abs=1e-6)
    csv = f"{HEADER}\n" + ",".join(str(v) for v in ROW.values()) + "\n" + ",".join(str(v) for v in {**ROW, "island": "DESERT", "sex": "NA"}.values())
    by_csv = client.predict(MODEL, csv=csv, top_k=1)
    assert [p.label for p in by_csv.predictions] == [p.label for p in typed.predictions]
    assert [len(p.classes) for p in by_csv.predictions] == [1, 1]
    assert by_csv.predictions[1].classes[0].score == pytest.approx(typed.predictions[1].classes[0].score, abs=1e-6)


@pytest.mark.parametrize(
    "row, message",
    [
        ({**ROW, "wingspan": 3}, "unknown column 'wingspan'"),
        ({k: v for k, v in ROW.items() if k != "island"}, "no value for column 'island'"),
        ({**ROW, "body_mass_g": "heavy"}, "column 'body_mass_g' is numeric; got 'heavy'"),
    ],
)
def test_bad_rows_are_invalid_argument_naming_the_column(client, row, message):
    with pytest.raises(grpc.RpcError) as raised:
        client.predict(MODEL, rows=[ROW, row])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details() and "row 1" in raised.value.details() and len(raised.value.details()) < 1024


def test_the_wrong_model_kind_and_an_empty_call_are_refused(client):
    with pytest.raises(grpc.RpcError) as raised:
        client.predict(MODEL, rows=[])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no rows" in raised.value.details()


def test_rows_over_the_cap_are_refused_naming_the_flag_and_the_cap_itself_is_served(client):
    assert len(client.predict(MODEL, rows=[ROW] * MAX_ROWS).predictions) == MAX_ROWS
    csv = f"{HEADER}\n" + "\n".join([",".join(str(v) for v in ROW.values())] * (MAX_ROWS + 1))
    for call in (lambda: client.predict(MODEL, rows=[ROW] * (MAX_ROWS + 1)), lambda: client.predict(MODEL, csv=csv)):
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"{MAX_ROWS + 1} rows in one call" in raised.value.details() and "--max-rows" in raised.value.details()


def test_the_cli_prints_a_table_json_and_clear_errors(served, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    rows.write_text(f"{HEADER}\n" + ",".join(str(v) for v in ROW.values()) + "\n")
    server = ["--server", served.address]
    assert predict_command.main([*server, "--csv", str(rows)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["row", "species", "probabilities"] and "Adelie" in out
    row_text = ",".join(f"{k}={v}" for k, v in ROW.items())
    assert predict_command.main([*server, "--row", row_text, "--row", row_text.replace("Torgersen", "DESERT"), "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "classification" and len(data["predictions"]) == 2
    assert predict_command.main([*server, "--row", row_text + ",colour=blue"]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert predict_command.main([*server, "--row", "island"]) == 2
    assert "column=value" in capsys.readouterr().err
