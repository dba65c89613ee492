"""The readings of data/claims/readings/: their size, the agreement of two independent readings, and the lexical
claim checker measured against all of them (it never saw them). The learned verifier is trained on part of them:
its held-out scores come from scripts/train_verifier.py (coverlora/scoring/claims/weights/report.json).

    .venv/bin/python scripts/readings.py --data ../shared/data/cover-letter-dataset            # agreement + checker
    .venv/bin/python scripts/readings.py --data ../shared/data/cover-letter-dataset --lexical  # without MiniLM
    # the learned verifier on readings it never trained on (test rows are all held out)
    .venv/bin/python scripts/readings.py --data ../shared/data/cover-letter-dataset --files 'blind8-*.csv' --verifier

A reading file is one annotator's labels under data/claims/PROTOCOL.md: source, split, row, sentence, sha, label,
severity. `second*.csv` re-read sentences of the other files by another annotator: kappa is measured on those.
MiniLM runs on the CPU: run it under the shared lock (flock /tmp/coverlora-heavy.lock ...).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import Counter
from pathlib import Path

import _bootstrap  # noqa: F401  (the repository on sys.path, one-line errors)

from coverlora.errors import UserError
from coverlora.scoring.claims.labels import sentence_sha
from coverlora.scoring.claims.verdicts import FLAGGED_LABELS, LABELS, check_letters
from coverlora.scoring.sentences import split_sentences

READINGS = Path(__file__).resolve().parents[1] / "data" / "claims" / "readings"
SECOND = "second*.csv"  # second readings: never trained on; kappa is measured on them
EVERY_FILE = "*.csv"


def first_readings(pattern: str = EVERY_FILE) -> list[Path]:
    """The reading files of first readings matching `pattern` (every file but the second readings)."""
    seconds = set(READINGS.glob(SECOND))
    return sorted(p for p in READINGS.glob(pattern) if p not in seconds)
# The model letters read (source greedy / grounded / sample / base): their text, since it is in no data file.
MODEL_LETTERS = READINGS.parent / "model_letters.jsonl"


class Letters:
    """The letter a reading's (source, split, row) names, and its row: the dataset's own `cover_letter` for
    source `reference`, else the model letter in model_letters.jsonl (its row fields still come from the data)."""

    def __init__(self, data: str, model_letters: Path = MODEL_LETTERS):
        self.data, self.frames, self.generated, self.where = data, {}, {}, model_letters
        if model_letters.is_file():
            for text in model_letters.read_text(encoding="utf-8").splitlines():
                record = json.loads(text)
                self.generated[record["source"], record["split"], int(record["row"])] = record["letter"]

    def get(self, source: str, split: str, row: int) -> tuple[str, dict]:
        from coverlora.data import load_split

        if split not in self.frames:
            self.frames[split] = load_split(self.data, split)
        fields = self.frames[split].iloc[row].to_dict()
        if source == "reference":
            return fields["cover_letter"], fields
        if (source, split, row) not in self.generated:
            raise UserError(f"no {source} letter for {split} row {row}", where=str(self.where))
        return self.generated[source, split, row], fields


def read(path: Path) -> dict[tuple, dict]:
    out = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for line, record in enumerate(csv.DictReader(handle), start=2):
            if record.get("label") not in LABELS:
                raise UserError(f"line {line}: label {record.get('label')!r} is not one of {', '.join(LABELS)}",
                                where=str(path))
            out[record["source"], record["split"], int(record["row"]), int(record["sentence"])] = record
    return out


def kappa(pairs: list[tuple[str, str]]) -> float:
    """Cohen's kappa of two readings of the same items."""
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[k] * second[k] for k in first) / n**2
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


def specific(record: dict) -> bool:
    return record["label"] in FLAGGED_LABELS and record["severity"] == "specific"


def agreement(first: dict, second: dict) -> None:
    shared = sorted(set(first) & set(second))
    if not shared:
        print("no sentence read twice")
        return
    labels = [(first[k]["label"], second[k]["label"]) for k in shared]
    flagged = [(first[k]["label"] in FLAGGED_LABELS, second[k]["label"] in FLAGGED_LABELS) for k in shared]
    letters = sorted({k[:3] for k in shared})
    letter_flags = [(any(specific(first[k]) for k in shared if k[:3] == key),
                     any(specific(second[k]) for k in shared if k[:3] == key)) for key in letters]
    print(f"read twice: {len(shared)} sentences of {len(letters)} letters")
    print(f"  four labels: agreement {sum(a == b for a, b in labels) / len(labels):.3f}, kappa {kappa(labels):.3f}")
    print(f"  flagged (borrowed or unsupported): agreement {sum(a == b for a, b in flagged) / len(flagged):.3f}, "
          f"kappa {kappa(flagged):.3f}")
    print(f"  letter has a specific unbacked claim: agreement "
          f"{sum(a == b for a, b in letter_flags) / len(letter_flags):.3f}, kappa {kappa(letter_flags):.3f}")


def checker_against(readings: dict, data: str, embeddings: bool, method: str = "lexical") -> None:
    source_of = Letters(data)
    letters, rows, keys = [], [], []
    for source, split, row in sorted({k[:3] for k in readings}):
        letter, fields = source_of.get(source, split, row)
        letters.append(letter)
        rows.append(fields)
        keys.append((source, split, row))
    started = time.perf_counter()
    verdicts = check_letters(letters, rows, embeddings=embeddings, method=method)
    seconds = time.perf_counter() - started
    spec_tp = spec_fn = stale = 0
    letter_pairs, by_source = [], {}  # by_source: source -> [tp, fp, fn] of the flagged sentences
    for key, letter, letter_verdicts in zip(keys, letters, verdicts):
        counts = by_source.setdefault(key[0], [0, 0, 0])
        by_index = {s.index: s for s in split_sentences(letter)}
        read_specific = checker_flag = False
        for verdict in letter_verdicts:
            record = readings.get((*key, verdict.index))
            if record is None:
                continue
            if record["sha"] != sentence_sha(by_index[verdict.index].text):
                stale += 1
                continue
            truth, said = record["label"] in FLAGGED_LABELS, verdict.label in FLAGGED_LABELS
            counts[0] += truth and said
            counts[1] += said and not truth
            counts[2] += truth and not said
            if specific(record):
                spec_tp, spec_fn = spec_tp + said, spec_fn + (not said)
                read_specific = True
            checker_flag |= said
        letter_pairs.append((read_specific, checker_flag))
    tp, fp, fn = (sum(column) for column in zip(*by_source.values())) if by_source else (0, 0, 0)
    name = "the learned verifier" if method == "verifier" else (
        "lexical checker + MiniLM" if embeddings else "lexical checker (no MiniLM)")
    print(f"{name} against the readings ({len(keys)} letters, {seconds:.1f} s; {stale} stale shas):")
    print(f"  flagged: precision {tp / max(1, tp + fp):.3f}, recall {tp / max(1, tp + fn):.3f} "
          f"(tp {tp}, fp {fp}, fn {fn}); recall on the specific ones {spec_tp / max(1, spec_tp + spec_fn):.3f}")
    agree = sum(a == b for a, b in letter_pairs) / max(1, len(letter_pairs))
    print(f"  letters with a specific unbacked claim: reading {sum(a for a, _ in letter_pairs) / len(letter_pairs):.3f}, "
          f"checker flags {sum(b for _, b in letter_pairs) / len(letter_pairs):.3f}; letter-level agreement {agree:.3f}")
    if 1 < len(by_source) <= 12:  # letters a decoder or a training run optimised against the checker read differently
        print("  by source: " + "; ".join(f"{source} precision {t / max(1, t + f):.3f} recall {t / max(1, t + n):.3f}"
                                          f" ({t + n} read unbacked)" for source, (t, f, n) in sorted(by_source.items())))


def system_row(keys: list, read: dict, checked: dict, texts: dict) -> list[str]:
    """One system's cells of systems_table: shares of letters, then supported claims and words per letter."""
    def share(test) -> str:
        return f"{sum(map(test, keys)) / len(keys):.3f}"

    return [share(lambda k: any(specific(r) for r in read[k])),
            share(lambda k: any(v.specific for v in checked["verifier"][k])),
            share(lambda k: any(v.flagged for v in checked["lexical"][k])),
            share(lambda k: any(r["label"] in FLAGGED_LABELS for r in read[k])),
            share(lambda k: any(v.flagged for v in checked["verifier"][k])),
            f"{sum(sum(r['label'] == 'supported' for r in read[k]) for k in keys) / len(keys):.2f}",
            f"{sum(len(texts[k][0].split()) for k in keys) / len(keys):.0f}"]


def systems_table(readings: dict, data: str, split: str = "test") -> None:
    """Per system (source) on `split`'s letters: what the reading finds and what each checker says, side by side.
    Supported claims and words per letter stand beside every flagged share: a letter that says nothing flags nothing."""
    source_of = Letters(data)
    letters = sorted({k[:3] for k in readings if k[1] == split})
    if not letters:
        print(f"no {split} letters read")
        return
    texts = {key: source_of.get(*key) for key in letters}
    checked = {method: dict(zip(letters, check_letters([texts[k][0] for k in letters], [texts[k][1] for k in letters],
                                                       method=method))) for method in ("verifier", "lexical")}
    print(f"\n{split} letters read, by system ({len(letters)} letters):")
    print("| system | letters | specific unbacked (reading) | verifier | lexical | any unbacked (reading) | verifier "
          "| supported claims / letter (reading) | words / letter |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for source in sorted({k[0] for k in letters}):
        keys = [k for k in letters if k[0] == source]
        row = system_row(keys, {k: [r for key, r in readings.items() if key[:3] == k] for k in keys}, checked, texts)
        print(f"| {source} | {len(keys)} | " + " | ".join(row) + " |")
    print("(lexical: every flag, it has no severity)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the dataset folder (train.csv, test.csv)")
    parser.add_argument("--lexical", action="store_true", help="the checker without MiniLM")
    parser.add_argument("--files", default=EVERY_FILE, help="only the reading files matching this pattern")
    parser.add_argument("--verifier", action="store_true",
                        help="measure the learned verifier instead of the lexical checker: honest only on files it "
                             "never trained on (test rows, e.g. --files 'blind8-*.csv'; every test row is held out)")
    args = parser.parse_args()
    files = first_readings(args.files)
    if not files:
        raise UserError("no reading files", where=str(READINGS))
    first = {}
    for path in files:
        first |= read(path)
    counts = Counter(r["label"] for r in first.values())
    print(f"readings: {len(first)} sentences of {len({k[:3] for k in first})} letters in {len(files)} files: "
          + ", ".join(f"{label} {counts[label]}" for label in LABELS)
          + f"; specific {sum(specific(r) for r in first.values())}")
    for path in sorted(READINGS.glob(SECOND)) if args.files == EVERY_FILE else ():  # kappa: on all first readings
        print(f"{path.name}:")
        agreement(first, read(path))
    checker_against(first, args.data, embeddings=not args.lexical and not args.verifier,
                    method="verifier" if args.verifier else "lexical")
    systems_table(first, args.data)


if __name__ == "__main__":
    _bootstrap.run(main)
