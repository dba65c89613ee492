"""Tune sentence repair on the validation rows: how many tries per flagged sentence, at which temperature.

Usage:
    # run folders written by test.py --split validation: one greedy, one per repair setting (results/run_repair.sh)
    python scripts/tune_repair.py runs/filtered-42 runs/repair-k2-t0.7 runs/repair-k4-t0.7 \
        --out results/smollm2/repair_validation.md

For each run's eval_validation.csv (its decoding and settings read from the run's test_validation config) it
reports, on the validation rows only, by the claim verifier: the share of letters with a borrowed or unsupported
claim and with a specific one, supported claims and words per letter, ROUGE-L against the reference, and the
sentences rewritten and left out. The chosen setting has the fewest flagged letters among those that keep words
per letter within 20% of greedy's and supported claims per letter at least greedy's (so a setting cannot win by
saying nothing), then the highest ROUGE-L; the last line names it as `chosen: TRIES TEMPERATURE`. The test split
is never read here.
"""

import argparse
from pathlib import Path

import _bootstrap
import pandas as pd

from coverlora.errors import UserError
from coverlora.options import load_yaml
from coverlora.runs.layout import RunLayout, write_text_atomic
from coverlora.scoring import rouge_l
from coverlora.scoring.claims.evidence import SUPPORTED
from coverlora.scoring.claims.verdicts import check_letters, letter_flagged


def validation_letters(run: str) -> tuple[pd.DataFrame, dict]:
    layout = RunLayout(Path(run), "validation")
    if not layout.eval_csv.is_file():
        raise UserError("no eval_validation.csv", where=run, fix=f"python test.py --run {run} --split validation")
    table = pd.read_csv(layout.eval_csv, dtype=str, keep_default_na=False)
    if "finetuned_output" not in table:
        raise UserError("eval_validation.csv has no fine-tuned letters", where=str(layout.eval_csv),
                        fix="write it with --models finetuned")
    return table, load_yaml(layout.stage_config("test_validation").read_text(encoding="utf-8"))["test"]


def score(table: pd.DataFrame) -> dict:
    letters, rows = table["finetuned_output"].tolist(), table.rename(columns={"reference": "cover_letter"}).to_dict("records")
    verdicts = check_letters(letters, rows)
    n = len(letters)
    numbers = lambda column: pd.to_numeric(table.get(column, pd.Series([0] * n)), errors="coerce").fillna(0)  # noqa: E731
    return {"flagged": sum(map(letter_flagged, verdicts)) / n,
            "specific": sum(any(v.flagged and v.specific for v in c) for c in verdicts) / n,
            "supported": sum(sum(v.label == SUPPORTED for v in c) for c in verdicts) / n,
            "words": sum(len(letter.split()) for letter in letters) / n,
            "rouge_l": sum(rouge_l(letters, table["reference"].tolist())) / n,
            "rewritten": numbers("finetuned_rewritten").mean(), "left_out": numbers("finetuned_left_out").mean()}


def acceptable(result: dict, greedy: dict) -> bool:
    return abs(result["words"] - greedy["words"]) <= 0.2 * greedy["words"] and result["supported"] >= greedy["supported"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders with an eval_validation.csv: one greedy, the rest repair")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    results = []
    for run in args.runs:
        table, test = validation_letters(run)
        decoding = test.get("decoding", "greedy")
        setting = ((int(test["repair_tries"]), float(test["temperature"]), test.get("repair_threshold"))
                   if decoding == "repair" else None)
        results.append({"run": Path(run).name, "decoding": decoding, "setting": setting, **score(table)})
    greedy = next((r for r in results if r["decoding"] == "greedy"), None)
    repaired = [r for r in results if r["setting"] is not None]
    if greedy is None or not repaired:
        raise UserError("give one greedy run and at least one repair run", where="command line")
    pool = [r for r in repaired if acceptable(r, greedy)] or repaired
    best = min(pool, key=lambda r: (r["flagged"], -r["rouge_l"]))
    lines = ["| decoding | tries | temperature | flag threshold | flagged letters | specific | supported claims / letter "
             "| words | ROUGE-L | rewritten / letter | left out / letter |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        tries, temperature, threshold = r["setting"] or ("–", "–", "–")
        threshold = "verifier's" if threshold is None else threshold
        lines.append(f"| {r['decoding']} | {tries} | {temperature} | {threshold} | {r['flagged']:.3f} | {r['specific']:.3f} | "
                     f"{r['supported']:.2f} | {r['words']:.0f} | {r['rouge_l']:.3f} | {r['rewritten']:.2f} | "
                     f"{r['left_out']:.2f} |")
    rule = "" if best in [r for r in repaired if acceptable(r, greedy)] else " (no setting met the guard: fewest flagged)"
    tries, temperature, threshold = best["setting"]
    at = "" if threshold is None else f", flag threshold {threshold:g}"
    text = "\n".join(lines) + (f"\n\nValidation rows: {len(validation_letters(args.runs[0])[0])}, by the claim verifier "
                               f"at its own threshold. Chosen{rule}: {tries} tries at temperature {temperature:g}{at} "
                               "(fewest flagged letters with words within 20% of greedy's and supported claims at "
                               "least greedy's, then ROUGE-L).\n")
    if args.out:
        write_text_atomic(args.out, text)
    print(text)
    print(f"chosen: {tries} {temperature:g}" + ("" if threshold is None else f" {threshold:g}"))


if __name__ == "__main__":
    _bootstrap.run(main)
