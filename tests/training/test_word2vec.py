"""word2vec: tokenisation, the formulas (subsampling, noise, SGNS loss and its hand-written SGD step),
evaluation files, the count-based reference and the untrained baseline, the step budget, tiny runs that
rebuild from their checkpoint, bad input, and the quick-profile bar."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dnnzoo.errors import UserError
from training import checkpoint
from training import cli as train_cli
from training import word2vec as w2v
from training import word2vec_baselines as wb
from training import word2vec_eval as ev
from training.baselines import BASELINES
from training.config import TrainConfig
from training.data import text
from training.runs import read_metrics
from training.word2vec_pairs import PAIRS

# --- tokenisation and vocabulary ------------------------------------------------------------------


def test_tokenize_lowercases_keeps_identifiers_and_inner_apostrophes():
    assert text.tokenize("Don't call __init__() twice; UTF8 costs 2 bytes.") == [
        "don't", "call", "__init__", "twice", "utf8", "costs", "2", "bytes",
    ]


def test_tokenize_applies_nfkc_and_can_keep_case():
    assert text.tokenize("The ﬁle Café") == ["the", "file", "café"]  # "ﬁ" ligature -> "fi"
    assert text.tokenize("The ﬁle Café", lowercase=False) == ["The", "file", "Café"]


def test_paragraphs_split_on_blank_lines_and_drop_empty_ones():
    assert text.paragraphs("One two\nthree.\n\n  \n\n!!!\n\nFour") == [["one", "two", "three"], ["four"]]


def test_vocabulary_orders_by_count_then_alphabet_and_drops_rare_words():
    vocab = text.Vocabulary.build([["b", "a", "c", "b"], ["a", "d", "b", "c"]], min_count=2)
    assert vocab.words == ["b", "a", "c"]
    assert vocab.counts.tolist() == [3, 2, 2]
    encoded = vocab.encode([["d", "c", "b"], ["d"]])
    assert [e.tolist() for e in encoded] == [[2, 0]]  # OOV words removed, empty paragraphs dropped


def test_the_fixed_pairs_occur_in_the_embedded_text():
    vocab = text.Vocabulary.build(text.load(None), min_count=5)
    assert len(PAIRS) >= 20
    assert all(a in vocab.index and b in vocab.index for a, b in PAIRS)


# --- formulas ----------------------------------------------------------------------------------------


def test_subsampling_is_word2vec_c_formula():
    keep = w2v.keep_probabilities(np.array([900, 99, 1]), sample=0.01)
    f = np.array([0.9, 0.099, 0.001])
    assert keep[0] == pytest.approx((math.sqrt(0.9 / 0.01) + 1) * 0.01 / 0.9)
    assert keep[1] == pytest.approx((math.sqrt(0.099 / 0.01) + 1) * 0.01 / 0.099)
    assert keep[2] == 1.0  # rare words are always kept (the formula exceeds 1)
    assert np.all(keep <= 1) and np.all(np.diff(keep) > 0) and f.sum() == pytest.approx(1)
    assert w2v.keep_probabilities(np.array([900, 100]), sample=0).tolist() == [1.0, 1.0]


def test_noise_distribution_is_unigram_to_the_three_quarters():
    p = w2v.noise_distribution(np.array([16, 1]))
    assert p.tolist() == pytest.approx([8 / 9, 1 / 9])  # 16^0.75 = 8


def test_skipgram_pairs_stay_in_window_and_paragraph():
    # ids are positions, so a pair tells which two positions it joined
    paragraphs = [np.arange(0, 6), np.arange(6, 10)]
    keep = np.ones(10)
    c, x = w2v.skipgram_pairs(paragraphs, keep, window=1, rng=np.random.default_rng(0))
    expected = {(i, i + 1) for i in list(range(5)) + list(range(6, 9))}
    assert set(zip(c.tolist(), x.tolist())) == expected | {(b, a) for a, b in expected}
    seen = set()
    for seed in range(30):
        c, x = w2v.skipgram_pairs(paragraphs, keep, window=2, rng=np.random.default_rng(seed))
        pairs = set(zip(c.tolist(), x.tolist()))
        assert all(1 <= abs(a - b) <= 2 and (a < 6) == (b < 6) for a, b in pairs)
        seen |= pairs
    assert (0, 2) in seen and (2, 0) in seen and (5, 6) not in seen  # reach 2 happens; no crossing


def test_skipgram_pairs_drop_subsampled_words_before_windowing():
    keep = np.array([1.0, 0.0, 1.0])
    c, x = w2v.skipgram_pairs([np.array([0, 1, 2])], keep, window=1, rng=np.random.default_rng(0))
    assert set(zip(c.tolist(), x.tolist())) == {(0, 2), (2, 0)}


def test_sgns_loss_on_a_hand_case():
    v = torch.tensor([[1.0, 0.0]])
    u_ctx = torch.tensor([[2.0, 0.0]])
    u_noise = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])  # scores 0 and -1
    expected = math.log(1 + math.exp(-2)) + math.log(2) + math.log(1 + math.exp(-1))
    assert w2v.sgns_loss(v, u_ctx, u_noise, torch.ones(1, 2)).item() == pytest.approx(expected, rel=1e-6)
    masked = math.log(1 + math.exp(-2)) + math.log(2)
    assert w2v.sgns_loss(v, u_ctx, u_noise, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(masked, rel=1e-6)


def test_hand_written_sgd_step_equals_autograd_sgd():
    torch.manual_seed(0)
    model = w2v.build_model(7, 4)
    with torch.no_grad():
        model.input.weight.normal_()
        model.output.weight.normal_()
    centre = torch.tensor([0, 1, 1, 3])
    context = torch.tensor([2, 2, 5, 0])
    noise = torch.tensor([[2, 4, 6], [6, 6, 1], [5, 0, 3], [1, 2, 0]])  # repeats, and noise == context
    reference = w2v.build_model(7, 4)
    reference.load_state_dict(model.state_dict())
    loss = w2v.sgns_loss(
        reference.input(centre), reference.output(context), reference.output(noise), (noise != context[:, None]).float()
    )
    loss.sum().backward()
    lr = 0.1
    returned = w2v.sgd_step(model, centre, context, noise, lr)
    assert torch.allclose(returned, loss.detach(), atol=1e-6)
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(mine.detach(), theirs.detach() - lr * theirs.grad, atol=1e-6)


def test_forward_returns_the_input_vectors_or_their_sum_with_the_output_vectors():
    ids = torch.tensor([4, 0, 4])
    model = w2v.build_model(5, 3)
    with torch.no_grad():
        model.output.weight.normal_()
    assert torch.equal(model(ids), model.input.weight[ids]) and model.vectors is model.input.weight
    summed = w2v.build_model(5, 3, vectors="sum")
    summed.load_state_dict(model.state_dict())
    assert torch.equal(summed(ids), model.input.weight[ids] + model.output.weight[ids])
    assert torch.equal(summed.vectors[ids], summed(ids))


# --- evaluation --------------------------------------------------------------------------------------


def _toy_space():
    words = ["man", "woman", "king", "queen", "apple", "pear"]
    vectors = np.array(
        [[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1], [0, 0.1, 0, 1]], dtype=np.float32
    )
    return {w: i for i, w in enumerate(words)}, ev.unit_rows(vectors)


def test_pair_scores_count_mutual_top10_and_either_top20_with_oov_as_misses():
    index, unit = _toy_space()
    scores = ev.pair_scores(index, unit, [("apple", "pear"), ("man", "unknownword")])
    assert scores == {"pairs_top10_mutual": 0.5, "pairs_top20_either": 0.5, "pairs_coverage": 0.5}
    top1 = ev.nearest(unit, [index["apple"]], 1)
    assert top1.tolist() == [[index["pear"]]]


def test_analogies_file_parsing_and_3cosadd(tmp_path):
    index, unit = _toy_space()
    path = tmp_path / "questions-words.txt"
    path.write_text(": royals\nMan Woman King Queen\nman woman king prince\n: fruit\napple pear man woman\n")
    questions = text.read_analogies(path)
    assert [q.section for q in questions] == ["royals", "royals", "fruit"]
    assert questions[0].words == ("man", "woman", "king", "queen")  # lowercased like the training text
    result = ev.analogy_accuracy(index, unit, questions)
    assert result["coverage"] == pytest.approx(2 / 3) and result["answered"] == 2
    # pear − apple + man points at woman (king and queen score lower; the question words are excluded)
    assert result["sections"] == {"royals": 1.0, "fruit": 1.0} and result["accuracy"] == 1.0


def test_analogies_file_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text(": s\na b c\n")
    with pytest.raises(UserError, match="bad.txt:2"):
        text.read_analogies(bad)
    with pytest.raises(UserError, match="no such file"):
        text.read_analogies(tmp_path / "missing.txt")


def test_similarity_file_with_header_tabs_or_spaces_and_spearman(tmp_path):
    index, unit = _toy_space()
    path = tmp_path / "wordsim.tsv"
    path.write_text("Word 1\tWord 2\tHuman (mean)\nking\tqueen\t8.0\nman\tapple\t1.0\napple\tpear\t9.5\nking\tmissing\t5\n")
    triples = text.read_similarities(path)
    assert triples[0] == ("king", "queen", 8.0) and len(triples) == 4
    result = ev.similarity_spearman(index, unit, triples)
    assert result["coverage"] == 0.75
    cosines = [unit[index[a]] @ unit[index[b]] for a, b, _ in triples[:3]]
    assert np.argsort(cosines).tolist() == [1, 0, 2]  # the toy space agrees with the human order
    assert result["spearman"] == pytest.approx(1.0)
    spaces = tmp_path / "spaces.txt"
    spaces.write_text("king queen 9\nman apple 1\n")
    assert text.read_similarities(spaces) == [("king", "queen", 9.0), ("man", "apple", 1.0)]
    broken = tmp_path / "broken.tsv"
    broken.write_text("king\tqueen\t9\nman\tapple\tlots\n")
    with pytest.raises(UserError, match="broken.tsv:2"):
        text.read_similarities(broken)


def test_spearman_handles_ties_like_scipy():
    from scipy.stats import spearmanr

    x, y = [1, 2, 2, 3, 7, 7, 7], [0.3, 0.1, 0.5, 0.5, 0.9, 0.2, 1.0]
    assert ev.ranks(x).tolist() == [1, 2.5, 2.5, 4, 6, 6, 6]
    assert ev.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert math.isnan(ev.spearman([1, 1, 1], [1, 2, 3]))


# --- the count-based reference --------------------------------------------------------------------


def test_cooccurrence_weights_nearer_words_more_and_stops_at_paragraphs():
    counts = wb.cooccurrence([np.array([0, 1, 2]), np.array([2, 3])], vocab_size=4, window=2).toarray()
    expected = np.array([[0, 1, 0.5, 0], [1, 0, 1, 0], [0.5, 1, 0, 1], [0, 0, 1, 0]])  # distance 2 counts 1/2
    np.testing.assert_allclose(counts, expected)


def test_ppmi_on_a_hand_case():
    import scipy.sparse as sparse

    counts = sparse.csr_matrix(np.array([[0.0, 2.0], [2.0, 4.0]]))  # total 8, P(w) = P(c) = (1/4, 3/4)
    plain = wb.ppmi(counts, smoothing=1.0).toarray()
    np.testing.assert_allclose(plain, [[0, math.log(4 / 3)], [math.log(4 / 3), 0]])  # log(8/9) < 0 clipped
    smoothed = wb.ppmi(counts, smoothing=0.75).toarray()
    p_context_0 = 2**0.75 / (2**0.75 + 6**0.75)
    assert smoothed[1, 0] == pytest.approx(math.log((2 / 8) / (6 / 8 * p_context_0)))


def test_randomised_svd_finds_the_top_singular_values_and_vectors():
    import scipy.sparse as sparse

    rng = np.random.default_rng(1)
    left, _ = np.linalg.qr(rng.standard_normal((80, 60)))
    right, _ = np.linalg.qr(rng.standard_normal((70, 60)))
    matrix = sparse.csr_matrix(left @ np.diag(0.7 ** np.arange(60)) @ right.T)
    u, s = wb.top_singular(matrix, 5, seed=0)
    np.testing.assert_allclose(s, 0.7 ** np.arange(5), rtol=1e-6)
    np.testing.assert_allclose(np.abs((u * left[:, :5]).sum(0)), 1, rtol=1e-6)  # the same vectors, up to sign


def test_ppmi_svd_finds_words_that_share_contexts():
    # "cat"/"dog" (0, 1) and "red"/"blue" (2, 3) each appear between the same neighbours; 4..9 are those neighbours
    rng = np.random.default_rng(0)
    paragraphs = [np.array([4 + 2 * (w >= 2) + rng.integers(2), w, 8 + (w >= 2)]) for w in rng.integers(0, 4, 400)]
    vectors = wb.ppmi_svd(paragraphs, vocab_size=10, window=1, dim=4, seed=0)
    unit = ev.unit_rows(vectors)
    assert vectors.shape == (10, 4)
    assert ev.nearest(unit, [0, 2], 1).tolist() == [[1], [3]]


# --- runs ---------------------------------------------------------------------------------------------


def _tiny(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(family="word2vec", profile="tiny", out=tmp_path / "run", progress=False, threads=1, **overrides)


def test_tiny_run_writes_the_run_folder_and_a_checkpoint_that_rebuilds(tmp_path):
    analogies = tmp_path / "a.txt"
    analogies.write_text(": code\ntrue false keys values\nclass instance key value\nzzz true false keys\n")
    similarities = tmp_path / "s.tsv"
    similarities.write_text("true\tfalse\t9\nclass\tthe\t1\nkeys\tvalues\t8\n")
    record = w2v.train(_tiny(tmp_path), w2v.Options(analogies=analogies, similarities=similarities))
    run = tmp_path / "run"
    for name in ("checkpoint.pt", "metrics.json", "curves.png", "words_pca.png"):
        assert (run / name).stat().st_size > 0, name
    final = read_metrics(run)["final"]
    assert final == record["final"]
    assert final["analogy_coverage"] == pytest.approx(2 / 3) and final["similarity_coverage"] == 1.0

    ckpt = checkpoint.load(run, family="word2vec")
    extra = ckpt["extra"]
    model = w2v.build_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    # the scores are the served vectors' and the baselines are what this test computes on its own
    vocab = text.Vocabulary(extra["vocab"], np.array(extra["counts"]))
    files = text.read_analogies(analogies), text.read_similarities(similarities)
    assert w2v.score_vectors(model.vectors.detach().numpy(), vocab, *files) == {k: final[k] for k in ("pairs_top10_mutual", "pairs_top20_either", "pairs_coverage", "analogy_accuracy", "analogy_coverage", "analogy_sections", "similarity_spearman", "similarity_coverage")}
    untrained = w2v.score_vectors(((torch.rand(len(vocab), 16, generator=torch.Generator().manual_seed(42)) - 0.5) / 16).numpy(), vocab, *files)
    metrics = ["pairs_top10_mutual", "pairs_top20_either", "analogy_accuracy", "similarity_spearman"]
    assert [(r["baseline"], r["metric"], r["model"], r["value"]) for r in final[BASELINES]] == [("untrained", m, final[m], untrained[m]) for m in metrics]
    assert final["pairs_top20_either"] > untrained["pairs_top20_either"]  # 100 steps already beat chance here
    assert [(r["baseline"], r["metric"]) for r in final[w2v.REFERENCES]] == [("ppmi_svd", m) for m in metrics]
    assert len(extra["vocab"]) == len(extra["counts"]) == ckpt["model_args"]["vocab_size"] == final["vocab_size"]
    assert extra["vocab"][0] == "the" and extra["lowercase"] is True and extra["token_pattern"] == text.TOKEN_PATTERN
    index = {w: i for i, w in enumerate(extra["vocab"])}
    ids = torch.tensor([index[w] for w in text.tokenize("True FALSE")])
    assert model(ids).shape == (2, 16)
    weights = ckpt["state_dict"]
    assert ckpt["model_args"]["vectors"] == "input" and torch.equal(model(ids), weights["input.weight"][ids])


def test_same_seed_same_vectors(tmp_path):
    data = tmp_path / "corpus.txt"
    data.write_text(text.pydoc_text()[:20000])
    first = w2v.train(_tiny(tmp_path / "a", data=data, steps=30), w2v.Options(min_count=2))
    second = w2v.train(_tiny(tmp_path / "b", data=data, steps=30), w2v.Options(min_count=2))
    a = checkpoint.load(tmp_path / "a" / "run")["state_dict"]["input.weight"]
    b = checkpoint.load(tmp_path / "b" / "run")["state_dict"]["input.weight"]
    assert torch.equal(a, b) and first["history"][0]["loss"] == second["history"][0]["loss"]


def test_adam_variant_trains_too(tmp_path):
    data = tmp_path / "corpus.txt"
    data.write_text(text.pydoc_text()[:20000])
    record = w2v.train(_tiny(tmp_path, data=data, optimizer="adam", lr=0.01, steps=60), w2v.Options(min_count=2))
    assert record["history"][-1]["loss"] < record["history"][0]["loss"]


def test_a_short_text_trains_the_step_budget_in_rounds(tmp_path):
    data = tmp_path / "corpus.txt"
    data.write_text(text.pydoc_text()[:20000])  # a few steps an epoch: the tiny profile's 100 steps are many epochs
    history = w2v.train(_tiny(tmp_path / "a", data=data), w2v.Options(min_count=2))["history"]
    per_epoch = history[0]["step"] / history[0]["epoch"]
    # the budget is planned from the first epoch's steps (a whole number); the others vary by a step or so
    assert 100 <= history[-1]["step"] <= 150 and history[-1]["epoch"] >= 100 / per_epoch / 1.5
    assert all(b["step"] - a["step"] >= 50 for a, b in zip(history, history[1:-1]))  # one row per round of >= 50 steps
    given = w2v.train(_tiny(tmp_path / "b", data=data, epochs=3), w2v.Options(min_count=2))["history"]
    assert given[-1]["epoch"] == 3  # --epochs wins over the budget


def test_vectors_sum_serves_input_plus_output_vectors(tmp_path):
    data = tmp_path / "corpus.txt"
    data.write_text(text.pydoc_text()[:5000])
    final = w2v.train(_tiny(tmp_path, data=data, steps=20), w2v.Options(min_count=2, vectors="sum"))["final"]
    ckpt = checkpoint.load(tmp_path / "run", family="word2vec")
    model = w2v.build_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    weights = ckpt["state_dict"]
    assert ckpt["model_args"]["vectors"] == "sum"
    assert torch.equal(model.vectors, weights["input.weight"] + weights["output.weight"])
    vocab = text.Vocabulary(ckpt["extra"]["vocab"], np.array(ckpt["extra"]["counts"]))
    assert w2v.score_vectors(model.vectors.detach().numpy(), vocab)["pairs_top20_either"] == final["pairs_top20_either"]


def test_a_run_that_learnt_nothing_says_so(tmp_path, capsys):
    code = train_cli.main(["word2vec", "--profile", "tiny", "--lr", "1e-9", "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1"])
    assert code == 0
    final = read_metrics(tmp_path / "run")["final"]
    assert [r["beats"] for r in final[BASELINES]] == [False, False]  # the untrained vectors' neighbours, unchanged
    err = capsys.readouterr().err
    assert "WARNING: word2vec: pairs_top10_mutual" in err and "untrained baseline" in err


def test_a_text_without_the_pairs_says_it_cannot_be_judged(tmp_path, capsys):
    data = tmp_path / "corpus.txt"
    data.write_text("alpha beta gamma delta " * 50)
    record = w2v.train(_tiny(tmp_path, data=data), w2v.Options(min_count=2))
    assert record["final"][BASELINES] == [] and record["final"]["pairs_coverage"] == 0
    assert "WARNING: word2vec: no score to judge the vectors by" in capsys.readouterr().err


def test_cli_runs_tiny_profile(tmp_path, capsys):
    data = tmp_path / "corpus.txt"
    data.write_text(text.pydoc_text()[:5000])
    code = train_cli.main(["word2vec", "--profile", "tiny", "--data", str(data), "--min-count", "2", "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1"])
    assert code == 0
    assert "pairs_top10_mutual" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, flags, message",
    [
        (None, [], "no such text file"),
        ("... --- !!! ???\n", [], "has no words"),
        ("one two three\n", [], "fewer than two words"),
        ("a b a b\n", ["--optimizer", "rmsprop"], "--optimizer must be one of"),
        ("a b a b\n", ["--window", "0"], "--window must be at least 1"),
        ("a b a b\n", ["--schedule", "1cycle"], "--schedule"),
        ("a b a b\n", ["--init-from", "somewhere"], "--init-from"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, capsys, content, flags, message):
    data = tmp_path / "corpus.txt"
    if content is not None:
        data.write_text(content)
    code = train_cli.main(["word2vec", "--profile", "tiny", "--data", str(data), "--out", str(tmp_path / "run"), "--no-progress", *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


# --- the quality bar --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [42, 7])
def test_quick_profile_meets_the_pair_bar(quick_build, tmp_path, seed):
    if seed == 42:  # the default seed: the run `dnnzoo build` made
        final = read_metrics(quick_build.run("word2vec"))["final"]
    else:
        config = TrainConfig(family="word2vec", profile="quick", out=tmp_path, seed=seed, progress=False)
        final = w2v.train(config, w2v.Options())["final"]
    assert final["pairs_coverage"] == 1.0
    assert final["pairs_top10_mutual"] >= 0.40, final
    assert final["pairs_top20_either"] >= 0.60, final
    assert all(r["beats"] for r in final[BASELINES]), final[BASELINES]  # the untrained vectors