"""`dnnzoo detect IMAGE… [--draw OUT.png]`: objects found in each image, boxes in its own pixels."""

from __future__ import annotations

from pathlib import Path

from serving.commands import common


def _drawn_path(out: Path, index: int, count: int) -> Path:
    return out if count == 1 else out.with_name(f"{out.stem}-{index}{out.suffix or '.png'}")


def main(argv: list[str], prog: str = "dnnzoo detect") -> int:
    p = common.parser(prog, "Detect objects in images with a served detector.", "digits_detector")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--draw", type=Path, metavar="OUT.png", help="write the image with boxes and labels (OUT-i.png for several)")
    p.add_argument("--score-threshold", type=float, help="raise the model's score threshold")
    p.add_argument("--iou-threshold", type=float, help="lower the model's IoU threshold")
    p.add_argument("--max-detections", type=int, help="lower the model's detections per image")
    args = p.parse_args(argv)

    def body() -> int:
        sources = [path.read_bytes() for path in args.images]
        with common.client(args) as client:
            reply = client.detect(args.model, sources, args.score_threshold, args.iou_threshold, args.max_detections)
        data = [
            {"image": str(path), "width": r.width, "height": r.height, "detections": [
                {"label": d.label, "class_id": d.class_id, "score": d.score, "box": [d.x_min, d.y_min, d.x_max, d.y_max]}
                for d in r.detections]}
            for path, r in zip(args.images, reply.results)
        ]  # fmt: skip
        if args.draw:
            from serving.commands import drawing

            for i, (source, result) in enumerate(zip(sources, reply.results)):
                path = _drawn_path(args.draw, i, len(sources))
                drawing.boxes(source, result.detections).save(path)
                common.wrote(path)
        rows = [
            [item["image"], d["label"], f"{d['score']:.3f}", *(f"{v:.1f}" for v in d["box"])]
            for item in data for d in item["detections"]
        ]  # fmt: skip
        common.emit(args, data, lambda: common.table(rows, ["image", "label", "score", "x_min", "y_min", "x_max", "y_max"]))
        return 0

    return common.run(prog, body)
