"""`dnnzoo generate --count N [--seed S] --out GRID.png`: images from a served generator, as one grid."""

from __future__ import annotations

from pathlib import Path

from serving.client import decode_image
from serving.commands import common


def main(argv: list[str], prog: str = "dnnzoo generate") -> int:
    p = common.parser(prog, "Generate images with a served GAN generator and save them as a grid.", "digits_gan")
    p.add_argument("--count", type=int, default=16, help="images to generate (default 16; the server caps it)")
    p.add_argument("--seed", type=int, help="the same seed gives the same images (default: the server draws one)")
    p.add_argument("--out", type=Path, required=True, metavar="GRID.png", help="where to write the grid")
    p.add_argument("--scale", type=int, default=4, help="pixel scale of the grid (default 4: a 28-pixel digit is shown at 112)")
    args = p.parse_args(argv)

    def body() -> int:
        with common.client(args) as client:
            reply = client.generate(args.model, args.count, args.seed, png=False, raw=True)
        from serving.commands import drawing

        drawing.grid([decode_image(image) for image in reply.images], scale=max(1, args.scale)).save(args.out)
        data = {"images": len(reply.images), "seed": reply.seed, "out": str(args.out)}
        common.emit(args, data, lambda: f"wrote {len(reply.images)} images to {args.out} (seed {reply.seed})")
        return 0

    return common.run(prog, body)
