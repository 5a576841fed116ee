"""`dnnzoo forecast --values v1,v2,… | --csv FILE --column C [--horizon H] [--plot OUT.png]`.

The plot is drawn with Pillow, so the client needs nothing beyond the serving dependencies.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from serving.commands import common


def _values(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise ValueError(f"--values: {exc}") from None


def _column(path: Path, column: str) -> list[float]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ValueError(f"{path}: no column {column!r} (columns: {', '.join(reader.fieldnames or [])})")
        values = []
        for line, row in enumerate(reader, start=2):
            text = (row.get(column) or "").strip()
            if not text:
                continue
            try:
                values.append(float(text))
            except ValueError:
                raise ValueError(f"{path}, line {line}: {text!r} in column {column!r} is not a number") from None
    return values


def main(argv: list[str], prog: str = "dnnzoo forecast") -> int:
    p = common.parser(prog, "Forecast the next values of a series with a served sequence model.", "waves_sequence")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--values", help="comma-separated observations, oldest first")
    source.add_argument("--csv", type=Path, metavar="FILE", help="a CSV file with a header row (use with --column)")
    p.add_argument("--column", help="the CSV column holding the series")
    p.add_argument("--horizon", type=int, help="values to forecast (default: the model's trained horizon)")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="draw the series and its forecast")
    args = p.parse_args(argv)
    if args.csv and not args.column:
        p.error("--csv needs --column")

    def body() -> int:
        series = _values(args.values) if args.values is not None else _column(args.csv, args.column)
        bad = [v for v in series if not math.isfinite(v)]
        if bad:
            raise ValueError(f"the series holds a value that is not finite ({bad[0]})")
        with common.client(args) as client:
            reply = client.forecast(args.model, [series], args.horizon)
        values = list(reply.forecasts[0].values)
        if args.plot:
            from serving.commands import drawing

            drawing.plot(series, values).save(args.plot)
            common.wrote(args.plot)
        data = {"horizon": reply.horizon, "trained_horizon": reply.trained_horizon, "fed_back": reply.fed_back, "forecast": values}
        note = f"\n(beyond the trained horizon of {reply.trained_horizon}: predictions were fed back)" if reply.fed_back else ""
        rows = [[f"t+{i + 1}", f"{v:.5g}"] for i, v in enumerate(values)]
        common.emit(args, data, lambda: common.table(rows, ["step", "forecast"]) + note)
        return 0

    return common.run(prog, body)
