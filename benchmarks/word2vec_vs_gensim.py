"""dnnzoo's word2vec against gensim's Word2Vec on the same tokens and settings: pair scores and speed.

Both train skip-gram with negative sampling on the paragraphs of the embedded pydoc text (or --data),
tokenised once by `training.data.text`, with the quick profile's dim, window, negatives, min_count,
subsampling threshold, epochs (the quick profile's step budget on the embedded text is 20)
and learning rate (linearly decayed to 1e-4 of it, as word2vec.c does).
Both are scored on their input vectors (word2vec.c's), by the same code on the fixed list `training.word2vec_pairs.PAIRS`:
  top10 mutual   fraction of pairs whose words are in each other's 10 nearest neighbours
  top20 either   fraction where one is in the other's 20 nearest
Speed is in-vocabulary corpus words × epochs / training seconds (vocabulary building excluded), with
the same thread count for both (gensim `workers`, torch intra-op threads).

    python benchmarks/word2vec_vs_gensim.py [--seeds 42 7] [--threads 1] [--epochs N] [--data FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from dnnzoo.openmp import passive_wait

passive_wait()  # before torch loads
from training import word2vec, word2vec_eval  # noqa: E402
from training.config import TrainConfig, apply_profile  # noqa: E402
from training.data import text  # noqa: E402
from training.word2vec_pairs import PAIRS  # noqa: E402


def ours(sentences, config: TrainConfig, options: word2vec.Options) -> tuple[dict, float]:
    started = time.perf_counter()
    model, vocab, _ = word2vec.train_vectors(sentences, config, options)
    seconds = time.perf_counter() - started
    unit = word2vec_eval.unit_rows(model.vectors.detach().numpy())
    return word2vec_eval.pair_scores(vocab.index, unit, PAIRS), seconds


def theirs(sentences, config: TrainConfig, options: word2vec.Options) -> tuple[dict, float]:
    from gensim.models import Word2Vec

    model = Word2Vec(
        vector_size=options.dim,
        window=options.window,
        negative=options.negatives,
        min_count=options.min_count,
        sample=options.sample,
        sg=1,
        hs=0,
        ns_exponent=0.75,
        alpha=config.lr,
        min_alpha=config.lr * 1e-4,
        seed=config.seed,
        workers=config.threads,
    )
    model.build_vocab(sentences)
    started = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=config.epochs)
    seconds = time.perf_counter() - started
    index = {w: i for i, w in enumerate(model.wv.index_to_key)}
    return word2vec_eval.pair_scores(index, word2vec_eval.unit_rows(model.wv.vectors), PAIRS), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20, help="default: the quick profile's on the embedded text (its step budget)")
    parser.add_argument("--data", type=Path, help="a text file instead of the embedded pydoc text")
    args = parser.parse_args()

    base = TrainConfig(family="word2vec", profile="quick", epochs=args.epochs, threads=args.threads, device="cpu", progress=False)
    # gensim's wv are the input vectors: ours are scored the same way (not the profile's input + output)
    config, options = apply_profile(base, word2vec.Options(vectors="input"), word2vec.PROFILES["quick"])
    sentences = text.load(args.data, options.lowercase)
    vocab = text.Vocabulary.build(sentences, options.min_count)
    words = int(vocab.counts.sum()) * config.epochs
    print(
        f"{len(sentences)} paragraphs, {int(vocab.counts.sum())} in-vocabulary words, {len(vocab)} words in the vocabulary; "
        f"dim={options.dim} window={options.window} negatives={options.negatives} min_count={options.min_count} "
        f"sample={options.sample} epochs={config.epochs} lr={config.lr} threads={config.threads}; {len(PAIRS)} pairs"
    )
    header = f"{'seed':>5} {'system':>8} {'top10 mutual':>13} {'top20 either':>13} {'seconds':>8} {'words/s':>9}"
    print(header)
    rows = {"dnnzoo": [], "gensim": []}
    for seed in args.seeds:
        seeded = dataclasses.replace(config, seed=seed)
        for name, trainer in (("dnnzoo", ours), ("gensim", theirs)):
            scores, seconds = trainer(sentences, seeded, options)
            rows[name].append((scores["pairs_top10_mutual"], scores["pairs_top20_either"], seconds))
            print(f"{seed:>5} {name:>8} {scores['pairs_top10_mutual']:>13.3f} {scores['pairs_top20_either']:>13.3f} {seconds:>8.1f} {words / seconds:>9.0f}", flush=True)
    mine, gensim = np.mean(rows["dnnzoo"], axis=0), np.mean(rows["gensim"], axis=0)
    print(f"{'mean':>5} {'dnnzoo':>8} {mine[0]:>13.3f} {mine[1]:>13.3f} {mine[2]:>8.1f} {words / mine[2]:>9.0f}")
    print(f"{'mean':>5} {'gensim':>8} {gensim[0]:>13.3f} {gensim[1]:>13.3f} {gensim[2]:>8.1f} {words / gensim[2]:>9.0f}")
    print(
        f"difference (dnnzoo - gensim): top10 mutual {mine[0] - gensim[0]:+.3f}, top20 either {mine[1] - gensim[1]:+.3f}; "
        f"speed ratio dnnzoo/gensim (words/s) {gensim[2] / mine[2]:.2f}"
    )


if __name__ == "__main__":
    main()
