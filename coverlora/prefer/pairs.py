"""Preference pairs from the SFT model's own letters on the training rows: for each row, the greedy letter and N
samples are judged by the claim verifier, and the row gives one pair when it has both kinds.

- chosen: a letter with no flagged claim, the most supported claims (then the most words), among those that keep
  at least (1 - words_within) of the row's median words: a letter that says nothing is never the chosen one;
- rejected: a letter with a flagged (borrowed or unsupported) claim, its words within `words_within` of the
  chosen one's where any is, else the closest in words.

Rows with no clean letter, or no flagged one, give no pair (counted).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from coverlora.scoring.claims.evidence import SUPPORTED


@dataclass(frozen=True)
class Judged:
    flagged: bool
    supported: int
    words: int


@dataclass
class PairStats:
    rows: int = 0
    pairs: int = 0
    no_clean_letter: int = 0
    no_flagged_letter: int = 0
    length_matched: int = 0

    def record(self) -> dict[str, int]:
        return asdict(self)


def judge(candidate_lists: Sequence[Sequence[str]], rows: Sequence[Mapping[str, str]]) -> list[list[Judged]]:
    """Every candidate of every row through one batched verifier pass."""
    from coverlora.scoring.claims.verdicts import check_letters

    flat = [(letter, row) for letters, row in zip(candidate_lists, rows) for letter in letters]
    verdicts = iter(check_letters([f[0] for f in flat], [f[1] for f in flat], method="verifier"))
    return [[Judged(any(v.flagged for v in verdict), sum(v.label == SUPPORTED for v in verdict), len(letter.split()))
             for letter, verdict in zip(letters, verdicts)] for letters in candidate_lists]


def choose_pair(judged: Sequence[Judged], words_within: float) -> tuple[int, int] | str:
    """(chosen, rejected) indices into the row's candidates, or why the row gives no pair."""
    floor = (1 - words_within) * statistics.median(j.words for j in judged)
    clean = [i for i, j in enumerate(judged) if not j.flagged and j.supported > 0 and j.words >= floor]
    flagged = [i for i, j in enumerate(judged) if j.flagged]
    if not clean:
        return "no_clean_letter"
    if not flagged:
        return "no_flagged_letter"
    chosen = max(clean, key=lambda i: (judged[i].supported, judged[i].words, -i))
    words = judged[chosen].words
    rejected = min(flagged, key=lambda i: (abs(judged[i].words - words), i))
    return chosen, rejected


def row_records(candidate_lists: Sequence[Sequence[str]], rows: Sequence[Mapping[str, str]],
                words_within: float) -> list[dict]:
    """One record per row: its pair (the two letters and what the verifier found in them), or why it has none."""
    out = []
    for letters, row, judged in zip(candidate_lists, rows, judge(candidate_lists, rows)):
        picked = choose_pair(judged, words_within)
        if isinstance(picked, str):
            out.append({"row_id": str(row["row_id"]), "reason": picked})
            continue
        chosen, rejected = picked
        out.append({"row_id": str(row["row_id"]), "chosen": letters[chosen], "rejected": letters[rejected],
                    "chosen_supported": judged[chosen].supported, "chosen_words": judged[chosen].words,
                    "rejected_supported": judged[rejected].supported, "rejected_words": judged[rejected].words,
                    "length_matched": abs(judged[rejected].words - judged[chosen].words)
                    <= words_within * judged[chosen].words})
    return out


def stats_of(records: Sequence[dict]) -> PairStats:
    stats = PairStats(rows=len(records))
    for record in records:
        if "reason" in record:
            setattr(stats, record["reason"], getattr(stats, record["reason"]) + 1)
        else:
            stats.pairs += 1
            stats.length_matched += bool(record["length_matched"])
    return stats
