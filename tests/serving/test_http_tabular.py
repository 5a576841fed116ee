"""POST /v1/predict (tabular models) against the real server on a tiny penguins model: JSON rows,
JSON CSV and a text/csv body answer as the gRPC TabularPrediction.Predict does, the OpenAPI
example runs, and bad rows, too many rows and unknown models get a short error with the right status."""

from __future__ import annotations

import json

import pytest

from serving.client import Client
from serving.http_openapi import schema
from tests.serving.rest_client import Http
from tests.serving.test_tasks_tabular import HEADER, MAX_ROWS, MODEL, ROW, served  # noqa: F401 - the fixture, trained once

OTHER = {**ROW, "island": "Dream", "sex": None}
CSV = f"{HEADER}\n" + "\n".join(",".join("" if v is None else str(v) for v in row.values()) for row in (ROW, OTHER)) + "\n"


@pytest.fixture(scope="module")
def http(served) -> Http:  # noqa: F811
    return Http(served.server.http_port)


@pytest.fixture(scope="module")
def expected(served):  # noqa: F811
    with Client(served.address, timeout=30) as client:
        answer = client.predict(MODEL, rows=[ROW, OTHER], top_k=2)
    return [(p.label, [(c.label, c.class_id, pytest.approx(c.score, abs=1e-6)) for c in p.classes]) for p in answer.predictions]


def ok(answer) -> dict:
    status, headers, body = answer
    assert status == 200, body[:500]
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def predictions(document) -> list:
    return [(p["label"], [(c["label"], c["class_id"], c["score"]) for c in p["classes"]]) for p in document["predictions"]]


def test_json_rows_json_csv_and_a_csv_body_answer_as_grpc_predict(http, expected):
    by_rows = ok(http.post("/v1/predict", {"model": MODEL, "rows": [ROW, OTHER], "top_k": 2}))
    assert (by_rows["model"], by_rows["kind"], by_rows["target"]) == (MODEL, "classification", "species")
    assert by_rows["model_version"] and predictions(by_rows) == expected
    assert predictions(ok(http.post("/v1/predict", {"csv": CSV, "top_k": 2}))) == expected  # the only tabular model
    bare = ok(http.post(f"/v1/predict?model={MODEL}&top_k=2", body=CSV.encode(), headers={"Content-Type": "text/csv"}))
    assert predictions(bare) == expected
    for ending in ("\r\n", "\r"):  # a spreadsheet's or an old Mac's line endings read the same
        other = ok(http.post(f"/v1/predict?model={MODEL}&top_k=2", body=CSV.replace("\n", ending).encode(), headers={"Content-Type": "text/csv"}))
        assert predictions(other) == expected


def test_the_openapi_example_runs_on_the_tiny_model(http):
    example = schema()["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    document = ok(http.post("/v1/predict", example))
    assert len(document["predictions"]) == len(example["rows"])
    assert all(len(p["classes"]) == example["top_k"] for p in document["predictions"])


@pytest.mark.parametrize(("body", "headers", "status", "words"), [
    ({"rows": [ROW, {**ROW, "wingspan": 3}]}, {}, 400, "row 1: unknown column 'wingspan'"),
    ({"rows": [ROW, {k: v for k, v in ROW.items() if k != "island"}]}, {}, 400, "row 1: no value for column 'island'"),
    ({"rows": [{**ROW, "body_mass_g": "heavy"}]}, {}, 400, "row 0: column 'body_mass_g' is numeric; got 'heavy'"),
    ({"rows": [{**ROW, "sex": ["male"]}]}, {}, 400, "row 0: column 'sex' must be a string, a number or null"),
    ({"rows": [{**ROW, "body_mass_g": 1e308}]}, {}, 400, "row 0: column 'body_mass_g' holds '1e+308', outside float32's finite range"),
    ({"rows": [ROW, {**ROW, "year": 10**400}]}, {}, 400, "row 1: column 'year' holds"),
    (f"{HEADER}\n" + ",".join("inf" if k == "bill_depth_mm" else str(v) for k, v in ROW.items()), {"Content-Type": "text/csv"}, 400,
     "column 'bill_depth_mm' holds 'inf', outside float32's finite range"),
    ({"rows": [ROW, 3]}, {}, 400, "'rows': item 1 is not an object"),
    ({"rows": [ROW], "csv": CSV}, {}, 400, "not both"),
    ({"rows": []}, {}, 400, "no rows"),
    ({"rows": [ROW], "top_k": 0}, {}, 400, "top_k"),
    (b"island,sex\nBiscoe", {"Content-Type": "text/csv"}, 400, "CSV line 2 has 1 cells"),
    (b"\xff\xfe", {"Content-Type": "text/csv"}, 400, "not UTF-8"),
    (b'island,sex\n"Biscoe' + b"x" * 200_000, {"Content-Type": "text/csv"}, 400, "cannot be read at line 2: field larger than field limit"),
    (b"island,island\nBiscoe,Dream", {"Content-Type": "text/csv"}, 400, "the CSV header names 'island' more than once"),
    ({"rows": [ROW] * (MAX_ROWS + 1)}, {}, 413, f"{MAX_ROWS + 1} rows in one call; the server's cap is {MAX_ROWS} (--max-rows)"),
    (f"{HEADER}\n" + "\n".join([",".join(map(str, ROW.values()))] * (MAX_ROWS + 1)), {"Content-Type": "text/csv"}, 413, "--max-rows"),
    ({"model": "nope", "rows": [ROW]}, {}, 404, "nope"),
])  # fmt: skip
def test_bad_requests_get_a_short_error_naming_the_fault(http, body, headers, status, words):
    raw = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    assert words in http.error(status, http.post("/v1/predict?model=" + MODEL if headers else "/v1/predict", body=raw,
                                                 headers={"Content-Type": "application/json", **headers}))


def test_columns_over_rest_answer_as_grpc_does(http, served):  # noqa: F811
    with Client(served.address, timeout=30) as client:
        grpc_answer = client.columns(MODEL)
    document = ok(http.post("/v1/columns", {"model": MODEL}))
    assert ok(http.post("/v1/columns", {})) == document  # the only tabular model
    assert [c["name"] for c in document["columns"]] == [c.name for c in grpc_answer.columns]
    for column, expected in zip(document["columns"], grpc_answer.columns):
        assert column["numeric"] == expected.numeric
        if expected.numeric:
            assert column["mean"] == pytest.approx(expected.mean) and column["std"] == pytest.approx(expected.std)
        else:
            assert column["values"] == list(expected.values)
    assert document["missing_tokens"] == list(grpc_answer.missing_tokens)
    assert "no_such" in http.error(404, http.post("/v1/columns", {"model": "no_such"}))
