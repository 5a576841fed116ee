"""The sequence family: the book's series, windows from CSV columns, streaming parity, runs and the quality bar."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnzoo.errors import UserError
from training.runs import read_metrics
from training import checkpoint
from training import sequence
from training import series_baselines
from training.cli import main as train_main
from training.config import TrainConfig
from training.data import series as series_data


def book_formula(n: int, steps: int) -> np.ndarray:
    """Chapter 15's generator, written out again from the issue's text."""
    np.random.seed(42)
    f1, f2, o1, o2 = np.random.rand(4, n, 1)
    t = np.linspace(0, 1, steps)
    s = 0.5 * np.sin((t - o1) * (f1 * 10 + 10)) + 0.2 * np.sin((t - o2) * (f2 * 20 + 20)) + 0.1 * (np.random.rand(n, steps) - 0.5)
    return s[..., None].astype(np.float32)


def test_generated_series_follow_the_book_formula():
    got = series_data.generate_time_series(7, 51, seed=42)
    assert got.shape == (7, 51, 1) and got.dtype == np.float32
    np.testing.assert_array_equal(got, book_formula(7, 51))


def test_book_datasets_split_and_first_values():
    data = series_data.book_series()
    assert [len(s) for s in (data.next_train, data.next_valid, data.next_test)] == [7000, 2000, 1000]
    assert data.next_train.series.shape[1:] == (51, 1) and data.ahead_valid.series.shape[1:] == (60, 1)
    np.testing.assert_allclose(data.next_train.series[0, :3, 0], [0.4596948, 0.31486678, 0.12497123], atol=1e-6)
    np.testing.assert_array_equal(data.ahead_test.series, book_formula(10_000, 60)[9000:])
    # The book's naive baselines on the validation rows: repeat the last value.
    baseline = series_baselines.scores(data, 10, series_baselines.AR(0.0, np.ones(1)))["last_value"]
    assert baseline["mse_next"] == pytest.approx(0.0202, abs=2e-4)
    assert baseline["mse_10"] == pytest.approx(0.257, abs=2e-3)


def test_seed_draws_other_series_and_run_data_follow_it():
    book, other = series_data.book_series(100, seed=42), series_data.book_series(100, seed=7)
    assert not np.allclose(book.next_train.series, other.next_train.series)
    np.testing.assert_array_equal(other.ahead_valid.series, series_data.generate_time_series(100, 60, seed=7)[70:90])
    config = TrainConfig(family="sequence", seed=7)
    loaded = sequence.load_data(config, sequence.Options(series=100, window=50))
    np.testing.assert_array_equal(loaded.next_test.series, other.next_test.series)


def ar_series(n: int, seed: int = 0) -> np.ndarray:
    """x_t = 10 + 1.6 (x_{t-1} - 10) - 0.9 (x_{t-2} - 10) + N(0, 1): a noisy cycle of about 11 steps, like sunspots.

    The best one-step forecast errs by the noise (MSE 1); repeating the last value by about 5.5.
    """
    rng = np.random.default_rng(seed)
    x = np.full(n + 100, 10.0)
    for t in range(2, len(x)):
        x[t] = 10 + 1.6 * (x[t - 1] - 10) - 0.9 * (x[t - 2] - 10) + rng.normal()
    return x[100:]


def test_ar_baseline_recovers_a_known_process_and_iterates_its_forecasts():
    ar = series_baselines.fit_ar((ar_series(5000)[None, :],), max_order=8)
    assert ar.order == 2
    np.testing.assert_allclose(ar.coef, [1.6, -0.9], atol=0.03)
    assert ar.intercept == pytest.approx(10 * (1 - 1.6 + 0.9), abs=0.3)
    halving = series_baselines.AR(1.0, np.array([0.5]))
    np.testing.assert_allclose(halving.forecast(np.array([[3.0, 8.0]]), 3), [[5.0, 3.5, 2.75]])
    np.testing.assert_array_equal(series_baselines.last_value(np.array([[1.0, 2.0]]), 3), [[2.0, 2.0, 2.0]])


def test_seasonal_naive_comes_in_only_where_a_period_is_evident():
    rng = np.random.default_rng(0)
    monthly = 5 + np.sin(2 * np.pi * np.arange(400) / 12) + 0.1 * rng.normal(size=400)
    assert series_baselines.season((monthly[None, :],), max_period=20) == 12
    assert series_baselines.season((rng.normal(size=(1, 400)),), max_period=20) is None
    assert series_baselines.season(series_data.book_series(1000).train_runs, max_period=50) is None  # random frequencies
    np.testing.assert_array_equal(series_baselines.seasonal_naive(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]), 2, 3), [[4.0, 5.0, 4.0]])


def test_seq2seq_targets_are_the_following_values_masked_at_the_end():
    series = np.arange(8, dtype=np.float32)[None, :, None]  # one series 0..7
    x, y, m = sequence.targets(series, window=5, horizon=3, seq2seq=True)
    assert x[0, :, 0].tolist() == [0, 1, 2, 3, 4]
    assert y[0, 0].tolist() == [1, 2, 3] and y[0, 4].tolist() == [5, 6, 7]
    assert m.sum() == 15  # every target exists: 4 + 3 + 1 = 8 > 7 only past the window
    x, y, m = sequence.targets(series[:, :6], window=5, horizon=3, seq2seq=True)
    assert m[0, 4].tolist() == [1, 0, 0] and m[0, 3].tolist() == [1, 1, 0]
    _, _, m = sequence.targets(series, window=5, horizon=3, seq2seq=False)
    assert m[0, :4].sum() == 0 and m[0, 4].sum() == 3


@pytest.mark.parametrize("cell, ar_order", [("lstm", 0), ("gru", 0), ("rnn", 0), ("lstm", 5), ("gru", 5)])
def test_step_by_step_equals_forward_on_every_prefix(cell, ar_order):
    torch.manual_seed(0)
    model = sequence.build_model(cell=cell, hidden_size=6, num_layers=2, horizon=10, mean=0.3, std=2.0, residual=bool(ar_order),
                                 ar_order=ar_order).eval()  # fmt: skip
    if ar_order:
        torch.nn.init.normal_(model.ar.weight)  # it starts at zero: give the linear path something to say
    series = torch.randn(3, 12, 1)
    h, c = model.initial_state(3)
    past = torch.zeros(3, ar_order)
    assert h.shape == (3, 2, 6)
    with torch.no_grad():
        for t in range(12):  # prefixes shorter than ar_order too: both pad with the training mean
            nxt, ahead, h, c, past = model.step(series[:, t], h, c, past)
            want_next, want_ahead = model(series[:, : t + 1])
            torch.testing.assert_close(nxt, want_next, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ahead, want_ahead, atol=1e-5, rtol=1e-5)
    assert nxt.shape == (3, 1) and ahead.shape == (3, 10)
    torch.testing.assert_close(ahead[:, :1], nxt)


def test_step_ignores_c_for_cells_without_one():
    model = sequence.build_model(cell="gru", hidden_size=4, num_layers=1).eval()
    h, _ = model.initial_state(2)
    marker = torch.full((2, 1, 4), 7.0)
    with torch.no_grad():
        *_, c, past = model.step(torch.zeros(2, 1), h, marker)
        a = model.step(torch.zeros(2, 1), h, None)
    assert c is marker and a[3] is None and past is None


def test_the_linear_path_is_a_line_through_the_last_inputs_and_starts_silent():
    torch.manual_seed(0)
    model = sequence.build_model(cell="gru", hidden_size=4, num_layers=1, ar_order=3, residual=True, mean=1.0, std=2.0).eval()
    series = torch.randn(2, 8, 1)
    without = sequence.build_model(cell="gru", hidden_size=4, num_layers=1, residual=True, mean=1.0, std=2.0).eval()
    without.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("ar.")})
    with torch.no_grad():
        torch.testing.assert_close(model(series)[1], without(series)[1])  # zero-initialised: the network alone
        model.ar.weight.copy_(torch.arange(30.0).reshape(10, 3) / 30)
        model.ar.bias.fill_(0.5)
        z = (series[:, -3:, 0] - 1.0) / 2.0  # the last 3 inputs, normalised, oldest first
        line = (z @ model.ar.weight.T + 0.5) * 2.0
        torch.testing.assert_close(model(series)[1], without(series)[1] + line)


def test_ar_order_beyond_the_window_is_refused(tmp_path):
    config = TrainConfig(family="sequence", profile="tiny", out=tmp_path / "run", progress=False)
    with pytest.raises(UserError, match="--ar-order must be between 0"):
        sequence.train(config, sequence.Options(ar_order=21))


def write_csv(path, values, column="load"):
    path.write_text("time," + column + "\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    return path


def test_csv_column_is_cut_into_windows_split_in_time_order(tmp_path):
    values = np.arange(1000, dtype=np.float32)
    data = series_data.csv_series(write_csv(tmp_path / "s.csv", values), "load", window=20)
    assert data.ahead_train.series.shape == (700 - 29, 30, 1)
    np.testing.assert_array_equal(data.ahead_train.series[3, :, 0], np.arange(3, 33))
    # Validation and test windows forecast every value of their stretch from the 20 values before it.
    assert data.next_valid.series.shape == (200, 21, 1) and data.ahead_test.series.shape == (100 - 9, 30, 1)
    np.testing.assert_array_equal(data.next_valid.series[0, :, 0], np.arange(680, 701))
    np.testing.assert_array_equal(data.next_valid.series[:, -1, 0], np.arange(700, 900))
    assert data.ahead_train.series.max() < data.ahead_valid.series[:, 20:].min()
    assert data.ahead_valid.series.max() < data.ahead_test.series[:, 20:].min()
    np.testing.assert_array_equal(data.train_values(), values[:700])


@pytest.mark.parametrize(
    "content, column, message",
    [
        (None, "load", "no such file"),
        ("time,load\n" + "1,2\n" * 700, "price", "no column 'price'; the columns are: time, load"),
        ("time,load\n" + "1,2\n" * 300 + "1,high\n" + "1,2\n" * 400, "load", "line 302: column 'load' holds 'high'"),
        ("time,load\n" + "1,2\n" * 50, "load", "has 50 values; at least 180"),
        ("", "load", "empty CSV"),
        ("time,load\n1,2\n", None, "--column"),
    ],
)
def test_bad_csv_input_names_the_problem(tmp_path, content, column, message):
    path = tmp_path / "s.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        series_data.csv_series(path, column, window=50)


def rebuild(run_dir):
    ckpt = checkpoint.load(run_dir, family="sequence")
    model = sequence.build_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def test_tiny_profile_writes_a_run_that_rebuilds(tmp_path):
    record = sequence.train(TrainConfig(family="sequence", profile="tiny", out=tmp_path / "run", progress=False), sequence.Options())
    for name in ("checkpoint.pt", "metrics.json", "curves.png", "forecasts.png"):
        assert (tmp_path / "run" / name).is_file()
    final = record["final"]
    # The run's baselines are the ones this test computes on the validation windows of the same data.
    data = series_data.book_series(300, window=20, seed=42)
    last = data.ahead_valid.series[:, 19:20, 0]
    by_name = {(r["baseline"], r["metric"]): r for r in final["baselines"]}
    assert by_name["last_value", "val_mse_10"]["value"] == pytest.approx(np.mean((data.ahead_valid.series[:, 20:, 0] - last) ** 2), rel=1e-5)
    assert by_name["last_value", "val_mse_next"]["model"] == pytest.approx(final["val_mse_next"])
    assert len(by_name) == 4
    model, ckpt = rebuild(tmp_path / "run")
    extra = ckpt["extra"]
    assert extra["window"] == 20 and extra["horizon"] == 10 and extra["cell"] == "lstm"
    assert set(extra["normalization"]) == {"mean", "std"} and extra["state_shape"] == [1, 8]
    with torch.no_grad():
        nxt, ahead = model(torch.zeros(2, extra["window"], 1))
    assert nxt.shape == (2, 1) and ahead.shape == (2, 10)
    assert record["history"][-1]["step"] == 14  # the tiny profile's budget


def test_cli_trains_a_gru_on_a_csv_column_and_rejects_a_missing_one(tmp_path, capsys):
    t = np.arange(700)
    path = write_csv(tmp_path / "s.csv", 100 + 20 * np.sin(t / 5.0))
    out = tmp_path / "run"
    argv = ["sequence", "--profile", "tiny", "--data", str(path), "--column", "load", "--cell", "gru", "--out", str(out), "--no-progress"]
    assert train_main(argv) == 0
    model, ckpt = rebuild(out)
    assert ckpt["extra"]["cell"] == "gru" and ckpt["extra"]["normalization"]["mean"] == pytest.approx(100, abs=2)
    order = ckpt["model_args"]["ar_order"]  # a CSV's defaults: a change from the last value, and a line of the AR baseline's order
    assert order == read_metrics(out)["final"]["ar_order"] >= 1 and ckpt["model_args"]["residual"]
    from export.pipeline import export_run  # the step graph carries the line's inputs as state; export checks it against step()
    import onnxruntime as ort
    from protos import config_text

    export_run(out, tmp_path / "repo", name="s")
    step = config_text.parse_config((tmp_path / "repo" / "s_step" / "config.pbtxt").read_text(), source="s_step").parameters
    assert step["dnnzoo.state.inputs"].string_value == "h,past" and step["dnnzoo.state.shape.past"].string_value == str(order)
    # A stream from zero state of the declared shapes, as the server opens one, forecasts what forward does.
    session = ort.InferenceSession(str(tmp_path / "repo" / "s_step" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    shape = [int(d) for d in step["dnnzoo.state.shape"].string_value.split(",")]
    state = {"h": np.zeros((1, *shape), np.float32), "past": np.zeros((1, order), np.float32)}
    values = (100 + 20 * np.sin(np.arange(30) / 5.0)).astype(np.float32)
    for v in values:
        nxt, _, *after = session.run(None, {"value": np.array([[v]], np.float32), **state})
        state = dict(zip(("h", "past"), after))
    with torch.no_grad():
        want = model(torch.from_numpy(values)[None, :, None])[0]
    np.testing.assert_allclose(nxt, want.numpy(), rtol=1e-4, atol=1e-3)
    assert train_main(argv[:5] + ["--column", "nope", "--out", str(tmp_path / "bad")]) == 2
    assert "no column 'nope'" in capsys.readouterr().err


def test_quick_profile_on_a_small_csv_beats_the_last_value(tmp_path, capsys):
    """300 values, as a user's small file: the step budget must train it as long as the embedded data."""
    values = ar_series(300, seed=1)
    out = tmp_path / "run"
    argv = ["sequence", "--data", str(write_csv(tmp_path / "s.csv", values)), "--column", "load", "--window", "20", "--out", str(out), "--no-progress"]
    assert train_main(argv) == 0
    record = read_metrics(out)
    targets, last = values[210:270], values[209:269]  # the validation stretch (70 % to 90 %) and the value before each
    naive = float(np.mean((targets - last) ** 2))
    assert record["final"]["val_mse_next"] < 0.75 * naive, (record["final"], naive)  # 0.17-0.59 of it over 4 draws and 3 seeds
    assert record["history"][-1]["step"] >= 300
    assert "does NOT beat the last_value" not in capsys.readouterr().err


@pytest.mark.slow
def test_quick_profile_meets_the_bars(quick_build):
    """Scored on the test rows: early stopping selects the weights on the validation rows."""
    final = read_metrics(quick_build.run("sequence"))["final"]
    assert final["test_mse_next"] <= 0.0029, final
    assert final["test_mse_10"] <= 0.0060, final
    assert all(record["beats"] for record in final["baselines"]), final["baselines"]