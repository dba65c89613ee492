"""ROUGE-L between generated and reference letters, in any script.

rouge_score's default tokenizer keeps only a-z and 0-9, so a Chinese or Arabic letter identical to its reference
scored 0. Ours splits words with text.words (letters and digits of any script, one token per CJK character) and
stems Latin-script words with the same Porter stemmer, so English scores are unchanged.
"""

from collections.abc import Sequence
from functools import lru_cache

from coverlora.text import words


class UnicodeTokenizer:
    """rouge_score's tokenizer interface: tokenize(text) -> tokens."""

    def __init__(self):
        from nltk.stem import porter

        self.stemmer = porter.PorterStemmer()

    @lru_cache(maxsize=100_000)  # noqa: B019 (one scorer per process, kept for its life: nothing leaks)
    def _stem(self, token: str) -> str:
        # rouge_score stems tokens longer than 3 characters; other scripts have no Porter stemmer.
        return self.stemmer.stem(token) if len(token) > 3 and token.isascii() else token

    def tokenize(self, text: str) -> list[str]:
        return [self._stem(token) for token in words(text)]


@lru_cache(maxsize=1)
def scorer():
    from rouge_score import rouge_scorer  # here, so the prompt builder can use grounding without it

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer())


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 of each prediction against its reference (Porter-stemmed Latin words). An empty prediction
    scores 0.0."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    return [scorer().score(reference, prediction)["rougeL"].fmeasure if prediction.strip() else 0.0
            for prediction, reference in zip(predictions, references)]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """The longest common subsequence of two token lists, by Hyyrö's bit-parallel algorithm: one big-integer
    step per token of `a` instead of rouge_score's len(a) x len(b) table in Python (hundreds of times faster
    on letters; the same length, tests/test_rouge.py)."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for j, token in enumerate(b):
        masks[token] = masks.get(token, 0) | (1 << j)
    full = (1 << len(b)) - 1
    row = full  # the zeros of `row` count the LCS so far
    for token in a:
        match = row & masks.get(token, 0)
        row = ((row + match) | (row - match)) & full
    return len(b) - row.bit_count()


def pairwise_rouge_l(texts: Sequence[str]) -> list[list[float]]:
    """ROUGE-L F1 between every two of `texts` (each tokenized once, as rouge_l tokenizes): [i][j] scores text j
    as the prediction against text i as the reference (F1 is symmetric, so [i][j] == [j][i])."""
    tokens = [scorer()._tokenizer.tokenize(text) for text in texts]
    scores = [[0.0] * len(texts) for _ in texts]
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            common = lcs_length(tokens[i], tokens[j])
            if common:  # rouge_score's arithmetic, so scores (and MBR's ties) are its own to the last bit
                precision, recall = common / len(tokens[j]), common / len(tokens[i])
                scores[i][j] = scores[j][i] = 2 * precision * recall / (precision + recall)
    return scores
