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
