"""Word2Vec: skip-gram with negative sampling on the pydoc help text or any text file.

Mikolov et al.'s skip-gram (2013) as word2vec.c trains it, in big batches:
  * every word predicts the words within a window of it; the window is shrunk at random per centre word
    to 1..`window` (word2vec.c's "reduced window"), which weights near words more;
  * frequent words are subsampled per epoch with word2vec.c's formula (the one gensim uses, not the
    paper's 1 − √(t/f)): word w of corpus frequency f(w) = count/total is kept with probability
    min(1, (√(f/t) + 1) · t/f), t = `--sample`;
  * each (centre, context) pair is contrasted with `--negatives` noise words drawn from the unigram
    distribution raised to 3/4; a noise word equal to the context word is ignored, as in word2vec.c;
  * loss per pair: −log σ(u_ctx·v_c) − Σ_k log σ(−u_k·v_c); input vectors v start uniform in
    ±0.5/dim and output vectors u at zero (word2vec.c's initialisation, which suits the dot-product
    logits better than any activation-matched scheme);
  * plain SGD on the loss summed over a batch of pairs, the learning rate decaying linearly to 1e-4·η0
    over the run as in the original. Summing keeps word2vec.c's per-pair step size; a batch of ~1k
    pairs then behaves like its lock-free sequential updates (at η0 = 0.025 batches of 16k diverged
    here). The update touches only the batch's rows and is written by hand (`sgd_step`, checked
    against autograd in the tests): about twice as fast as autograd's sparse gradients on this CPU.
    `--optimizer adam` runs SparseAdam through autograd instead.
The served model is the input embedding table (`--vectors sum`: input + output): `forward(ids) -> vectors`.
Runs train for a budget of optimiser steps and compare their vectors with the untrained ones (a
baseline that warns) and with count-based PPMI-SVD (a reference): training/word2vec_baselines.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dnnzoo.errors import UserError
from training import baselines, optim, plots, word2vec_baselines, word2vec_eval
from training.budget import plan
from training.config import TrainConfig, apply_profile
from training.data import text
from training.device import pick, seed_everything, set_threads
from training.runs import Run
from training.word2vec_pairs import PAIRS

OPTIMIZERS = ("sgd", "adam")  # word2vec.c's plain SGD (hand-written, fast) or SparseAdam


@dataclass
class Options:
    dim: int | None = None
    window: int | None = None
    negatives: int | None = None
    min_count: int | None = None
    sample: float | None = None
    lowercase: bool | None = None
    analogies: Path | None = None
    similarities: Path | None = None
    vectors: str | None = None


VECTORS = ("input", "sum")  # what a word's vector is: word2vec.c's input vector, or input + output
_COMMON = {"window": 2, "negatives": 5, "min_count": 5, "sample": 1e-3, "lowercase": True, "optimizer": "sgd", "lr": 0.025, "vectors": "input"}
# Budgets in optimiser steps (training.budget), so a small user text trains as long as the embedded one.
# An epoch of the embedded text is ~118 steps of 1024 pairs (~30 of 4096): 100, 2300 and 3000 steps
# are the 1, 20 and 100 epochs these profiles trained before budgets.
PROFILES = {
    "tiny": {**_COMMON, "dim": 16, "steps": 100, "batch_size": 1024},
    "quick": {**_COMMON, "dim": 100, "steps": 2300, "batch_size": 1024},
    "full": {**_COMMON, "dim": 200, "steps": 3000, "batch_size": 4096},
}


def add_arguments(group) -> None:
    group.add_argument("--dim", type=int, help="vector size")
    group.add_argument("--window", type=int, help="context words each side (shrunk at random per word, as word2vec.c)")
    group.add_argument("--negatives", type=int, help="noise words per (centre, context) pair")
    group.add_argument("--min-count", type=int, help="drop words seen fewer times")
    group.add_argument("--sample", type=float, help="subsampling threshold t (0 disables)")
    group.add_argument(
        "--lowercase", action=argparse.BooleanOptionalAction, default=None, help="lowercase the text (default on)"
    )
    group.add_argument("--analogies", type=Path, metavar="FILE", help="questions-words.txt-style analogies to evaluate")
    group.add_argument("--similarities", type=Path, metavar="FILE", help="WordSim-353-style TSV to evaluate (Spearman)")
    group.add_argument(
        "--vectors", choices=VECTORS,
        help="a word's vector: input (word2vec.c's, the default) or sum, input + output (Levy et al. 2015: more related pairs among neighbours here, fewer analogies)",
    )  # fmt: skip


class SkipGram(nn.Module):
    """Input ("word") and output ("context") vectors; inference returns the input vectors, or their sum
    with the output vectors (`vectors="sum"`: Levy, Goldberg & Dagan 2015's w + c; on the embedded text
    it puts more related pairs among each other's neighbours but answers fewer analogies, see README)."""

    def __init__(self, vocab_size: int, dim: int, vectors: str = "input"):
        super().__init__()
        if vectors not in VECTORS:
            raise ValueError(f"vectors must be one of {VECTORS}, got {vectors!r}")
        self.served = vectors
        self.input = nn.Embedding(vocab_size, dim)
        self.output = nn.Embedding(vocab_size, dim)

    @property
    def vectors(self) -> torch.Tensor:
        return self.input.weight if self.served == "input" else self.input.weight + self.output.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.input(ids) if self.served == "input" else self.input(ids) + self.output(ids)


def build_model(vocab_size: int, dim: int, vectors: str = "input") -> SkipGram:
    return SkipGram(vocab_size, dim, vectors)  # "input" for checkpoints from before --vectors


def initial_model(vocab_size: int, dim: int, seed: int, vectors: str = "input") -> SkipGram:
    """The model as a run of `seed` starts: also the untrained baseline (its output vectors are zero)."""
    model = build_model(vocab_size, dim, vectors)
    initialize_word2vec(model, torch.Generator().manual_seed(seed))
    return model


def initialize_word2vec(model: SkipGram, generator: torch.Generator | None = None) -> None:
    dim = model.input.embedding_dim
    with torch.no_grad():
        model.input.weight.copy_((torch.rand(model.input.weight.shape, generator=generator) - 0.5) / dim)
        model.output.weight.zero_()


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec.c's subsampling: P(keep w) = min(1, (√(f/t) + 1)·t/f), f = count/total; t = 0 keeps all."""
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    f = counts / counts.sum()
    return np.minimum(1.0, (np.sqrt(f / sample) + 1.0) * sample / f)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """The negative-sampling distribution: P(w) ∝ count(w)^0.75."""
    weights = np.asarray(counts, dtype=np.float64) ** power
    return weights / weights.sum()


def skipgram_pairs(
    paragraphs: list[np.ndarray], keep: np.ndarray, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of (centre, context) id pairs: subsample, then pair each kept word with its neighbours.

    As in word2vec.c, subsampled words are removed before windows are taken (so a window reaches past
    them), each centre word draws its own reach in 1..window, and windows stop at paragraph ends.
    """
    ids = np.concatenate(paragraphs)
    para = np.repeat(np.arange(len(paragraphs)), [len(p) for p in paragraphs])
    kept = rng.random(len(ids)) < keep[ids]
    ids, para = ids[kept], para[kept]
    reach = rng.integers(1, window + 1, size=len(ids))
    centres, contexts = [], []
    for d in range(1, window + 1):
        same = para[d:] == para[:-d]
        forward = same & (reach[:-d] >= d)  # centre i, context i + d
        backward = same & (reach[d:] >= d)  # centre i + d, context i
        centres += [ids[:-d][forward], ids[d:][backward]]
        contexts += [ids[d:][forward], ids[:-d][backward]]
    return np.concatenate(centres), np.concatenate(contexts)


def sgns_loss(centre: torch.Tensor, context: torch.Tensor, noise: torch.Tensor, noise_mask: torch.Tensor) -> torch.Tensor:
    """Per-pair negative-sampling loss: −log σ(u_o·v_c) − Σ_k mask_k · log σ(−u_k·v_c).

    centre [B, d] input vectors, context [B, d] and noise [B, K, d] output vectors, noise_mask [B, K].
    """
    positive = F.logsigmoid((centre * context).sum(-1))
    negative = F.logsigmoid(-(noise * centre.unsqueeze(1)).sum(-1))
    return -(positive + (negative * noise_mask).sum(-1))


def sgd_step(model: SkipGram, centre: torch.Tensor, context: torch.Tensor, noise: torch.Tensor, lr: float) -> torch.Tensor:
    """One plain-SGD step on the summed `sgns_loss` of a batch, gradients written out by hand.

    word2vec.c's update, batched: with s = u·v, ∂loss/∂s is σ(s) − 1 for the context word and σ(s)
    for a noise word, so each touched row moves by −lr · ∂loss/∂s · (the other vector). Scattering
    these rows with `index_add_` costs a fraction of autograd's sparse gradients. Returns the per-pair loss.
    """
    weights_in, weights_out = model.input.weight, model.output.weight
    batch, k = noise.shape
    with torch.no_grad():
        mask = (noise != context.unsqueeze(1)).to(weights_in.dtype)
        v = weights_in.index_select(0, centre)
        u_ctx = weights_out.index_select(0, context)
        u_noise = weights_out.index_select(0, noise.reshape(-1)).view(batch, k, -1)
        s_ctx = (v * u_ctx).sum(-1)
        s_noise = (u_noise * v.unsqueeze(1)).sum(-1)
        loss = -(F.logsigmoid(s_ctx) + (F.logsigmoid(-s_noise) * mask).sum(-1))
        g_ctx = torch.sigmoid(s_ctx) - 1.0
        g_noise = torch.sigmoid(s_noise) * mask
        grad_v = g_ctx.unsqueeze(1) * u_ctx + (g_noise.unsqueeze(2) * u_noise).sum(1)
        weights_out.index_add_(0, context, g_ctx.unsqueeze(1) * v, alpha=-lr)
        weights_out.index_add_(0, noise.reshape(-1), (g_noise.unsqueeze(2) * v.unsqueeze(1)).reshape(batch * k, -1), alpha=-lr)
        weights_in.index_add_(0, centre, grad_v, alpha=-lr)
    return loss


def adam_step(model: SkipGram, optimizer, centre, context, noise) -> torch.Tensor:
    """One SparseAdam step through autograd (rows not in the batch keep their moments untouched)."""
    loss = sgns_loss(
        F.embedding(centre, model.input.weight, sparse=True),
        F.embedding(context, model.output.weight, sparse=True),
        F.embedding(noise, model.output.weight, sparse=True),
        (noise != context.unsqueeze(1)).float(),
    )
    optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()
    optimizer.step()
    return loss.detach()


def _lr_factor(config: TrainConfig, progress: float, step: int, total: int) -> float:
    """Linear decay to 1e-4·η0 over the run's progress (word2vec.c) unless a closed-form --schedule was asked for."""
    if config.schedule is None:
        return max(1e-4, 1.0 - progress)
    if config.schedule in ("performance", "1cycle", "1cycle-torch"):
        raise UserError("word2vec supports --schedule constant, piecewise, power or exponential (default: linear decay)")
    return optim.lr_factor(config.schedule, step, total, config)


def _check(config: TrainConfig, options: Options) -> None:
    for name in ("dim", "window", "negatives", "min_count"):
        if getattr(options, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if options.sample < 0:
        raise UserError("--sample must be 0 (off) or positive")
    if config.batch_size < 1 or config.lr <= 0:
        raise UserError("--batch-size and --lr must be positive")
    if config.init_from is not None or config.freeze:
        raise UserError("word2vec has no transferable layers: --init-from/--freeze do not apply")
    _lr_factor(config, 0.0, 0, 1)  # rejects schedules without a closed form before any work
    if config.optimizer not in OPTIMIZERS:
        raise UserError(f"word2vec trains with sparse updates: --optimizer must be one of {', '.join(OPTIMIZERS)}")


def fit_embeddings(model, paragraphs, vocab, config, options, device, generator, rng, on_round=None) -> list[dict]:
    """The training loop (not the shared `fit`: no validation set, sparse updates, per-step lr decay).

    It trains for the config's step budget (training.budget: --steps, or the profile's), sized by the
    first epoch's number of pairs, so a short text makes more passes; `on_round` scores the vectors
    once per round (an epoch, or whole epochs of at least 50 steps) and adds to that round's history row.
    """
    keep = keep_probabilities(vocab.counts, options.sample)
    noise_cdf = torch.as_tensor(np.cumsum(noise_distribution(vocab.counts)), dtype=torch.float32, device=device)
    noise_cdf[-1] = 1.0
    optimizer = torch.optim.SparseAdam(list(model.parameters()), lr=config.lr) if config.optimizer == "adam" else None
    words_per_epoch = int(sum(len(p) for p in paragraphs))
    B, K = config.batch_size, options.negatives
    centres, contexts = skipgram_pairs(paragraphs, keep, options.window, rng)  # epoch 1's pairs size the budget
    budget = plan(config, int(np.ceil(len(centres) / B)))
    total_steps = budget.steps  # sizes step-based schedules; later epochs' pair counts vary a little
    history, step = [], 0
    round_loss, round_pairs, round_epochs, round_started = 0.0, 0, 0, time.perf_counter()
    for epoch in range(1, budget.epochs + 1):
        if epoch > 1:
            centres, contexts = skipgram_pairs(paragraphs, keep, options.window, rng)
        order = rng.permutation(len(centres))
        centres = torch.from_numpy(centres[order]).to(device)
        contexts = torch.from_numpy(contexts[order]).to(device)
        total_loss = torch.zeros((), device=device)
        batches = range(0, len(centres), B)
        for i, start in enumerate(tqdm(batches, desc=f"epoch {epoch}/{budget.epochs}", leave=False, disable=not config.progress)):
            c, o = centres[start : start + B], contexts[start : start + B]
            noise = torch.searchsorted(noise_cdf, torch.rand(len(c), K, device=device, generator=generator))
            noise.clamp_(max=len(vocab) - 1)
            progress = (epoch - 1 + i / len(batches)) / budget.epochs
            lr = config.lr * _lr_factor(config, progress, min(step, total_steps), total_steps)
            if optimizer is None:
                loss = sgd_step(model, c, o, noise, lr)
            else:
                optimizer.param_groups[0]["lr"] = lr
                loss = adam_step(model, optimizer, c, o, noise)
            total_loss += loss.sum()
            step += 1
        total_loss = float(total_loss)
        if not np.isfinite(total_loss):
            raise FloatingPointError(f"word2vec loss became {total_loss} in epoch {epoch}: lower --lr")
        round_loss, round_pairs, round_epochs = round_loss + total_loss, round_pairs + len(centres), round_epochs + 1
        if not budget.evaluates_after(epoch):
            continue
        row = {
            "epoch": epoch,
            "step": step,
            "loss": round_loss / max(round_pairs, 1),
            "lr": config.lr * _lr_factor(config, epoch / budget.epochs, min(step, total_steps), total_steps),
            "pairs": int(round_pairs / round_epochs),  # per epoch
            "words_per_second": words_per_epoch * round_epochs / (time.perf_counter() - round_started),
        }
        if on_round is not None:
            row.update(on_round(model, vocab))
        history.append(row)
        round_loss, round_pairs, round_epochs, round_started = 0.0, 0, 0, time.perf_counter()
    return history


def evaluate(model: SkipGram, vocab: text.Vocabulary, analogies=None, similarities=None) -> dict:
    return score_vectors(model.vectors.detach().cpu().numpy(), vocab, analogies, similarities)


def score_vectors(vectors: np.ndarray, vocab: text.Vocabulary, analogies=None, similarities=None) -> dict:
    """The fixed pair scores, plus analogy accuracy and similarity rho when those files were given."""
    unit = word2vec_eval.unit_rows(vectors)
    result = word2vec_eval.pair_scores(vocab.index, unit, PAIRS)
    if analogies is not None:
        a = word2vec_eval.analogy_accuracy(vocab.index, unit, analogies)
        result.update(analogy_accuracy=a["accuracy"], analogy_coverage=a["coverage"], analogy_sections=a["sections"])
    if similarities is not None:
        s = word2vec_eval.similarity_spearman(vocab.index, unit, similarities)
        result.update(similarity_spearman=s["spearman"], similarity_coverage=s["coverage"])
    return result


# score compared with the baselines -> the coverage that must be non-zero for it to say anything about this text
COMPARED = {
    "pairs_top10_mutual": "pairs_coverage",
    "pairs_top20_either": "pairs_coverage",
    "analogy_accuracy": "analogy_coverage",
    "similarity_spearman": "similarity_coverage",
}
REFERENCES = "references"  # key in metrics.json's final of the comparisons with PPMI-SVD (reported, never a warning)


def comparisons(name: str, final: dict, theirs: dict) -> list[dict]:
    """`baselines.compare` records of every score in COMPARED that this text lets both sides have."""
    return [
        baselines.compare(name, metric, final[metric], theirs[metric], higher_is_better=True)
        for metric, coverage in COMPARED.items()
        if final.get(coverage, 0) > 0 and np.isfinite(final.get(metric, np.nan)) and np.isfinite(theirs[metric])
    ]


def compare_with_baselines(final: dict, vocab, paragraphs, config: TrainConfig, options: Options, analogies, similarities) -> dict:
    """The untrained vectors (a loss is a WARNING) and count-based PPMI-SVD (a reference) on the same scores."""
    untrained = initial_model(len(vocab), options.dim, config.seed, options.vectors).vectors.detach().numpy()
    count_based = word2vec_baselines.ppmi_svd(paragraphs, len(vocab), options.window, options.dim, config.seed)
    records = comparisons("untrained", final, score_vectors(untrained, vocab, analogies, similarities))
    references = comparisons("ppmi_svd", final, score_vectors(count_based, vocab, analogies, similarities))
    if not records:
        tqdm.write("WARNING: word2vec: no score to judge the vectors by: none of the fixed pairs occur in this text; "
                   "give --analogies or --similarities", file=sys.stderr)  # fmt: skip
    for record in references:
        tqdm.write(f"note: word2vec: {baselines.describe(record)} (count-based, for reference)", file=sys.stderr)
    return {baselines.BASELINES: baselines.speak("word2vec", records), REFERENCES: references}


def scatter_words(model: SkipGram, vocab: text.Vocabulary, path: Path, skip: int = 10, count: int = 100) -> Path:
    """2-D PCA of the unit vectors of frequent words (ranks skip..skip+count, past the commonest function words)."""
    plt = plots._pyplot()
    unit = word2vec_eval.unit_rows(model.vectors.detach().cpu().numpy())
    ids = np.arange(len(vocab))[skip : skip + count] if len(vocab) > skip + 2 else np.arange(len(vocab))
    points = unit[ids] - unit[ids].mean(axis=0)
    _, _, vt = np.linalg.svd(points, full_matrices=False)
    xy = points @ vt[:2].T if vt.shape[0] >= 2 else np.c_[points @ vt[:1].T, np.zeros(len(ids))]
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.5)
    for (x, y), i in zip(xy, ids):
        ax.annotate(vocab.words[i], (x, y), fontsize=7)
    ax.set_title(f"PCA of word vectors, frequency ranks {ids[0]}–{ids[-1]}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def train_vectors(sentences: list[list[str]], config: TrainConfig, options: Options, on_round=None):
    """Vocabulary, initialisation and the loop on token lists, for a resolved config: (model, vocab, history).

    `train` wraps it with a run folder; the gensim benchmark calls it directly on the very same tokens.
    """
    set_threads(config.threads)
    seed_everything(config.seed)
    device = pick(config.device)
    vocab = text.Vocabulary.build(sentences, options.min_count)
    if len(vocab) < 2:
        raise UserError(f"fewer than two words occur at least {options.min_count} times: lower --min-count or give more text")
    paragraphs = vocab.encode(sentences)
    if not any(len(p) > 1 for p in paragraphs):
        raise UserError("no paragraph has two known words in a row: nothing to learn from (give more text)")
    model = initial_model(len(vocab), options.dim, config.seed, options.vectors).to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    history = fit_embeddings(model, paragraphs, vocab, config, options, device, generator, rng, on_round)
    return model.cpu(), vocab, history


def train(config: TrainConfig, options: Options) -> dict:
    config, options = apply_profile(config, options, PROFILES[config.profile])
    _check(config, options)
    sentences = text.load(config.data, options.lowercase)
    analogies = text.read_analogies(options.analogies, options.lowercase) if options.analogies else None
    similarities = text.read_similarities(options.similarities, options.lowercase) if options.similarities else None

    run = Run(config, options)
    model, vocab, history = train_vectors(sentences, config, options, on_round=evaluate)
    final = evaluate(model, vocab, analogies, similarities)
    final.update(vocab_size=len(vocab), corpus_words=int(vocab.counts.sum()))
    final.update(compare_with_baselines(final, vocab, vocab.encode(sentences), config, options, analogies, similarities))
    extra = {
        "vocab": vocab.words,
        "counts": vocab.counts.tolist(),
        "lowercase": options.lowercase,
        "unicode_normalisation": "NFKC",
        "token_pattern": text.TOKEN_PATTERN,
        "window": options.window,
        "metrics": {k: v for k, v in final.items() if isinstance(v, (int, float))},
    }
    run.save_checkpoint({"vocab_size": len(vocab), "dim": options.dim, "vectors": options.vectors}, model.state_dict(), extra)
    plots.curves(history, run.file("curves.png"), keys=["loss", "pairs_top10_mutual", "pairs_top20_either"], title="word2vec")
    scatter_words(model, vocab, run.file("words_pca.png"))
    return run.save_metrics(history, final)
