"""The bit-parallel LCS behind grounded decoding's consensus (coverlora/scoring/rouge.py): the same lengths as
rouge_score's table, and the same ROUGE-L F1 to the last bit, on any token lists."""

from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score.rouge_scorer import _lcs_table

from coverlora.scoring.rouge import lcs_length, pairwise_rouge_l, scorer

TOKENS = st.lists(st.sampled_from(["a", "b", "c", "d", "sql", "team"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(TOKENS, TOKENS)
def test_lcs_length_is_rouge_scores_table(a, b):
    expected = _lcs_table(a, b)[-1][-1] if a and b else 0
    assert lcs_length(a, b) == expected == lcs_length(b, a)


WORDS = st.lists(st.sampled_from(["I", "led", "SQL", "reports", "at", "Acme", "for", "five", "years", "teams",
                                  "managed", "data", "."]), max_size=30).map(" ".join)


@settings(max_examples=100, deadline=None)
@given(st.lists(WORDS, min_size=2, max_size=5))
def test_pairwise_scores_are_rouge_scores_own(texts):
    scores = pairwise_rouge_l(texts)
    for i, reference in enumerate(texts):
        for j, prediction in enumerate(texts):
            if i != j:
                assert scores[i][j] == scorer().score(reference, prediction)["rougeL"].fmeasure
