"""`dnnzoo classify IMAGE… [--top-k K]`: the top-k classes of each image from the server."""

from __future__ import annotations

from pathlib import Path

from serving.commands import common


def main(argv: list[str], prog: str = "dnnzoo classify") -> int:
    p = common.parser(prog, "Classify images (PNG, JPEG, any size) with a served classifier.", "digits_classifier")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--top-k", type=int, help="classes per image (default 5, at most the model's classes)")
    args = p.parse_args(argv)

    def body() -> int:
        with common.client(args) as client:
            reply = client.classify(args.model, [path.read_bytes() for path in args.images], args.top_k)
        data = [
            {"image": str(path), "classes": [{"label": c.label, "class_id": c.class_id, "score": c.score} for c in result.classes]}
            for path, result in zip(args.images, reply.results)
        ]
        rows = [[item["image"], rank + 1, c["label"], c["class_id"], f"{c['score']:.4f}"] for item in data for rank, c in enumerate(item["classes"])]
        common.emit(args, data, lambda: common.table(rows, ["image", "rank", "label", "class", "score"]))
        return 0

    return common.run(prog, body)
