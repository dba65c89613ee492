"""Plots from finished runs: redraw one run's figures, or compare runs side by side.

Usage:
    python scripts/plot.py runs/demo                                  # plots/*.png of one run, from its CSVs
    python scripts/plot.py runs/a runs/b --out results/compare.png    # fine-tuned metrics of several runs
"""

import argparse
from pathlib import Path

import _bootstrap
import pandas as pd

from coverlora.errors import UserError
from coverlora.metrics import HEADLINE, plot_summary, read_eval_csv
from coverlora.runs.layout import RunLayout, atomic_path


def read_summary(layout: RunLayout) -> pd.DataFrame:
    if not layout.summary_csv.is_file():
        raise UserError("no eval_summary.csv", where=str(layout.root), fix=f"run: python metrics.py --run {layout.root}")
    return pd.read_csv(layout.summary_csv)


def compare(runs: list[RunLayout], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = []
    for layout in runs:
        summary = read_summary(layout)
        part = summary[(summary.subset == "all") & summary.system.isin(["base", "finetuned"])].copy()
        part["label"] = [f"{layout.root.name}:{s}" if s == "finetuned" else "base" for s in part.system]
        frames.append(part)
    data = pd.concat(frames).drop_duplicates(subset=["label", "metric"])
    metrics = [m for m in HEADLINE if m in set(data.metric)]
    fig, axes = plt.subplots(2, (len(metrics) + 1) // 2, figsize=(3.4 * ((len(metrics) + 1) // 2), 7))
    for ax, metric in zip(axes.flat, metrics):
        rows = data[data.metric == metric]
        ax.bar(rows["label"], rows["mean"], yerr=rows["std"].fillna(0), capsize=3)
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", rotation=40, labelsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    print(f"comparison of {len(runs)} runs -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding eval_summary.csv")
    parser.add_argument("--out", type=Path, help="comparison PNG (required for several runs)")
    args = parser.parse_args()
    layouts = [RunLayout(run) for run in args.runs]
    if len(layouts) == 1 and not args.out:
        layout = layouts[0]
        scores = pd.read_csv(layout.scores_csv)
        paths = plot_summary(read_summary(layout), scores, read_eval_csv(layout), layout.plots)
        print("\n".join(str(p) for p in paths))
        return
    if not args.out:
        raise UserError("comparing several runs needs --out FILE.png", where="command line")
    compare(layouts, args.out)


if __name__ == "__main__":
    _bootstrap.run(main)
