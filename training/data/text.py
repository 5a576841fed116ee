"""Text for word2vec: the one tokenisation, the vocabulary, the embedded pydoc text, evaluation files.

Tokenisation (serving must repeat it exactly, so its facts travel in the checkpoint's `extra`):
  1. Unicode NFKC normalisation, then `str.lower()` when `lowercase` is on (the default);
  2. words are the matches of `TOKEN_PATTERN`: runs of Unicode letters, digits and underscores, which
     may contain inner apostrophes ("don't", "__init__", "utf8" are single words); everything else
     (punctuation, spaces, symbols) separates words.
A blank line ends a paragraph; context windows never reach across paragraphs (nor across files).

The vocabulary keeps words seen at least `min_count` times, ordered by descending count then
alphabetically, so ids are deterministic; word id i is line i of the exported `vocab.txt`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from dnnzoo.errors import UserError

TOKEN_PATTERN = r"\w+(?:'\w+)*"
_TOKEN = re.compile(TOKEN_PATTERN)
_PARAGRAPH = re.compile(r"\n\s*\n")


def normalise(text: str, lowercase: bool = True) -> str:
    text = unicodedata.normalize("NFKC", text)
    return text.lower() if lowercase else text


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """The words of `text`, as training saw them and as serving must look them up."""
    return _TOKEN.findall(normalise(text, lowercase))


def paragraphs(text: str, lowercase: bool = True) -> list[list[str]]:
    """The token lists of the blank-line-separated paragraphs of `text` (empty ones dropped)."""
    return [words for block in _PARAGRAPH.split(text) if (words := tokenize(block, lowercase))]


def pydoc_text() -> str:
    """The English text of Python's own help topics (pydoc_data.topics, ~65k words), in a fixed order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def load(path: Path | None, lowercase: bool = True) -> list[list[str]]:
    """Paragraphs of tokens from a UTF-8 text file, or from the embedded pydoc text when `path` is None."""
    if path is None:
        return paragraphs(pydoc_text(), lowercase)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--data {path}: no such text file")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"--data {path}: cannot read it ({exc.strerror})") from None
    sentences = paragraphs(text, lowercase)
    if not sentences:
        raise UserError(f"--data {path}: the file has no words")
    return sentences


@dataclass
class Vocabulary:
    words: list[str]  # id -> word, by descending count
    counts: np.ndarray  # int64 [V], the training corpus counts

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_count: int) -> "Vocabulary":
        counts = Counter(w for s in sentences for w in s)
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(kept, np.array([counts[w] for w in kept], dtype=np.int64))

    def encode(self, sentences: Iterable[list[str]]) -> list[np.ndarray]:
        """Each paragraph as int64 ids, words outside the vocabulary dropped (as word2vec.c does)."""
        out = []
        for s in sentences:
            ids = np.fromiter((self.index[w] for w in s if w in self.index), dtype=np.int64)
            if len(ids):
                out.append(ids)
        return out


@dataclass
class Analogy:
    section: str
    words: tuple[str, str, str, str]  # a : b :: c : d


def read_analogies(path: Path, lowercase: bool = True) -> list[Analogy]:
    """questions-words.txt format: `: section` lines, then `a b c d` lines (a is to b as c is to d)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--analogies {path}: no such file")
    section, out = "", []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            section = line[1:].strip()
            continue
        words = [normalise(w, lowercase) for w in line.split()]
        if len(words) != 4:
            raise UserError(f"--analogies {path}:{number}: expected four words 'a b c d', got {line!r}")
        out.append(Analogy(section, tuple(words)))
    if not out:
        raise UserError(f"--analogies {path}: no analogy questions found")
    return out


def read_similarities(path: Path, lowercase: bool = True) -> list[tuple[str, str, float]]:
    """WordSim-353 style: `word1<TAB>word2<TAB>score` (or space-separated); a non-numeric first row is a header."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--similarities {path}: no such file")
    out, first = [], True
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        header_allowed, first = first, False
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields if f.strip()]
        try:
            if len(fields) < 3:
                raise ValueError
            score = float(fields[2])
        except ValueError:
            if header_allowed:
                continue  # header such as "Word 1<TAB>Word 2<TAB>Human (mean)"
            raise UserError(f"--similarities {path}:{number}: expected 'word1 word2 score', got {line.strip()!r}") from None
        out.append((normalise(fields[0], lowercase), normalise(fields[1], lowercase), score))
    if not out:
        raise UserError(f"--similarities {path}: no word pairs found")
    return out

