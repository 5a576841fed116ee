"""`dnnzoo similar WORD… [--minus WORD…] [--top-k K]`: nearest words, or analogies (a - b + c)."""

from __future__ import annotations

from serving.commands import common


def main(argv: list[str], prog: str = "dnnzoo similar") -> int:
    p = common.parser(prog, "Words nearest to the sum of WORDs minus the --minus words (word2vec).", "pydoc_word2vec")
    p.add_argument("words", nargs="+", metavar="WORD", help="positive words")
    p.add_argument("--minus", nargs="+", default=[], metavar="WORD", help="negative words (king --minus man woman -> queen)")
    p.add_argument("--top-k", type=int, help="neighbours to show (default 10)")
    p.add_argument("--include-inputs", action="store_true", help="do not leave the query words out of the answer")
    args = p.parse_args(argv)

    def body() -> int:
        with common.client(args) as client:
            reply = client.most_similar(args.model, args.words, args.minus, args.top_k, not args.include_inputs)
        data = [{"word": n.word, "id": n.id, "score": n.score} for n in reply.neighbors]
        rows = [[i + 1, n["word"], f"{n['score']:.4f}"] for i, n in enumerate(data)]
        common.emit(args, data, lambda: common.table(rows, ["rank", "word", "cosine"]))
        return 0

    return common.run(prog, body)
