"""Choose DPO's settings on the validation rows: each setting's seeds against the SFT runs they started from.

Usage:
    # run folders with an eval_validation.csv (test.py --split validation --models finetuned), seeds comma-separated
    python scripts/tune_dpo.py sft=runs/mask-42,runs/mask-43,runs/mask-44 \
        lr5e-5=runs/dpo-lr5e-5-mask-42,runs/dpo-lr5e-5-mask-43,runs/dpo-lr5e-5-mask-44 lr2e-4=... \
        --out results/smollm2/grounding-train/dpo_validation.md

The first NAME=RUNS is the SFT starting point. Each run's validation letters are scored as scripts/tune_repair.py
scores them (the claim verifier's flagged and specific shares, supported claims and words per letter, ROUGE-L),
and each setting is the mean ± std over its seeds. The chosen setting has the fewest flagged letters among those
whose mean words stay within 20% of the SFT runs', whose supported claims per letter are at least theirs and whose
ROUGE-L drops by at most 0.01 (no winning by saying nothing); none, when no setting passes. The test split is
never read here.
"""

import argparse
import statistics
from pathlib import Path

import _bootstrap
from tune_repair import acceptable, score, validation_letters

from coverlora.errors import UserError
from coverlora.runs.layout import write_text_atomic

KEYS = ("flagged", "specific", "supported", "words", "rouge_l")
ROUGE_DROP = 0.01


def setting(spec: str) -> tuple[str, list[str]]:
    name, sep, runs = spec.partition("=")
    if not sep or not name or not runs:
        raise UserError(f"expected NAME=RUN,RUN,..., got {spec!r}", where="command line")
    return name, runs.split(",")


def mean_of(runs: list[str]) -> tuple[dict, int]:
    """Each KEY's (mean, std) over the runs' validation letters, and how many rows a run's letters cover."""
    tables = [validation_letters(run)[0] for run in runs]
    scored = [score(table) for table in tables]
    return {key: (statistics.mean(s[key] for s in scored),
                  statistics.stdev(s[key] for s in scored) if len(scored) > 1 else 0.0) for key in KEYS}, len(tables[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", nargs="+", help="NAME=RUN,RUN,...: the SFT runs first, then one per DPO setting")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    if len(args.settings) < 2:
        raise UserError("give the SFT runs and at least one DPO setting", where="command line")
    settings = [setting(spec) for spec in args.settings]
    scored = {name: mean_of(runs) for name, runs in settings}
    results = {name: stats for name, (stats, _) in scored.items()}
    (sft_name, sft), *tried = results.items()
    means = lambda r: {key: r[key][0] for key in KEYS}  # noqa: E731
    passing = [name for name, r in tried
               if acceptable(means(r), means(sft)) and r["rouge_l"][0] >= sft["rouge_l"][0] - ROUGE_DROP]
    chosen = min(passing, key=lambda name: results[name]["flagged"][0]) if passing else None
    lines = ["| setting | seeds | flagged letters | specific | supported claims / letter | words | ROUGE-L |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for (name, runs), r in zip(settings, results.values()):
        cells = [f"{r[k][0]:.3f} ± {r[k][1]:.3f}" for k in ("flagged", "specific")]
        cells += [f"{r['supported'][0]:.2f} ± {r['supported'][1]:.2f}", f"{r['words'][0]:.0f} ± {r['words'][1]:.0f}",
                  f"{r['rouge_l'][0]:.3f} ± {r['rouge_l'][1]:.3f}"]
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    rows = scored[sft_name][1]
    text = "\n".join(lines) + (
        f"\n\nValidation rows: {rows} per run, by the claim verifier; mean ± std over seeds. Chosen: "
        f"{chosen or 'none'} (fewest flagged letters with words within 20% of {sft_name}'s, supported claims at "
        f"least {sft_name}'s and ROUGE-L at most {ROUGE_DROP} below).\n")
    if args.out:
        write_text_atomic(args.out, text)
    print(text)
    print(f"chosen: {chosen or 'none'}")


if __name__ == "__main__":
    _bootstrap.run(main)
