"""What train/targets.py would change in the training letters: unbacked sentences (masked or deleted) and
letters signed off with the applicant's name, on a data folder's train split, with the embedded tokenizer.

    .venv/bin/python scripts/target_stats.py --data ../shared/data/cover-letter-dataset
"""

from __future__ import annotations

import argparse
import json

import _bootstrap

from coverlora.data import load_split
from coverlora.models import load_tokenizer, resolve_model
from coverlora.prompts import PromptFormat
from coverlora.train.targets import training_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a data folder (its train.csv) or a CSV")
    parser.add_argument("--model", default="embedded", help="whose tokenizer counts the tokens")
    args = parser.parse_args()
    fmt = PromptFormat.for_tokenizer(load_tokenizer(resolve_model(args.model)))
    rows = load_split(args.data, "train").to_dict("records")
    prompts = [len(fmt.prompt_ids(row)) for row in rows]
    out = {}
    for unbacked in ("mask", "delete"):
        examples, stats = training_examples(rows, fmt, unbacked=unbacked, sign_off=True)
        out[unbacked] = {**stats.record(), "letter_tokens": sum(len(e["input_ids"]) - p for e, p in zip(examples, prompts))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    _bootstrap.run(main)
