"""Tune grounded decoding on the validation rows: how many samples, at which temperature.

Usage:
    # runs written by test.py --decoding grounded --split validation, one per temperature (results/run_grounded.sh)
    python scripts/tune_candidates.py runs/grounded-t0.7 runs/grounded-t1.0 --out results/smollm2/grounded_validation.md

Each run's eval_validation.csv holds every candidate (the greedy letter first, then the samples), so choosing
with the first N samples is exactly what --candidates N would have chosen. For every temperature and N it reports,
on the validation rows only: the share of letters with a borrowed or unsupported claim, ROUGE-L against the
reference, and the share naming company, title and applicant. The best setting has the fewest flagged letters,
then the highest ROUGE-L; the test split is never read here.
"""

import argparse
import json
from pathlib import Path

import _bootstrap
import pandas as pd

from coverlora.errors import UserError
from coverlora.generate.candidates import choose
from coverlora.options import load_yaml
from coverlora.runs.layout import RunLayout, write_text_atomic
from coverlora.scoring import check_rules, rouge_l
from coverlora.scoring.claims.verdicts import check_letters, letter_flagged

SAMPLES = (0, 1, 2, 4, 8)


def validation_candidates(run: str) -> tuple[pd.DataFrame, list[list[str]], float]:
    layout = RunLayout(Path(run), "validation")
    if not layout.eval_csv.is_file():
        raise UserError("no eval_validation.csv", where=run,
                        fix=f"python test.py --run {run} --split validation --decoding grounded")
    table = pd.read_csv(layout.eval_csv, dtype=str, keep_default_na=False)
    if "finetuned_candidates" not in table:
        raise UserError("eval_validation.csv has no candidates", where=str(layout.eval_csv),
                        fix="write it with --decoding grounded")
    return table, [json.loads(c) for c in table["finetuned_candidates"]], _temperature(layout)


def _temperature(layout: RunLayout) -> float:

    config = load_yaml(layout.stage_config("test_validation").read_text(encoding="utf-8"))
    return float(config["test"]["temperature"])


def score(table: pd.DataFrame, letters: list[str]) -> dict:
    rows = table.rename(columns={"reference": "cover_letter"}).to_dict("records")
    flagged = [letter_flagged(v) for v in check_letters(letters, rows, embeddings=False)]
    checks = [check_rules(letter, row) for letter, row in zip(letters, rows)]
    named = [all(c[k] is not False for k in ("company_named", "title_named", "name_named")) for c in checks]
    return {"flagged": sum(flagged) / len(letters), "rouge_l": sum(rouge_l(letters, table["reference"].tolist())) / len(letters),
            "all_named": sum(named) / len(letters)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders with a grounded eval_validation.csv")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    results = []
    for run in args.runs:
        table, candidates, temperature = validation_candidates(run)
        rows = table.rename(columns={"reference": "cover_letter"}).to_dict("records")
        for samples in SAMPLES:
            if samples + 1 > min(map(len, candidates)):
                continue
            pool = [c[: samples + 1] for c in candidates]
            letters = [c[choice.index] for c, choice in zip(pool, choose(pool, rows, embeddings=False))]
            results.append({"temperature": temperature, "samples": samples, **score(table, letters)})
    frame = pd.DataFrame(results).sort_values(["flagged", "rouge_l"], ascending=[True, False])
    best = frame.iloc[0]
    lines = ["| temperature | samples (+ greedy) | letters with a flagged claim | ROUGE-L | company, title and name named |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.temperature:g} | {r.samples} | {r.flagged:.3f} | {r.rouge_l:.3f} | {r.all_named:.3f} |"
              for r in frame.sort_values(["temperature", "samples"]).itertuples()]
    text = "\n".join(lines) + (f"\n\nValidation rows: {len(table)}. Chosen: temperature {best.temperature:g}, "
                               f"{int(best.samples)} samples (fewest flagged letters, then the highest ROUGE-L).\n")
    if args.out:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    _bootstrap.run(main)
