"""Clean a cover-letter CSV: normalize whitespace, strip generation artifacts, keep paragraphs.

Usage:
    python scripts/clean.py path/to/train.csv data/clean/train.csv
    python scripts/clean.py runs/demo/eval.csv --letters-only   # prints how many letters would change
"""

import argparse
from pathlib import Path

import _bootstrap

from coverlora.data import clean_letter, read_csv, write_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="input CSV in the dataset's layout")
    parser.add_argument("target", type=Path, help="where to write the cleaned CSV")
    args = parser.parse_args()
    frame = read_csv(args.source)
    before = frame["cover_letter"].copy()
    frame["cover_letter"] = frame["cover_letter"].map(clean_letter)
    changed = int((before != frame["cover_letter"]).sum())
    write_split(frame, args.target)
    print(f"{len(frame)} rows, {changed} letters changed by cleaning -> {args.target}")


if __name__ == "__main__":
    _bootstrap.run(main)
