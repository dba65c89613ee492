"""One results table from several runs: each fine-tuned variant as the mean ± std over its seeds.

Usage:
    python scripts/seeds.py full=runs/full-42,runs/full-43,runs/full-44 filtered=runs/filtered-42,... \
        --out results/smollm2/seeds.md
    python scripts/seeds.py --grounding greedy=runs/filtered-42 grounded=runs/grounded-42   # claim columns

Each NAME=RUN,RUN,... is one fine-tuned variant trained with several seeds; every run must have been scored by
metrics.py. The base model, the references and the baselines do not depend on the seed: they are read from the
first run that has them. A difference between variants is only an effect when it is clearly larger than the spread.
"""

import argparse
import json
from pathlib import Path

import _bootstrap
import pandas as pd

from coverlora.errors import UserError
from coverlora.metrics.tables import LEAK_FREE, NOVEL
from coverlora.runs.layout import RunLayout, write_text_atomic

COLUMNS = (("all", "rouge_l", "ROUGE-L"), (LEAK_FREE, "rouge_l", "ROUGE-L leak-free"), (NOVEL, "rouge_l", "ROUGE-L novel"),
           ("all", "bertscore_f1", "BERTScore F1"), ("all", "company_named", "company named"),
           ("all", "title_named", "title named"), ("all", "name_named", "applicant named"),
           ("all", "unsupported_years", "unsupported years"), ("all", "entity_precision", "entity precision"),
           ("all", "has_placeholder", "placeholders"), ("all", "has_flagged_claim", "flagged claims"),
           ("all", "repetition", "repetition"), ("all", "letter_words", "words"))
# --grounding: the claim checker's columns (metrics.py's claims: verifier by default); supported claims and words
# per letter stand beside every flagged share, so a letter cannot look grounded by saying nothing.
GROUNDING_COLUMNS = (("all", "has_flagged_claim", "any unbacked claim"),
                     ("all", "has_specific_claim", "specific unbacked claim"),
                     (NOVEL, "has_specific_claim", "specific unbacked, novel"),
                     ("all", "has_borrowed_claim", "borrowed"), ("all", "has_unsupported_claim", "unsupported"),
                     ("all", "claim_support", "claim support"), ("all", "supported_claims", "supported claims / letter"),
                     (NOVEL, "rouge_l", "ROUGE-L novel"), ("all", "letter_words", "words"))
FIXED_SYSTEMS = (("base", "base SmolLM2-135M-Instruct"), ("reference", "reference letters"),
                 ("copy_input", "copy-the-input baseline"), ("template", "fixed template baseline"),
                 ("retrieval", "retrieval baseline (nearest training letter, names swapped)"))


def summary_of(run: str) -> pd.DataFrame:
    layout = RunLayout(Path(run))
    if not layout.summary_csv.is_file():
        raise UserError("no eval_summary.csv", where=run, fix=f"run: python metrics.py --run {run}")
    return pd.read_csv(layout.summary_csv)


def best_val_loss(run: str) -> float | None:
    """The lowest validation loss in the run's train_log.jsonl (the checkpoint train.py keeps), if it logged one."""
    path = RunLayout(Path(run)).train_log
    if not path.is_file():
        return None
    losses = [r["eval_loss"] for r in map(json.loads, path.read_text().splitlines()) if "eval_loss" in r]
    return min(losses) if losses else None


def mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    series = pd.Series(values)
    return f"{series.mean():.{digits}f} ± {series.std(ddof=1):.{digits}f}"


def cell(summaries: list[pd.DataFrame], system: str, subset: str, metric: str) -> str:
    values = []
    for summary in summaries:
        hit = summary[(summary.system == system) & (summary.subset == subset) & (summary.metric == metric)]["mean"]
        values += [float(hit.iloc[0])] if len(hit) and pd.notna(hit.iloc[0]) else []
    return mean_std(values, 0 if metric == "letter_words" else 2 if metric == "supported_claims" else 3)


def table(variants: dict[str, list[str]], columns=COLUMNS) -> str:
    summaries = {name: [summary_of(run) for run in runs] for name, runs in variants.items()}
    val_losses = {name: [v for v in map(best_val_loss, runs) if v is not None] for name, runs in variants.items()}
    everything = [s for group in summaries.values() for s in group]
    first_with = {system: [next(s for s in everything if system in set(s.system))]
                  for system, _ in FIXED_SYSTEMS if any(system in set(s.system) for s in everything)}
    rows = [("| system | best val loss | " + " | ".join(title for *_, title in columns) + " |"),
            "|---|---:|" + "---:|" * len(columns)]
    ordered = [(label, first_with[system], system) for system, label in FIXED_SYSTEMS[:1] if system in first_with]
    ordered += [(f"fine-tuned, {name} ({len(group)} seed{'s' if len(group) > 1 else ''})", group, "finetuned",
                 mean_std(val_losses[name], 4))
                for name, group in summaries.items()]
    ordered += [(label, first_with[system], system) for system, label in FIXED_SYSTEMS[1:] if system in first_with]
    for label, group, system, *loss in ordered:
        rows.append(f"| {label} | {loss[0] if loss else '–'} | "
                    + " | ".join(cell(group, system, subset, metric) for subset, metric, _ in columns) + " |")
    sizes = everything[0].drop_duplicates("subset").set_index("subset")
    counts = ", ".join(f"{name.split(' ')[0]} {int(sizes.loc[name, 'n'])}" for name in ("all", LEAK_FREE, NOVEL)
                       if name in sizes.index)
    return "\n".join(rows) + f"\n\nRows: {counts}. Fine-tuned cells are the mean ± std over seeds.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", help="NAME=RUN,RUN,...")
    parser.add_argument("--out", type=Path, help="write the markdown table here (else print it)")
    parser.add_argument("--grounding", action="store_true", help="the claim checker's columns instead")
    args = parser.parse_args()
    variants = {}
    for spec in args.variants:
        name, _, runs = spec.partition("=")
        if not runs:
            raise UserError(f"expected NAME=RUN,RUN,..., got {spec!r}", where="command line")
        variants[name] = runs.split(",")
    text = table(variants, GROUNDING_COLUMNS if args.grounding else COLUMNS)
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    _bootstrap.run(main)
