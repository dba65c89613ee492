"""Sentence repair's flag threshold, chosen on the validation part of the readings (never the held-out part, never
a test row): the highest threshold at which the committed verifier finds at least --recall of the sentences the
readers found a specific unbacked claim in. A rewrite costs little, an unbacked claim sent costs the reader's
trust: repair may flag more than the metrics' threshold (chosen for F1) does.

    .venv/bin/python scripts/repair_threshold.py --data ../shared/data/cover-letter-dataset \\
        --out results/smollm2/repair_threshold.md

The verifier's own weights were fit on the readings' train part only (scripts/train_verifier.py), so the
validation part measures it as it is. Prints, per threshold, recall on the specific and on all unbacked
sentences, precision, and the share of supported sentences it would flag (each one a rewrite).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _bootstrap
from train_verifier import examples

from coverlora.scoring.claims import verifier
from coverlora.scoring.claims.evidence import BORROWED, UNSUPPORTED
from coverlora.scoring.claims.verdicts import FLAGGED_LABELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the dataset folder (the readings' letters are its own)")
    parser.add_argument("--recall", type=float, default=0.95, help="recall wanted on the specific unbacked sentences")
    parser.add_argument("--out", help="also write the table here (markdown)")
    args = parser.parse_args()
    from coverlora.runs.layout import write_text_atomic

    items = [i for i in examples(args.data) if i["part"] == "validation" and i["label"] != "not_a_claim"]
    read = verifier.read_sentences([i["sentence"] for i in items], [i["row"] for i in items])
    flagged_p = [p[verifier.CLASSES.index(BORROWED)] + p[verifier.CLASSES.index(UNSUPPORTED)] for p, _ in read]
    truth = [i["label"] in FLAGGED_LABELS for i in items]
    specific = [i["specific"] for i in items]
    lines = [f"Validation part of the readings: {len(items)} claim sentences ({sum(truth)} unbacked, "
             f"{sum(specific)} specific), {len({i['key'] for i in items})} letters. The verifier's own threshold "
             f"is {verifier.flag_threshold():g}.", "",
             "| threshold | recall, specific | recall, all unbacked | precision | supported flagged |",
             "|---:|---:|---:|---:|---:|"]
    chosen = None
    for threshold in [t / 100 for t in range(2, 51, 2)]:
        said = [p >= threshold for p in flagged_p]
        tp = sum(s and t for s, t in zip(said, truth))
        spec = sum(s and k for s, k in zip(said, specific)) / max(1, sum(specific))
        supported = sum(s and not t for s, t in zip(said, truth)) / max(1, len(truth) - sum(truth))
        lines.append(f"| {threshold:.2f} | {spec:.3f} | {tp / max(1, sum(truth)):.3f} | {tp / max(1, sum(said)):.3f} "
                     f"| {supported:.3f} |")
        if spec >= args.recall:
            chosen = threshold
    lines += ["", f"chosen: {chosen} (the highest threshold with specific recall >= {args.recall})"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_text_atomic(Path(args.out), text + "\n")


if __name__ == "__main__":
    _bootstrap.run(main)
