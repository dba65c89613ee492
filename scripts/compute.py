"""Describe a dataset's letters: lengths, grounding of the references, repetition, and train/test leakage.

Usage:
    python scripts/compute.py path/to/cover-letter-dataset          # train and test, plus leakage
    python scripts/compute.py data/sample/train.csv --json stats.json
"""

import argparse
import json
from pathlib import Path

import _bootstrap

from coverlora.data import load_split
from coverlora.metrics.leakage import find_leakage
from coverlora.scoring import check_rules, describe, distinct_n, grounding_rates, repetition_ratio, self_bleu


def letter_stats(frame) -> dict:
    letters = frame["cover_letter"].tolist()
    rates = grounding_rates([check_rules(letter, row) for letter, row in zip(letters, frame.to_dict("records"))])
    return {
        "rows": len(frame),
        "letter_chars": describe([len(t) for t in letters]),
        "single_paragraph_share": sum("\n\n" not in t for t in letters) / len(letters),
        "repetition": describe([repetition_ratio(t) for t in letters])["mean"],
        "distinct_2": describe([distinct_n(t, 2) for t in letters])["mean"],
        "self_bleu_4": self_bleu(letters),
        **{key: value for key, value in rates.items() if key != "n_letters"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a dataset folder (train.csv, test.csv) or one CSV")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    splits = ["train", "test"] if Path(args.source).is_dir() else ["train"]
    frames = {split: load_split(args.source, split) for split in splits}
    stats = {split: letter_stats(frame) for split, frame in frames.items()}
    if len(frames) == 2:
        leakage = find_leakage(frames["train"], frames["test"])
        stats["leakage"] = {key: int(leakage[key].sum()) for key in leakage.columns}
        stats["leakage"]["leak_free_test_rows"] = int((~leakage["leaked"]).sum())
    text = json.dumps(stats, indent=2, default=float)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    _bootstrap.run(main)
