"""Where the verifier and the readings disagree, and which part of it decided: a reader (the blend) or an exact rule.

    flock /tmp/coverlora-heavy.lock .venv/bin/python scripts/verifier_errors.py --data ../shared/data/cover-letter-dataset
    .venv/bin/python scripts/verifier_errors.py --data DATA --part train --out errors.jsonl   # every disagreement

Counts sentences by (read as flagged, verifier flags, who decided its flag) on one part of the readings, split as
scripts/train_verifier.py splits them. The held-out part is not offered: errors are read to change the checker, and
nothing is changed by looking at the part it is measured on. `--out` writes each disagreement (the sentence, both
labels, who decided and the evidence) as JSON lines.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import _bootstrap
from train_verifier import examples, letter_verdicts

from coverlora.runs.layout import write_text_atomic
from coverlora.scoring.claims.verdicts import FLAGGED_LABELS, SentenceVerdict


def decided_by(verdict: SentenceVerdict) -> str:
    """'rule:<kinds>' when exact rules flagged the sentence (they override the readers), else 'reader'."""
    rules = sorted({item.kind for item in verdict.evidence if item.kind not in ("verifier", "words")})
    return "rule:" + "+".join(rules) if verdict.flagged and rules else "reader"


def disagreements(data: str, part: str) -> tuple[collections.Counter, list[dict]]:
    items = [item for item in examples(data) if item["part"] == part]
    counts, errors = collections.Counter(), []
    for item, verdict in zip(items, letter_verdicts(items, "verifier")):
        read, said = item["label"] in FLAGGED_LABELS, bool(verdict) and verdict.flagged
        who = decided_by(verdict) if said else "-"
        counts[read, said, who] += 1
        if read != said:
            errors.append({"source": item["key"][0], "split": item["key"][1], "row": item["key"][2],
                           "index": item["index"], "sentence": item["sentence"], "reading": item["label"],
                           "specific": item["specific"], "verifier": verdict.label if verdict else None, "decided": who,
                           "evidence": [[e.kind, e.source, list(e.items), e.score] for e in verdict.evidence]
                           if verdict else []})
    return counts, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the dataset folder (the readings' letters are its own)")
    parser.add_argument("--part", choices=("validation", "train"), default="validation")
    parser.add_argument("--out", help="write every disagreement here (JSON lines)")
    args = parser.parse_args()
    counts, errors = disagreements(args.data, args.part)
    print("| read as flagged | verifier flags | decided by | sentences |\n|---|---|---|---:|")
    for (read, said, who), n in sorted(counts.items(), key=str):
        print(f"| {read} | {said} | {who} | {n} |")
    if args.out:
        write_text_atomic(Path(args.out), "".join(json.dumps(e) + "\n" for e in errors))


if __name__ == "__main__":
    _bootstrap.run(main)
