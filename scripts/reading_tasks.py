"""Model letters for the readings: collect them, hand them to a reader blind, and turn the reading into labels.

    # 1. model letters of an eval.csv, keyed by their row in the dataset (matched by the row's fields)
    .venv/bin/python scripts/reading_tasks.py letters runs/x/eval_validation.csv --data DATA --split train \\
        --column finetuned_output --source greedy
    # 2. a blind reading task: letters shuffled under opaque ids; the key stays with whoever made the task
    .venv/bin/python scripts/reading_tasks.py task --data DATA --letters greedy:test:3,grounded:test:3 \\
        --out task.txt --key key.json
    # 2b. a blind reading of several systems over fresh novel rows, split over readers: each row's letters go to
    #     different readers (task_K.txt, .key_K.json under --out-dir); rows already read anywhere are skipped
    .venv/bin/python scripts/reading_tasks.py blind --data DATA --seen runs/x/seen_in_training.csv \
        --sources greedy-v2,grounded-v2,repair --rows 40 --seed 2026 --out-dir /tmp/blind
    # 3. the reader's labels (letter, sentence, sha, label, severity) into a reading file of data/claims/readings
    .venv/bin/python scripts/reading_tasks.py collect labels.csv --key key.json --out data/claims/readings/batch8.csv

`letters` appends to data/claims/model_letters.jsonl (source, split, row, letter; a letter already there is kept).
`--column finetuned_candidates` takes one sampled candidate per row (`--candidate K`, 1 = the first sample).
The task names no system and shows no checker label: a reader sees the row's fields and the numbered sentences.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import _bootstrap
from readings import MODEL_LETTERS, READINGS, Letters

from coverlora.errors import UserError
from coverlora.fields import INPUT_FIELDS
from coverlora.scoring.claims.labels import sentence_sha
from coverlora.scoring.claims.verdicts import LABELS
from coverlora.scoring.sentences import split_sentences

ROW_FIELDS = list(INPUT_FIELDS)


def dataset_rows(data: str, split: str) -> dict[tuple, int]:
    """Each row's fields (all but the letter) -> its row in load_split(data, split)."""
    from coverlora.data import load_split

    frame = load_split(data, split)
    out: dict[tuple, int] = {}
    for position, row in enumerate(frame[ROW_FIELDS].itertuples(index=False)):
        out.setdefault(tuple(str(v) for v in row), position)
    return out


def collect_letters(args) -> None:
    import pandas as pd

    from coverlora.runs.layout import write_text_atomic

    table = pd.read_csv(args.eval, keep_default_na=False)
    if args.column not in table.columns:
        raise UserError(f"no column {args.column!r}", where=args.eval)
    rows = dataset_rows(args.data, args.split)
    store = Path(args.model_letters)
    existing = store.read_text(encoding="utf-8").splitlines() if store.is_file() else []
    have = {(r["source"], r["split"], r["row"]) for r in map(json.loads, existing)}
    added = []
    for line, record in enumerate(table.to_dict("records"), start=2):
        key = tuple(str(record[f]) for f in ROW_FIELDS)
        if key not in rows:
            raise UserError(f"line {line}: its row is not in {args.split}.csv", where=args.eval)
        letter = record[args.column]
        if args.column.endswith("_candidates"):
            letter = json.loads(letter)[args.candidate] if letter else ""
        if letter.strip() and (args.source, args.split, rows[key]) not in have:
            have.add((args.source, args.split, rows[key]))
            added.append(json.dumps({"source": args.source, "split": args.split, "row": rows[key], "letter": letter}))
    write_text_atomic(store, "".join(f"{x}\n" for x in existing + added))
    print(f"{len(added)} {args.source} letters added to {store} ({len(existing) + len(added)} in all)")


def make_task(args) -> None:
    from coverlora.runs.layout import write_text_atomic

    source_of = Letters(args.data, Path(args.model_letters))
    wanted = [tuple(item.split(":")) for item in args.letters.split(",")]
    random.Random(getattr(args, "seed_task", args.seed)).shuffle(wanted)
    key, blocks = {}, []
    for number, (source, split, row) in enumerate(wanted, start=1):
        letter, fields = source_of.get(source, split, int(row))
        letter_id = f"L{number:03d}"
        key[letter_id] = [source, split, int(row)]
        lines = [f"#### {letter_id}"] + [f"  {f}: {' '.join(str(fields[f]).split())}" for f in ROW_FIELDS]
        lines += [f"  [{s.index}] (sha {sentence_sha(s.text)}) {' '.join(s.text.split())}" for s in split_sentences(letter)]
        blocks.append("\n".join(lines))
    write_text_atomic(Path(args.out), "\n\n".join(blocks) + "\n")
    write_text_atomic(Path(args.key), json.dumps(key, indent=1) + "\n")
    print(f"{len(blocks)} letters in {args.out}; key in {args.key}")


def read_rows(split: str, readings: Path) -> set[int]:
    """The rows of `split` that any reading file in `readings` already holds."""
    out = set()
    for path in readings.glob("*.csv"):
        with open(path, encoding="utf-8", newline="") as handle:
            out |= {int(r["row"]) for r in csv.DictReader(handle) if r["split"] == split}
    return out


def make_blind(args) -> None:
    """Fresh novel test rows (never read before), drawn with --seed; K readers; reader k gets, for the i-th row,
    the letter of source (i + k) mod K, so no reader sees one row twice and each reads every source."""
    import pandas as pd

    seen = pd.read_csv(args.seen)
    novel = [int(r) for r in seen.loc[seen["novel"].astype(bool), "row_id"]
             if int(r) not in read_rows("test", Path(args.readings))]
    if len(novel) < args.rows:
        raise UserError(f"only {len(novel)} novel test rows were never read", where=args.seen)
    rows = sorted(random.Random(args.seed).sample(novel, args.rows))
    sources = args.sources.split(",")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(len(sources)):
        args.letters = ",".join(f"{sources[(i + k) % len(sources)]}:test:{row}" for i, row in enumerate(rows))
        args.out, args.key, args.seed_task = str(out / f"task_{k + 1}.txt"), str(out / f".key_{k + 1}.json"), 100 + k
        make_task(args)
    print(f"rows: {','.join(map(str, rows))}")


def collect_labels(args) -> None:
    from coverlora.runs.layout import write_text_atomic

    key = json.loads(Path(args.key).read_text(encoding="utf-8"))
    out = ["source,split,row,sentence,sha,label,severity"]
    with open(args.labels, encoding="utf-8", newline="") as handle:
        for line, record in enumerate(csv.DictReader(handle), start=2):
            if record.get("letter") not in key:
                raise UserError(f"line {line}: letter {record.get('letter')!r} is not in the key", where=args.labels)
            if record.get("label") not in LABELS:
                raise UserError(f"line {line}: label {record.get('label')!r} is not one of {', '.join(LABELS)}",
                                where=args.labels)
            source, split, row = key[record["letter"]]
            out.append(",".join([source, split, str(row), str(int(record["sentence"])), record["sha"], record["label"],
                                 record.get("severity") or ""]))
    write_text_atomic(Path(args.out), "\n".join(out) + "\n")
    print(f"{len(out) - 1} labelled sentences in {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    letters = commands.add_parser("letters", help="model letters of an eval.csv into model_letters.jsonl")
    letters.add_argument("eval")
    letters.add_argument("--data", required=True)
    letters.add_argument("--split", choices=("train", "test"), required=True)
    letters.add_argument("--column", required=True, help="e.g. finetuned_output, base_output, finetuned_candidates")
    letters.add_argument("--source", required=True, help="e.g. greedy, grounded, sample, base")
    letters.add_argument("--candidate", type=int, default=1, help="with a _candidates column: which one")
    task = commands.add_parser("task", help="a blind reading task")
    task.add_argument("--data", required=True)
    task.add_argument("--letters", required=True, help="source:split:row,... (shuffled into the task)")
    task.add_argument("--out", required=True)
    task.add_argument("--key", required=True)
    task.add_argument("--seed", type=int, default=0)
    blind = commands.add_parser("blind", help="a blind reading of several systems over fresh novel test rows")
    blind.add_argument("--data", required=True)
    blind.add_argument("--seen", required=True, help="a run's seen_in_training.csv (metrics.py): its novel rows")
    blind.add_argument("--sources", required=True, help="the systems' sources in model_letters.jsonl, comma-separated")
    blind.add_argument("--rows", type=int, default=40)
    blind.add_argument("--seed", type=int, default=0)
    blind.add_argument("--out-dir", required=True)
    blind.add_argument("--readings", default=str(READINGS), help="the reading files whose rows are not fresh")
    for command in (letters, task, blind):
        command.add_argument("--model-letters", default=str(MODEL_LETTERS), help="the model letters' file")
    labels = commands.add_parser("collect", help="a reader's labels into a reading file")
    labels.add_argument("labels")
    labels.add_argument("--key", required=True)
    labels.add_argument("--out", required=True)
    args = parser.parse_args()
    {"letters": collect_letters, "task": make_task, "blind": make_blind, "collect": collect_labels}[args.command](args)


if __name__ == "__main__":
    _bootstrap.run(main)
