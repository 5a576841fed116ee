"""How good are word vectors: related-pair neighbourhoods, analogies (3CosAdd) and similarity (Spearman).

Everything works on a plain float matrix [V, d] and a word -> id dict, so the gensim benchmark scores
its vectors with exactly the code that scores ours. Cosine similarity throughout; a word is never its
own neighbour, and the question words are never an analogy's answer (as in word2vec's compute-accuracy).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from training.data.text import Analogy


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def nearest(unit: np.ndarray, ids: Sequence[int], k: int) -> np.ndarray:
    """Top-k neighbour ids [len(ids), k] of each query word by cosine, the word itself excluded."""
    ids = np.asarray(ids, dtype=np.int64)
    sims = unit[ids] @ unit.T
    sims[np.arange(len(ids)), ids] = -np.inf
    k = min(k, unit.shape[0] - 1)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def pair_scores(index: dict[str, int], unit: np.ndarray, pairs: Iterable[tuple[str, str]]) -> dict[str, float]:
    """Fractions of `pairs` whose words are each in the other's top 10 (mutual) / one in the other's top 20.

    A pair with a word outside the vocabulary counts as a miss: the denominator is always every pair.
    """
    pairs = list(pairs)
    known = [(a, b) for a, b in pairs if a in index and b in index]
    mutual10 = either20 = 0
    if known:
        words = sorted({w for pair in known for w in pair})
        top = dict(zip(words, nearest(unit, [index[w] for w in words], 20)))
        for a, b in known:
            ia, ib = index[a], index[b]
            mutual10 += bool(ib in top[a][:10] and ia in top[b][:10])
            either20 += bool(ib in top[a] or ia in top[b])
    n = max(len(pairs), 1)
    return {"pairs_top10_mutual": mutual10 / n, "pairs_top20_either": either20 / n, "pairs_coverage": len(known) / n}


def analogy_accuracy(index: dict[str, int], unit: np.ndarray, questions: Sequence[Analogy], batch: int = 512) -> dict:
    """3CosAdd: d* = argmax cos(x, b − a + c) over the vocabulary minus {a, b, c}.

    Questions with any word outside the vocabulary are skipped; `coverage` is the fraction answered and
    `accuracy` is over the answered ones (word2vec's compute-accuracy convention), also per section.
    """
    covered = [q for q in questions if all(w in index for w in q.words)]
    correct = np.zeros(len(covered), dtype=bool)
    for start in range(0, len(covered), batch):
        chunk = covered[start : start + batch]
        ids = np.array([[index[w] for w in q.words] for q in chunk], dtype=np.int64)
        query = unit[ids[:, 1]] - unit[ids[:, 0]] + unit[ids[:, 2]]
        sims = query @ unit.T
        rows = np.arange(len(chunk))[:, None]
        sims[rows, ids[:, :3]] = -np.inf
        correct[start : start + len(chunk)] = sims.argmax(axis=1) == ids[:, 3]
    sections: dict[str, list[bool]] = defaultdict(list)
    for q, ok in zip(covered, correct):
        sections[q.section].append(bool(ok))
    return {
        "accuracy": float(correct.mean()) if len(covered) else 0.0,
        "coverage": len(covered) / max(len(questions), 1),
        "questions": len(questions),
        "answered": len(covered),
        "sections": {name: float(np.mean(v)) for name, v in sections.items()},
    }


def similarity_spearman(index: dict[str, int], unit: np.ndarray, triples: Sequence[tuple[str, str, float]]) -> dict:
    """Spearman's rho between the human scores and the cosines, over the pairs with both words known."""
    known = [(a, b, s) for a, b, s in triples if a in index and b in index]
    result = {"coverage": len(known) / max(len(triples), 1), "pairs": len(triples), "answered": len(known)}
    if len(known) < 2:
        return {**result, "spearman": float("nan")}
    cosines = [float(unit[index[a]] @ unit[index[b]]) for a, b, _ in known]
    return {**result, "spearman": spearman([s for _, _, s in known], cosines)}


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (what Spearman's rho needs)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    positions = np.empty(len(values))
    positions[order] = np.arange(1, len(values) + 1)
    _, group = np.unique(values, return_inverse=True)
    return (np.bincount(group, positions) / np.bincount(group))[group]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of the ranks; NaN when either side is constant."""
    rx, ry = ranks(x) - (len(x) + 1) / 2, ranks(y) - (len(y) + 1) / 2
    denominator = float(np.sqrt((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")
