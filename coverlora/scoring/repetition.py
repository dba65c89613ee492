"""Repetition and diversity measures over letters (generated or reference alike)."""

import math
import random
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def words(text: str) -> list[str]:
    """Lowercase word tokens; an inner apostrophe stays part of the word (don't, company's)."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repetition_ratio(text: str) -> float:
    """1 - unique words / words; 0.0 for a text without words."""
    tokens = words(text)
    return 1.0 - len(set(tokens)) / len(tokens) if tokens else 0.0


def seq_rep_n(text: str, n: int = 4) -> float:
    """Share of the text's n-grams that repeat an earlier one (seq-rep-n, Welleck et al. 2019).

    0.0 when the text has fewer than n words.
    """
    grams = _ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(text: str, n: int = 2) -> float:
    """Unique n-grams / n-grams (Li et al. 2016); 0.0 when the text has fewer than n words."""
    grams = _ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else 0.0


# nltk's SmoothingFunction().method1: a zero match count becomes this epsilon.
_SMOOTHING_EPSILON = 0.1


def self_bleu(texts: Sequence[str], n: int = 4, max_texts: int = 200, seed: int = 0) -> float:
    """Mean BLEU-n of each text against all the other texts as references (Zhu et al. 2018).

    Texts without words are dropped; if more than max_texts remain, a fixed-seed sample of
    max_texts is scored (each against the rest of the sample). BLEU matches nltk's
    sentence_bleu with uniform weights and SmoothingFunction().method1. Returns NaN when fewer
    than two texts remain. Higher means less diverse.
    """
    tokenized = [tokens for tokens in map(words, texts) if tokens]
    if len(tokenized) > max_texts:
        tokenized = random.Random(seed).sample(tokenized, max_texts)
    if len(tokenized) < 2:
        return math.nan
    counts = [[Counter(_ngrams(tokens, order)) for order in range(1, n + 1)] for tokens in tokenized]
    best_counts = _top_two_counts(counts)
    lengths = [len(tokens) for tokens in tokenized]
    scores = [
        _bleu_against_others(i, text_counts, best_counts, lengths, n)
        for i, text_counts in enumerate(counts)
    ]
    return sum(scores) / len(scores)


def _bleu_against_others(
    index: int, hypothesis_counts: list[Counter], best_counts: list[dict], lengths: list[int], n: int
) -> float:
    log_precision = 0.0
    for order, grams in enumerate(hypothesis_counts):
        matches = sum(
            min(count, _max_count_elsewhere(best_counts[order][gram], index))
            for gram, count in grams.items()
        )
        if order == 0 and matches == 0:
            return 0.0  # no shared word at all (nltk also returns 0 here, before smoothing)
        total = max(1, sum(grams.values()))
        log_precision += math.log((matches or _SMOOTHING_EPSILON) / total) / n
    other_lengths = lengths[:index] + lengths[index + 1 :]
    return _brevity_penalty(lengths[index], other_lengths) * math.exp(log_precision)


def _top_two_counts(counts: list[list[Counter]]) -> list[dict]:
    """Per order, n-gram -> its two highest counts across texts as [(count, text index), ...].

    A text's clipping count against "all other texts" is then the top count unless that
    top count is its own, which makes self-BLEU linear rather than quadratic in n-grams.
    """
    orders = len(counts[0])
    best: list[dict] = [{} for _ in range(orders)]
    for index, text_counts in enumerate(counts):
        for order, grams in enumerate(text_counts):
            for gram, count in grams.items():
                top = best[order].setdefault(gram, [])
                top.append((count, index))
                if len(top) > 2:
                    top.sort(reverse=True)
                    top.pop()
    return best


def _max_count_elsewhere(top: list[tuple[int, int]], index: int) -> int:
    return max((count for count, owner in top if owner != index), default=0)


def _brevity_penalty(hypothesis_length: int, reference_lengths: list[int]) -> float:
    # nltk picks the reference length closest to the hypothesis, the shorter one on ties.
    closest = min(reference_lengths, key=lambda length: (abs(length - hypothesis_length), length))
    return 1.0 if hypothesis_length > closest else math.exp(1 - closest / hypothesis_length)
