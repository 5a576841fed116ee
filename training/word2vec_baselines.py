"""What word2vec's vectors are measured against: vectors any run could have without learning.

* `untrained`: the run's own starting vectors (word2vec.c's uniform ±0.5/dim, same seed). The trivial
  baseline: a run that does not beat it on the pair, analogy or similarity scores has learnt nothing,
  and the CLI, metrics.json and the exported config say so (training.baselines).
* `ppmi_svd`: the count-based method (Levy, Goldberg & Dagan 2015) on the very same tokens: co-occurrence
  counts within `window` (distance d weighted (window − d + 1)/window, the chance word2vec's shrunk
  window reaches it; windows stop at paragraph ends), positive PMI with the context distribution
  smoothed to the power 0.75 (as the noise distribution), truncated SVD to the run's dim, rows U·√Σ.
  Skip-gram with negative sampling factorises a shifted PMI matrix implicitly; this does it explicitly,
  with no training. It is a *reference*, reported beside the model, not a trivial floor (see README).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse

CONTEXT_SMOOTHING = 0.75  # Levy et al.'s cds, word2vec's noise exponent
EIGENVALUE_WEIGHT = 0.5  # rows U·Σ^p, p = 0.5 (Levy et al. recommend 0 or 0.5 over the plain U·Σ)


def cooccurrence(paragraphs: list[np.ndarray], vocab_size: int, window: int) -> sparse.csr_matrix:
    """Symmetric [V, V] counts of words within `window` of each other, nearer words weighted more."""
    ids = np.concatenate(paragraphs)
    para = np.repeat(np.arange(len(paragraphs)), [len(p) for p in paragraphs])
    rows, cols, weights = [], [], []
    for d in range(1, window + 1):
        same = para[d:] == para[:-d]
        left, right = ids[:-d][same], ids[d:][same]
        weight = np.full(2 * len(left), (window - d + 1) / window)
        rows += [left, right]
        cols += [right, left]
        weights.append(weight)
    counts = sparse.coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(vocab_size, vocab_size))
    return counts.tocsr()  # duplicates summed


def ppmi(counts: sparse.csr_matrix, smoothing: float = CONTEXT_SMOOTHING) -> sparse.csr_matrix:
    """max(0, log P(w, c) / (P(w) · P_α(c))), with P_α(c) ∝ count(c)^α; zero counts stay zero."""
    counts = counts.tocoo()
    total = counts.sum()
    p_word = np.asarray(counts.sum(axis=1)).ravel() / total
    smoothed = np.asarray(counts.sum(axis=0)).ravel() ** smoothing
    p_context = smoothed / smoothed.sum()
    pmi = np.log(counts.data / total / (p_word[counts.row] * p_context[counts.col]))
    keep = pmi > 0
    return sparse.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape)


def top_singular(matrix, k: int, seed: int, power_iterations: int = 7, oversample: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The k largest singular values and left vectors of a sparse matrix: Halko, Martinsson & Tropp's
    randomised SVD with power iterations (what scikit-learn's randomized_svd does, without importing
    scikit-learn into a word2vec run: a second of its 15)."""
    size = min(k + oversample, min(matrix.shape))
    basis = matrix @ np.random.default_rng(seed).standard_normal((matrix.shape[1], size))
    for _ in range(power_iterations):
        basis, _ = np.linalg.qr(basis)
        basis = matrix @ (matrix.T @ basis)
    basis, _ = np.linalg.qr(basis)
    u, s, _ = np.linalg.svd(np.asarray((matrix.T @ basis).T), full_matrices=False)
    return (basis @ u)[:, :k], s[:k]


def ppmi_svd(paragraphs: list[np.ndarray], vocab_size: int, window: int, dim: int, seed: int) -> np.ndarray:
    """[V, dim] count-based vectors: PPMI of the windowed co-occurrences, truncated SVD, U·Σ^0.5."""
    from threadpoolctl import threadpool_limits

    matrix = ppmi(cooccurrence(paragraphs, vocab_size, window))
    k = min(dim, vocab_size - 1)
    with threadpool_limits(limits=1):  # small products: 0.3 s on one BLAS thread, 3-10 s on two of a busy 2-core CPU
        u, s = top_singular(matrix, k, seed)
    vectors = np.zeros((vocab_size, dim), dtype=np.float32)
    vectors[:, :k] = u * s**EIGENVALUE_WEIGHT
    return vectors
