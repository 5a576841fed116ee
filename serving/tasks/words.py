"""Word vectors: GetVectors, MostSimilar (gensim's most_similar, analogies included), Similarity.

A word is looked up as training tokenised it: Unicode normalisation (`dnnzoo.vocab.unicode_normalization`,
NFKC) then lowercasing when `dnnzoo.vocab.lowercase` is true. Words missing from the vocabulary are
all named in one NOT_FOUND. Vectors come from the main model (`ids` -> `vectors`, `unit_vectors`);
neighbours from its companion `NAME_neighbors` graph (`queries`, `k` -> `ids`, `scores`), which
normalises the query itself. MostSimilar forms the query as gensim does: the mean of the unit
vectors of the positive words and the negated unit vectors of the negative ones; with positive
[king, woman] and negative [man] that is the analogy king - man + woman. Inputs are left out of the
answer unless `exclude_inputs` is false.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from protos import contract

from serving.dataplane import ModelHandle
from serving.errors import InvalidInput, UnknownItems
from serving.limits import shown
from serving.tasks.catalog import Catalog

DEFAULT_TOP_K = 10
SHOWN_UNKNOWN = 5  # unknown words named in one error (each cut by `shown`), so the message stays short


@dataclass(frozen=True)
class WordVector:
    word: str
    token: str
    values: np.ndarray


@dataclass(frozen=True)
class Neighbor:
    word: str
    id: int
    score: float


@dataclass(frozen=True)
class Vectors:
    model: str
    version: str
    vectors: list[WordVector]


@dataclass(frozen=True)
class Neighbors:
    model: str
    version: str
    neighbors: list[Neighbor]


@dataclass(frozen=True)
class Cosines:
    model: str
    version: str
    cosines: list[float]


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]
    index: dict[str, int]
    lowercase: bool
    form: str  # Unicode normalisation form, "" for none

    def token(self, word: str) -> str:
        text = unicodedata.normalize(self.form, word) if self.form else word
        return text.lower() if self.lowercase else text

    def ids(self, words: Sequence[str]) -> list[int]:
        """Ids of the words, or one UnknownItems naming every word that is not in the vocabulary."""
        tokens = [self.token(w) for w in words]
        unknown = list(dict.fromkeys(w for w, t in zip(words, tokens) if t not in self.index))
        if unknown:
            named = ", ".join(shown(w) for w in unknown[:SHOWN_UNKNOWN])
            more = f" and {len(unknown) - SHOWN_UNKNOWN} more" if len(unknown) > SHOWN_UNKNOWN else ""
            raise UnknownItems(f"not in the vocabulary: {named}{more}")
        return [self.index[t] for t in tokens]


def vocabulary(catalog: Catalog, handle: ModelHandle) -> Vocabulary:
    return catalog.cached(handle, "vocabulary", lambda: _read_vocabulary(catalog, handle))


def _read_vocabulary(catalog: Catalog, handle: ModelHandle) -> Vocabulary:
    words = catalog.lines(handle, handle.parameter(contract.VOCAB_FILE_KEY) or contract.VOCAB_FILE)
    form = handle.parameter(contract.VOCAB_UNICODE_NORMALIZATION, "") or ""
    if form and form not in ("NFC", "NFD", "NFKC", "NFKD"):
        form = ""
    lowercase = (handle.parameter(contract.VOCAB_LOWERCASE, "false") or "").lower() == "true"
    return Vocabulary(words, {w: i for i, w in enumerate(words)}, lowercase, form)


async def _vectors(catalog: Catalog, handle: ModelHandle, ids: list[int], output: str, deadline) -> np.ndarray:
    values = await catalog.run(handle, {"ids": np.asarray(ids, np.int64).reshape(-1, 1)}, [output], deadline)
    return np.asarray(values[output], np.float32)


async def get_vectors(catalog: Catalog, model: str, version: str, words: Sequence[str], unit: bool,
                      deadline: float | None = None) -> Vectors:  # fmt: skip
    catalog.cap("max_words", len(words), "GetVectors", "words in one call")
    handle = catalog.find(model, version, contract.WORD_VECTORS, "GetVectors")
    if not words:
        raise InvalidInput("GetVectors: the request has no words")
    vocab = vocabulary(catalog, handle)
    ids = vocab.ids(words)
    rows = await _vectors(catalog, handle, ids, "unit_vectors" if unit else "vectors", deadline)
    return Vectors(handle.name, handle.version, [WordVector(w, vocab.token(w), r) for w, r in zip(words, rows)])


async def most_similar(catalog: Catalog, model: str, version: str, positive: Sequence[str], negative: Sequence[str],
                       top_k: int | None, exclude_inputs: bool = True, deadline: float | None = None) -> Neighbors:  # fmt: skip
    catalog.cap("max_words", len(positive) + len(negative), "MostSimilar", "words (positive and negative) in one call")
    handle = catalog.find(model, version, contract.WORD_VECTORS, "MostSimilar")
    if not positive and not negative:
        raise InvalidInput("MostSimilar: give at least one positive or negative word")
    vocab = vocabulary(catalog, handle)
    ids = vocab.ids(list(positive) + list(negative))
    neighbours = catalog.companion(handle, "neighbors", contract.WORD_NEIGHBORS, "MostSimilar")
    excluded = set(ids) if exclude_inputs else set()
    available = len(vocab.words) - len(excluded)
    k = min(DEFAULT_TOP_K, available) if top_k is None else top_k
    if not 1 <= k <= available:
        raise InvalidInput(f"top_k must be between 1 and {available} (the vocabulary less the excluded inputs), got {k}")
    unit = await _vectors(catalog, handle, ids, "unit_vectors", deadline)
    signs = np.array([1.0] * len(positive) + [-1.0] * len(negative), np.float32)[:, None]
    query = (unit * signs).mean(axis=0, keepdims=True)
    if not np.any(query):
        raise InvalidInput("MostSimilar: the positive and negative words cancel out (the query vector is zero)")
    fetch = min(len(vocab.words), k + len(excluded))
    values = await catalog.run(neighbours, {"queries": query, "k": np.array([fetch], np.int64)}, ["ids", "scores"], deadline)
    found = [
        Neighbor(vocab.words[int(i)], int(i), float(s))
        for i, s in zip(values["ids"][0], values["scores"][0])
        if int(i) not in excluded
    ]
    return Neighbors(handle.name, handle.version, found[:k])


async def similarity(catalog: Catalog, model: str, version: str, pairs: Sequence[tuple[str, str]],
                     deadline: float | None = None) -> Cosines:  # fmt: skip
    catalog.cap("max_word_pairs", len(pairs), "Similarity", "word pairs in one call")
    handle = catalog.find(model, version, contract.WORD_VECTORS, "Similarity")
    if not pairs:
        raise InvalidInput("Similarity: the request has no word pairs")
    vocab = vocabulary(catalog, handle)
    ids = vocab.ids([w for pair in pairs for w in pair])
    unit = await _vectors(catalog, handle, ids, "unit_vectors", deadline)
    cosines = np.einsum("ij,ij->i", unit[0::2], unit[1::2])
    return Cosines(handle.name, handle.version, [float(c) for c in cosines])
