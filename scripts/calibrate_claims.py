"""Calibrate the claim checker on its labelled set (data/claims), and help label it.

    # choose thresholds on the tuning half, report on the held-out half (prints the numbers to hard-code)
    .venv/bin/python scripts/calibrate_claims.py calibrate --data ../shared/data/cover-letter-dataset

    # print letters as numbered sentences beside their rows, to label by reading (no checker output shown)
    .venv/bin/python scripts/calibrate_claims.py show --source reference --split test --rows 68 291

    # the share of reference letters flagged, and the time to check them
    .venv/bin/python scripts/calibrate_claims.py measure --data ../shared/data/cover-letter-dataset --split test

MiniLM runs on the CPU: run calibrate and measure under the shared lock (flock /tmp/coverlora-heavy.lock ...).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coverlora.scoring.claims import verdicts as claims  # noqa: E402
from coverlora.scoring.claims.labels import (  # noqa: E402
    GENERATED,
    HANDMADE,
    load_labelled,
    precision_recall,
    sentence_sha,
)
from coverlora.scoring.sentences import split_sentences  # noqa: E402

LABELS_DIR = Path(__file__).resolve().parents[1] / "data" / "claims"
ROW_KEYS = ("job_title", "hiring_company", "preferred_qualifications", "applicant_name", "current_experience",
            "past_experience", "skillsets", "qualifications")

# The grid searched on the tuning half.
GRID = {
    "max_uncovered_share": [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7],
    "min_uncovered": [1, 2, 3],
    "min_similarity": [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 2.0],  # 2.0: MiniLM never overrides
    "job_margin": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 2.0],
}


def _show(args) -> None:
    from coverlora.data import load_split

    if args.source == "handmade":
        records = [json.loads(line) for line in (LABELS_DIR / HANDMADE).read_text().splitlines() if line.strip()]
        pairs = {r["id"]: (r["letter"], r["row"]) for r in records}
    else:
        frame = load_split(args.data, args.split)
        rows = {i: frame.iloc[i].to_dict() for i in range(len(frame))}
        if args.source == "reference":
            pairs = {i: (row["cover_letter"], row) for i, row in rows.items()}
        else:
            records = [json.loads(line) for line in (LABELS_DIR / GENERATED[args.source]).read_text().splitlines()]
            pairs = {r["row"]: (r["letter"], rows[r["row"]]) for r in records if r["split"] == args.split}
    for key in args.rows or sorted(pairs):
        letter, row = pairs[key]
        print(f"#### {args.source} {args.split} {key}")
        for name in ROW_KEYS:
            print(f"  {name}: {row.get(name, '')}")
        for sentence in split_sentences(letter):
            print(f"  [{sentence.index}] ({sentence.kind}, {sentence_sha(sentence.text)}) {sentence.text}")
        print()


def _tune(letters, candidates_and_similarity) -> tuple[claims.Thresholds, dict]:
    """The grid point with the best F1 of "flagged" on the tuning letters; ties go to the higher precision."""
    best = None
    for values in itertools.product(*GRID.values()):
        thresholds = claims.Thresholds(**dict(zip(GRID, values)))
        scores = precision_recall(letters, _relabel(candidates_and_similarity, thresholds))
        p, r = scores["precision"] or 0.0, scores["recall"] or 0.0
        key = (2 * p * r / (p + r) if p + r else 0.0, p)
        if best is None or key > best[0]:
            best = (key, thresholds, scores)
    return best[1], best[2]


def _relabel(verdicts_per_letter, thresholds):
    """The labels under other thresholds, from the evidence computed once (the MiniLM part is the slow one)."""
    return [[claims.relabel(verdict, thresholds) for verdict in verdicts] for verdicts in verdicts_per_letter]


def _report(name: str, scores: dict) -> None:
    p, r = scores["precision"], scores["recall"]
    print(f"{name}: precision {p:.3f} recall {r:.3f} (tp {scores['tp']}, fp {scores['fp']}, fn {scores['fn']}; "
          f"{scores['n_sentences']} sentences, {scores['n_claims']} labelled claims)")
    golds = sorted({g for g, _ in scores["confusion"]})
    print("    gold \\ predicted: " + "  ".join(f"{label[:11]:>11}" for label in claims.LABELS))
    for gold in golds:
        print(f"    {gold:>17}: " + "  ".join(f"{scores['confusion'].get((gold, label), 0):>11}"
                                           for label in claims.LABELS))


def _calibrate(args) -> None:
    letters = load_labelled(LABELS_DIR, args.data)
    started = time.perf_counter()
    verdicts = claims.check_letters([x.letter for x in letters], [x.row for x in letters],
                                    embeddings=not args.lexical)
    print(f"checked {len(letters)} letters in {time.perf_counter() - started:.1f} s")
    parts = {part: [i for i, x in enumerate(letters) if x.part == part] for part in ("tune", "heldout")}
    tune_letters = [letters[i] for i in parts["tune"]]
    thresholds, tuned = _tune(tune_letters, [verdicts[i] for i in parts["tune"]])
    print(f"chosen on the tuning half: {thresholds}")
    _report("tune", tuned)
    heldout = precision_recall([letters[i] for i in parts["heldout"]],
                               _relabel([verdicts[i] for i in parts["heldout"]], thresholds))
    _report("held-out", heldout)
    current = precision_recall([letters[i] for i in parts["heldout"]],
                               _relabel([verdicts[i] for i in parts["heldout"]], claims.THRESHOLDS))
    _report(f"held-out with the hard-coded {claims.THRESHOLDS}", current)
    if args.errors:
        for i in parts[args.errors]:
            for index, gold in letters[i].labels.items():
                predicted = claims.relabel(verdicts[i][index], thresholds)
                if (gold in claims.FLAGGED_LABELS) != predicted.flagged:
                    print(f"  {letters[i].key} #{index} gold {gold} predicted {predicted.label}: "
                          f"{predicted.text}\n      {claims.explain(predicted)}")


def _measure(args) -> None:
    from coverlora.data import load_split

    frame = load_split(args.data, args.split)
    rows = [frame.iloc[i].to_dict() for i in range(len(frame))]
    started = time.perf_counter()
    verdicts = claims.check_letters([row["cover_letter"] for row in rows], rows, embeddings=not args.lexical)
    elapsed = time.perf_counter() - started
    rates = claims.claim_rates(verdicts)
    print(f"{args.split}: {len(rows)} reference letters checked in {elapsed:.1f} s "
          f"({'lexical only' if args.lexical else 'with MiniLM'})")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rates.items()}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show")
    show.add_argument("--source", choices=["reference", "handmade", *GENERATED], default="reference")
    show.add_argument("--split", default="test")
    show.add_argument("--rows", type=int, nargs="*")
    for name in ("calibrate", "measure"):
        command = commands.add_parser(name)
        command.add_argument("--lexical", action="store_true", help="without MiniLM")
    commands.choices["calibrate"].add_argument("--errors", choices=["tune", "heldout"],
                                               help="print the misjudged sentences of that part")
    commands.choices["measure"].add_argument("--split", default="test")
    for command in commands.choices.values():
        command.add_argument("--data", default="../shared/data/cover-letter-dataset")
    args = parser.parse_args()
    {"show": _show, "calibrate": _calibrate, "measure": _measure}[args.command](args)


if __name__ == "__main__":
    main()
