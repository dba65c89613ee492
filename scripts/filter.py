"""Filter training data: length limits and the quality rules (see coverlora/train/filters.py).

Usage:
    # a filtered copy of a dataset folder: train.csv filtered, test.csv copied unchanged, dropped.csv beside them
    python scripts/filter.py path/to/cover-letter-dataset data/filtered
    # only the length filter, on one CSV
    python scripts/filter.py path/to/train.csv data/long/train.csv --rules too_short --min-chars 500
    # with the embedding check (MiniLM, offline; ~1-3 minutes on a CPU for 813 rows)
    python scripts/filter.py path/to/cover-letter-dataset data/filtered --similarity
    # also drop letters that claim what their resume does not back (the claim checker)
    python scripts/filter.py path/to/cover-letter-dataset data/filtered-claims --claims

Then train on it: python train.py --config configs/demo-cpu.yaml --data data/filtered
Prints the rows dropped per rule, on train and (for a folder) on test, which is reported but never filtered.
"""

import argparse
import shutil
from pathlib import Path

import _bootstrap

from coverlora.data import load_split, write_split
from coverlora.errors import UserError
from coverlora.runs.layout import atomic_path
from coverlora.train.filters import (
    MIN_SIMILARITY,
    RULES,
    flag_counts,
    input_letter_similarity,
    quality_flags,
    unbacked_claims,
)


def flags_for(frame, args):
    similarity = input_letter_similarity(frame) if args.similarity else None
    unbacked = unbacked_claims(frame) if args.claims else None
    flags = quality_flags(frame, similarity, min_chars=args.min_chars, min_similarity=args.min_similarity,
                          unbacked=unbacked)
    chosen = [rule for rule in args.rules.split(",") if rule]
    unknown = sorted(set(chosen) - set(RULES))
    if unknown:
        raise UserError(f"unknown rule {', '.join(unknown)}", where="--rules", fix=f"choose from {', '.join(RULES)}")
    if args.max_chars:
        flags["too_long"] = frame["cover_letter"].str.len() > args.max_chars
        chosen.append("too_long")
    flags["reasons"] = [";".join(r for r in chosen if row[r]) for _, row in flags.iterrows()]
    return flags, chosen


def report(name: str, flags, chosen) -> None:
    counts = flag_counts(flags[[*chosen, "reasons"]])
    dropped = counts.pop("dropped")
    print(f"{name}: {len(flags)} rows, {dropped} dropped ({dropped / max(len(flags), 1):.1%})")
    for rule in chosen:
        print(f"  {rule:<16} {counts.get(rule, 0)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a dataset folder (train.csv, test.csv) or one CSV")
    parser.add_argument("target", type=Path, help="output folder (for a folder source) or CSV")
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated rules to apply (default: all)")
    parser.add_argument("--min-chars", type=int, default=300, help="too_short: letters under this many characters")
    parser.add_argument("--max-chars", type=int, default=0, help="also drop letters longer than this (0 = no limit)")
    parser.add_argument("--similarity", action="store_true", help="compute the MiniLM input/letter similarity (low_similarity rule)")
    parser.add_argument("--min-similarity", type=float, default=MIN_SIMILARITY, help="low_similarity threshold")
    parser.add_argument("--claims", action="store_true", help="run the claim checker (unbacked_claims rule; MiniLM, "
                                                              "a few minutes on a CPU for 813 rows)")
    args = parser.parse_args()

    is_folder = Path(args.source).is_dir()
    train = load_split(args.source, "train")
    flags, chosen = flags_for(train, args)
    report("train", flags, chosen)
    kept, dropped = train[flags["reasons"] == ""], train[flags["reasons"] != ""].assign(reasons=flags["reasons"])
    out_csv = args.target / "train.csv" if is_folder else args.target
    write_split(kept, out_csv)
    dropped_csv = out_csv.with_name(out_csv.stem + ".dropped.csv")
    with atomic_path(dropped_csv) as tmp:
        dropped.drop(columns=["line"]).to_csv(tmp, index=False)
    if is_folder and (Path(args.source) / "test.csv").is_file():
        test = load_split(args.source, "test")
        report("test (reported, not filtered)", flags_for(test, args)[0], chosen)
        shutil.copyfile(Path(args.source) / "test.csv", args.target / "test.csv")
    print(f"kept {len(kept)} rows -> {out_csv}; dropped rows with reasons -> {dropped_csv}")


if __name__ == "__main__":
    _bootstrap.run(main)
