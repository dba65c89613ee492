"""Tests for the text-similarity, diversity and statistics scores."""

import math
from pathlib import Path

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from coverlora.scoring import (
    BertScoreModel,
    bert_score,
    bootstrap_diff_ci,
    default_model,
    describe,
    distinct_n,
    repetition_ratio,
    roberta_large,
    rouge_l,
    self_bleu,
    seq_rep_n,
)
from coverlora.scoring.repetition import words

LETTER = "I am writing to apply for the Data Scientist position at Acme. I know Python well."


# ---------------------------------------------------------------------------- ROUGE-L


def test_rouge_l_is_one_for_identical_and_zero_for_disjoint_or_empty():
    scores = rouge_l([LETTER, "completely unrelated words", ""], [LETTER, "nothing shared here", LETTER])
    assert scores == [pytest.approx(1.0), 0.0, 0.0]


def test_rouge_l_stems_words():
    assert rouge_l(["running dogs"], ["run dog"]) == [pytest.approx(1.0)]


def test_rouge_l_partial_overlap_is_lcs_f1():
    # LCS of "a b c d" and "a c e" is "a c": precision 2/4, recall 2/3, F1 = 4/7.
    assert rouge_l(["a b c d"], ["a c e"]) == [pytest.approx(4 / 7)]


def test_rouge_l_rejects_unpaired_inputs():
    with pytest.raises(ValueError):
        rouge_l(["one"], ["one", "two"])


# ---------------------------------------------------------------------------- repetition


def test_words_are_lowercase_and_keep_inner_apostrophes():
    assert words("Don't STOP, Acme\u2019s team!") == ["don't", "stop", "acme's", "team"]


def test_repetition_ratio_by_hand():
    assert repetition_ratio("The cat saw the cat") == pytest.approx(1 - 3 / 5)
    assert repetition_ratio("all words differ") == 0.0
    assert repetition_ratio("") == 0.0


def test_seq_rep_and_distinct_by_hand():
    text = "a b a b a"  # bigrams: ab ba ab ba -> 2 unique of 4
    assert seq_rep_n(text, n=2) == pytest.approx(0.5)
    assert distinct_n(text, n=2) == pytest.approx(0.5)
    assert distinct_n(text, n=1) == pytest.approx(2 / 5)
    assert seq_rep_n("one two three", n=4) == 0.0  # too short to have a 4-gram
    assert distinct_n("", n=2) == 0.0


def test_seq_rep_4_flags_a_looping_letter():
    looping = "I am excited to join your team. " * 4
    assert seq_rep_n(looping) > 0.6
    assert seq_rep_n(LETTER) == 0.0


def test_self_bleu_of_identical_texts_is_one_and_of_disjoint_texts_zero():
    assert self_bleu([LETTER] * 3) == pytest.approx(1.0)
    assert self_bleu(["alpha beta gamma delta", "one two three four", "red green blue"]) == 0.0


def test_self_bleu_matches_nltk_sentence_bleu_with_method1():
    texts = [
        "the quick brown fox jumps over the lazy dog",
        "the quick red fox jumps over a sleeping dog today",
        "a lazy dog sleeps",
        "completely different content here",
        "the dog",
    ]
    tokenized = [words(text) for text in texts]
    smoothing = SmoothingFunction().method1
    expected = np.mean(
        [
            sentence_bleu(tokenized[:i] + tokenized[i + 1 :], tokenized[i], smoothing_function=smoothing)
            for i in range(len(texts))
        ]
    )
    assert 0.0 < expected < 1.0
    assert self_bleu(texts) == pytest.approx(expected)


def test_self_bleu_sample_is_fixed_by_seed_and_capped():
    texts = [f"letter number {i} about data science and python {i % 7}" for i in range(30)]
    assert self_bleu(texts, max_texts=10, seed=3) == self_bleu(texts, max_texts=10, seed=3)
    # Capping changes which texts serve as references, so the score moves.
    assert self_bleu(texts, max_texts=10, seed=3) != self_bleu(texts, max_texts=30)


def test_self_bleu_needs_two_texts_with_words():
    assert math.isnan(self_bleu([LETTER, "", "   "]))


# ---------------------------------------------------------------------------- statistics


def test_describe_ignores_missing_values():
    summary = describe([1.0, None, 3.0, float("nan"), 5.0])
    assert summary == {"mean": 3.0, "std": pytest.approx(2.0), "median": 3.0, "n": 3}
    assert describe([None]) == {"mean": None, "std": None, "median": None, "n": 0}
    assert describe([2.0])["std"] is None


def test_bootstrap_ci_contains_true_paired_difference():
    rng = np.random.default_rng(42)
    row_difficulty = rng.normal(0.5, 0.2, size=400)
    a = row_difficulty + rng.normal(0, 0.05, size=400)
    b = row_difficulty + 0.03 + rng.normal(0, 0.05, size=400)
    ci = bootstrap_diff_ci(list(a), list(b))
    assert ci["low"] < 0.03 < ci["high"]
    assert ci["low"] > 0  # pairing removes row difficulty, so a small gain is detectable
    assert ci["diff"] == pytest.approx(np.mean(b - a))
    assert ci["n"] == 400


def test_bootstrap_ci_drops_incomplete_pairs_and_is_reproducible():
    a = [0.1, 0.2, None, 0.4]
    b = [0.2, 0.3, 0.9, float("nan")]
    ci = bootstrap_diff_ci(a, b, seed=7)
    assert ci["n"] == 2
    assert ci["diff"] == pytest.approx(0.1)
    assert ci == bootstrap_diff_ci(a, b, seed=7)
    with pytest.raises(ValueError):
        bootstrap_diff_ci([0.1], [0.1, 0.2])


# ---------------------------------------------------------------------------- BERTScore


def test_model_labels_say_raw_or_rescaled():
    minilm = default_model()
    assert Path(minilm.model_type, "config.json").is_file()
    assert (minilm.baseline_path, minilm.label) == (None, "all-MiniLM-L6-v2 L6 (raw)")
    roberta = roberta_large()
    assert roberta.num_layers == 17
    assert roberta.baseline_path is not None and Path(roberta.baseline_path).is_file()
    assert roberta.label == "roberta-large L17 (rescaled)"


def test_bert_score_skips_the_model_when_every_prediction_is_empty():
    # A model that cannot load proves no encoder is built for empty predictions.
    unloadable = BertScoreModel("/nonexistent/model", num_layers=1, baseline_path=None, display_name="x")
    result = bert_score(["", "  "], [LETTER, LETTER], unloadable)
    assert result["f1"] == [0.0, 0.0] and result["precision"] == [0.0, 0.0]
    assert result["rescaled"] is False


def test_bert_score_minilm_identical_pairs_score_one(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the bundled model must never need the hub
    other = "Our quarterly revenue grew thanks to the new marketing campaign."
    result = bert_score([LETTER, other, ""], [LETTER, other, LETTER], default_model(), device="cpu")
    assert result["f1"][:2] == [pytest.approx(1.0, abs=1e-4)] * 2
    assert result["precision"][0] == pytest.approx(1.0, abs=1e-4)
    assert result["f1"][2] == 0.0
    assert result["rescaled"] is False and result["label"] == "all-MiniLM-L6-v2 L6 (raw)"
