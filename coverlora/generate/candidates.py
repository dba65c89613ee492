"""Grounded decoding: of several candidate letters for one row (the greedy one and N samples), keep the one the
checks find least wrong.

A candidate's problems, compared in this order: claims the resume does not back (borrowed or unsupported, from
scoring/claims.py), then the company, the title and the applicant left unnamed, then template placeholders. Ties
go to consensus, by minimum Bayes risk: the tied candidate with the highest mean ROUGE-L against all the other
candidates, the letter the samples agree on most.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from coverlora.scoring.claims.verdicts import check_letters
from coverlora.scoring.rouge import pairwise_rouge_l
from coverlora.scoring.rules import check_rules


@dataclass(frozen=True)
class Choice:
    index: int  # into the row's candidates; 0 is the greedy letter
    problems: tuple[int, int, int]  # flagged claims, names missing, placeholders
    tied: int  # candidates that shared the fewest problems (MBR chose among them)


def problems(letter: str, row: Mapping[str, str], flagged_claims: int) -> tuple[int, int, int]:
    checks = check_rules(letter, row)
    missing = sum(checks[key] is False for key in ("company_named", "title_named", "name_named"))
    return flagged_claims, missing, len(checks["placeholders"])


def consensus(candidates: Sequence[str], among: Sequence[int]) -> int:
    """Minimum Bayes risk with ROUGE-L as the utility: the candidate closest on average to all the others."""
    scores = pairwise_rouge_l(candidates)

    def support(i: int) -> float:
        others = [j for j in range(len(candidates)) if j != i]
        return sum(scores[j][i] for j in others) / max(1, len(others))

    return max(among, key=lambda i: (support(i), -i))


def choose(candidate_lists: Sequence[Sequence[str]], rows: Sequence[Mapping[str, str]], *,
           embeddings: bool = True) -> list[Choice]:
    """One Choice per row; every candidate of every row goes through one batched claim check."""
    flat = [(i, letter) for i, letters in enumerate(candidate_lists) for letter in letters]
    verdicts = check_letters([letter for _, letter in flat], [rows[i] for i, _ in flat], embeddings=embeddings)
    flagged = iter(sum(v.flagged for v in letter_verdicts) for letter_verdicts in verdicts)
    choices = []
    for letters, row in zip(candidate_lists, rows):
        keys = [problems(letter, row, next(flagged)) for letter in letters]
        fewest = min(keys)
        tied = [i for i, key in enumerate(keys) if key == fewest]
        index = tied[0] if len(tied) == 1 else consensus(letters, tied)
        choices.append(Choice(index, fewest, len(tied)))
    return choices


def keep_chosen(candidate_lists: Sequence[Sequence[str]], counts: Sequence[Sequence[int]],
                rows: Sequence[Mapping[str, str]], *, embeddings: bool = True
                ) -> tuple[list[str], list[int], list[Choice]]:
    """choose() per row, and the kept letter and its new-token count: what the test stage and the service keep."""
    choices = choose(candidate_lists, rows, embeddings=embeddings)
    return ([letters[c.index] for letters, c in zip(candidate_lists, choices)],
            [numbers[c.index] for numbers, c in zip(counts, choices)], choices)

