"""`dnnzoo predict --model penguins_tabular --csv rows.csv | --row island=Biscoe,sex=male,... [--top-k K] [--json]`.

A CSV file is sent as it is (the server parses it against the model's columns); `--row` cells are
sent as text, which the server reads as a number for a numeric column, so both paths give the
server's own errors for an unknown, a missing or a mistyped column.
"""

from __future__ import annotations

from pathlib import Path

from serving.commands import common


def parse_row(text: str) -> dict[str, str]:
    """`k=v,k2=v2` -> {k: v}; an empty value is a missing cell."""
    row: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--row: expected column=value pairs separated by commas, got {item!r}")
        if name.strip() in row:
            raise ValueError(f"--row: column {name.strip()!r} given twice")
        row[name.strip()] = value.strip()
    return row


def main(argv: list[str], prog: str = "dnnzoo predict") -> int:
    p = common.parser(prog, "Predict classes or values for table rows with a served tabular model.", "penguins_tabular")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, metavar="FILE", help="a CSV file with a header row naming the model's columns")
    source.add_argument("--row", action="append", metavar="K=V,...", help="one row as column=value pairs (repeat for more rows)")
    p.add_argument("--top-k", type=int, help="classes shown per row (default 3)")
    args = p.parse_args(argv)

    def body() -> int:
        with common.client(args) as client:
            if args.csv is not None:
                reply = client.predict(args.model, csv=args.csv.read_text(encoding="utf-8-sig"), top_k=args.top_k)
            else:
                reply = client.predict(args.model, rows=[parse_row(r) for r in args.row], top_k=args.top_k)
        if reply.kind == "classification":
            k = args.top_k or 3
            data = [{"label": p.label, "classes": [{"label": c.label, "score": c.score} for c in p.classes]} for p in reply.predictions]
            rows = [[i, p.label, "  ".join(f"{c.label} {c.score:.3f}" for c in p.classes[:k])] for i, p in enumerate(reply.predictions)]
            header = ["row", reply.target or "label", "probabilities"]
        else:
            data = [{"value": p.value} for p in reply.predictions]
            rows = [[i, f"{p.value:.6g}"] for i, p in enumerate(reply.predictions)]
            header = ["row", reply.target or "value"]
        common.emit(args, {"model": reply.model, "version": reply.model_version, "kind": reply.kind, "target": reply.target,
                           "predictions": data}, lambda: common.table(rows, header))  # fmt: skip
        return 0

    return common.run(prog, body)
