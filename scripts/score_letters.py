"""Score stored model letters (data/claims/model_letters.jsonl) with today's claim checker, without their run folder:
how a table's checker columns are rebuilt after the verifier changes, from the letters it was made of.

    .venv/bin/python scripts/score_letters.py --data ../shared/data/cover-letter-dataset \
        --sources t25-filtered-42,t25-mask-42,t25-delete-42 --out results/smollm2/grounding-train/rescored.md

A source is one of the store's, or `reference` (the dataset's own letters) or a baseline metrics.py scores beside
every model (copy_input, template, retrieval: coverlora/metrics/baselines.py), made from the data as metrics.py
makes them. Every source's letters for one split are scored on the same rows (those all sources have); "novel" is the rows with
neither an exact nor a near-duplicate training letter (metrics.py's seen_in_training). The checker is the one
metrics.py uses (`--claims verifier` by default), so these columns equal metrics.py's on the same letters.
Run it under the shared lock on the CPU machine (flock /tmp/coverlora-heavy.lock ...): the cross-encoder is heavy.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
import typing
from pathlib import Path

import _bootstrap  # the repository on sys.path, one-line errors
from readings import MODEL_LETTERS, Letters

from coverlora.config import MetricsConfig
from coverlora.errors import UserError
from coverlora.fields import TARGET_FIELD
from coverlora.runs.layout import write_text_atomic

CLAIMS = {f.name: f for f in dataclasses.fields(MetricsConfig)}["claims"]  # metrics.py's checker choice, one home
COLUMNS = ("letters", "any unbacked claim", "specific unbacked", "specific, novel", "supported claims / letter",
           "words", "borrowed", "unsupported", "claim support")


def letters_of(store: Letters, source: str, split: str, table, made: dict[str, list[str]]) -> dict[int, str]:
    """The source's letters by row: the dataset's (`reference`), a baseline's (`made`), or the store's."""
    if source == "reference":
        return dict(enumerate(table[TARGET_FIELD].astype(str)))
    if source in made:
        return dict(enumerate(made[source]))
    found = {row: text for (name, where, row), text in store.generated.items() if name == source and where == split}
    if not found:
        raise UserError(f"no letters of source {source!r} for the {split} split", where=str(store.where),
                        fix="pass a source that model_letters.jsonl holds (scripts/reading_tasks.py letters)")
    return found


def score(data: str, sources: list[str], split: str, claims: str, model_letters: Path) -> tuple[list[str], int]:
    import pandas as pd

    from coverlora.data import load_split
    from coverlora.metrics.baselines import BASELINES, baseline_letters
    from coverlora.metrics.leakage import seen_in_training
    from coverlora.metrics.tables import claim_columns

    store = Letters(data, model_letters)
    table, train = load_split(data, split), load_split(data, "train")
    wanted = [source for source in sources if source in BASELINES]
    made = baseline_letters(table, train if split == "test" else None) if wanted else {}
    if missing := [source for source in wanted if source not in made]:  # retrieval needs other rows to retrieve from
        raise UserError(f"baseline {missing[0]} is made for the test split only", fix="pass --split test")
    by_source = {source: letters_of(store, source, split, table, made) for source in sources}
    rows = sorted(set.intersection(*(set(letters) for letters in by_source.values())))
    fields = [table.iloc[row].to_dict() for row in rows]
    seen = seen_in_training(train, table.iloc[rows].reset_index(drop=True))
    novel = seen["novel"].to_numpy()
    lines = [f"| source | {' | '.join(COLUMNS)} |", "|---|" + "---:|" * len(COLUMNS)]
    for source, letters in by_source.items():
        texts = [letters[row] for row in rows]
        frame = pd.DataFrame(claim_columns(texts, fields, claims))
        cells = (len(texts), frame["has_flagged_claim"].mean(), frame["has_specific_claim"].mean(),
                 frame["has_specific_claim"][novel].mean(), frame["supported_claims"].mean(),
                 sum(len(t.split()) for t in texts) / len(texts), frame["has_borrowed_claim"].mean(),
                 frame["has_unsupported_claim"].mean(), frame["claim_support"].astype(float).mean())
        lines.append(f"| {source} | {cells[0]} | " + " | ".join(f"{v:.3f}" for v in cells[1:4])
                     + f" | {cells[4]:.2f} | {cells[5]:.0f} | "
                     + " | ".join("–" if math.isnan(v) else f"{v:.3f}" for v in cells[6:]) + " |")  # –: no claims
    return lines, int(novel.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the dataset folder (train.csv, test.csv)")
    parser.add_argument("--sources", required=True, help="model_letters.jsonl sources, comma-separated")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    checkers = [c for c in typing.get_args(typing.get_type_hints(MetricsConfig)["claims"]) if c != "off"]
    parser.add_argument("--claims", choices=checkers, default=CLAIMS.default, help=CLAIMS.metadata["help"])
    parser.add_argument("--model-letters", default=str(MODEL_LETTERS))
    parser.add_argument("--out", help="also write the table here (Markdown)")
    args = parser.parse_args()
    started = time.perf_counter()
    lines, novel = score(args.data, args.sources.split(","), args.split, args.claims, Path(args.model_letters))
    lines.append(f"\n(checker: {args.claims}; novel rows: {novel}; {time.perf_counter() - started:.0f} s)")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        write_text_atomic(Path(args.out), text)


if __name__ == "__main__":
    _bootstrap.run(main)
