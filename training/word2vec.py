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
The served model is the input embedding table: `forward(ids) -> vectors`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dnnzoo.errors import UserError
from training import optim, plots, word2vec_eval
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


_COMMON = {"window": 2, "negatives": 5, "min_count": 5, "sample": 1e-3, "lowercase": True, "optimizer": "sgd", "lr": 0.025}
PROFILES = {
    "tiny": {**_COMMON, "dim": 16, "epochs": 1, "batch_size": 1024},
    "quick": {**_COMMON, "dim": 100, "epochs": 20, "batch_size": 1024},
    "full": {**_COMMON, "dim": 200, "epochs": 100, "batch_size": 4096},
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


class SkipGram(nn.Module):
    """Input ("word") and output ("context") vectors; inference returns the input vectors."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.input = nn.Embedding(vocab_size, dim)
        self.output = nn.Embedding(vocab_size, dim)

    @property
    def vectors(self) -> nn.Parameter:
        return self.input.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.input(ids)


def build_model(vocab_size: int, dim: int) -> SkipGram:
    return SkipGram(vocab_size, dim)


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
    if config.epochs < 1 or config.batch_size < 1 or config.lr <= 0:
        raise UserError("--epochs, --batch-size and --lr must be positive")
    if config.init_from is not None or config.freeze:
        raise UserError("word2vec has no transferable layers: --init-from/--freeze do not apply")
    _lr_factor(config, 0.0, 0, 1)  # rejects schedules without a closed form before any work
    if config.optimizer not in OPTIMIZERS:
        raise UserError(f"word2vec trains with sparse updates: --optimizer must be one of {', '.join(OPTIMIZERS)}")


def fit_embeddings(model, paragraphs, vocab, config, options, device, generator, rng, on_epoch=None) -> list[dict]:
    """The training loop (not the shared `fit`: no validation set, sparse updates, per-step lr decay)."""
    keep = keep_probabilities(vocab.counts, options.sample)
    noise_cdf = torch.as_tensor(np.cumsum(noise_distribution(vocab.counts)), dtype=torch.float32, device=device)
    noise_cdf[-1] = 1.0
    optimizer = torch.optim.SparseAdam(list(model.parameters()), lr=config.lr) if config.optimizer == "adam" else None
    words_per_epoch = int(sum(len(p) for p in paragraphs))
    # a centre word's reach averages (window + 1)/2 each side: this only sizes step-based schedules
    expected_pairs = (options.window + 1) * float(keep[np.concatenate(paragraphs)].sum())
    total_steps = max(1, int(np.ceil(expected_pairs / config.batch_size)) * config.epochs)
    B, K = config.batch_size, options.negatives
    history, step = [], 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        centres, contexts = skipgram_pairs(paragraphs, keep, options.window, rng)
        order = rng.permutation(len(centres))
        centres = torch.from_numpy(centres[order]).to(device)
        contexts = torch.from_numpy(contexts[order]).to(device)
        total_loss = torch.zeros((), device=device)
        batches = range(0, len(centres), B)
        for i, start in enumerate(tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", leave=False, disable=not config.progress)):
            c, o = centres[start : start + B], contexts[start : start + B]
            noise = torch.searchsorted(noise_cdf, torch.rand(len(c), K, device=device, generator=generator))
            noise.clamp_(max=len(vocab) - 1)
            progress = (epoch - 1 + i / len(batches)) / config.epochs
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
        seconds = time.perf_counter() - started
        row = {
            "epoch": epoch,
            "loss": total_loss / max(len(centres), 1),
            "lr": config.lr * _lr_factor(config, epoch / config.epochs, step, total_steps),
            "pairs": int(len(centres)),
            "words_per_second": words_per_epoch / seconds,
        }
        if on_epoch is not None:
            row.update(on_epoch(model, vocab))
        history.append(row)
    return history


def evaluate(model: SkipGram, vocab: text.Vocabulary, analogies=None, similarities=None) -> dict:
    """The fixed pair scores, plus analogy accuracy and similarity rho when those files were given."""
    unit = word2vec_eval.unit_rows(model.vectors.detach().cpu().numpy())
    result = word2vec_eval.pair_scores(vocab.index, unit, PAIRS)
    if analogies is not None:
        a = word2vec_eval.analogy_accuracy(vocab.index, unit, analogies)
        result.update(analogy_accuracy=a["accuracy"], analogy_coverage=a["coverage"], analogy_sections=a["sections"])
    if similarities is not None:
        s = word2vec_eval.similarity_spearman(vocab.index, unit, similarities)
        result.update(similarity_spearman=s["spearman"], similarity_coverage=s["coverage"])
    return result


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


def train_vectors(sentences: list[list[str]], config: TrainConfig, options: Options, on_epoch=None):
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
    model = build_model(len(vocab), options.dim)
    initialize_word2vec(model, torch.Generator().manual_seed(config.seed))
    model.to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    history = fit_embeddings(model, paragraphs, vocab, config, options, device, generator, rng, on_epoch)
    return model.cpu(), vocab, history


def train(config: TrainConfig, options: Options) -> dict:
    config, options = apply_profile(config, options, PROFILES[config.profile])
    _check(config, options)
    sentences = text.load(config.data, options.lowercase)
    analogies = text.read_analogies(options.analogies, options.lowercase) if options.analogies else None
    similarities = text.read_similarities(options.similarities, options.lowercase) if options.similarities else None

    run = Run(config, options)
    model, vocab, history = train_vectors(sentences, config, options, on_epoch=evaluate)
    final = evaluate(model, vocab, analogies, similarities)
    final.update(vocab_size=len(vocab), corpus_words=int(vocab.counts.sum()))
    extra = {
        "vocab": vocab.words,
        "counts": vocab.counts.tolist(),
        "lowercase": options.lowercase,
        "unicode_normalisation": "NFKC",
        "token_pattern": text.TOKEN_PATTERN,
        "window": options.window,
        "metrics": {k: v for k, v in final.items() if isinstance(v, (int, float))},
    }
    run.save_checkpoint({"vocab_size": len(vocab), "dim": options.dim}, model.state_dict(), extra)
    plots.curves(history, run.file("curves.png"), keys=["loss", "pairs_top10_mutual", "pairs_top20_either"], title="word2vec")
    scatter_words(model, vocab, run.file("words_pca.png"))
    return run.save_metrics(history, final)
