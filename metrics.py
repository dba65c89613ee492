"""Score base and fine-tuned letters: ROUGE-L, BERTScore, repetition and grounding, with a report.

Usage:
    python metrics.py --run runs/demo
    python metrics.py --config configs/demo-cpu.yaml
    python metrics.py --run runs/llama2 --bertscore_model roberta-large    # the published setting (downloads once)

Reads <run>/eval.csv and writes beside it: scores.csv (one row per letter and system), eval_summary.csv
(mean, std, median per subset, system and metric; fine-tuned − base with a bootstrap 95% CI), plots/*.png
and report.md. Subsets: all rows, long-form references, and rows whose letter or inputs don't occur in train.
"""

from coverlora.cli import run_stage
from coverlora.config import MetricsConfig
from coverlora.metrics import headline_table, run_metrics


def main(cfg: MetricsConfig) -> None:
    layout, summary = run_metrics(cfg)
    print(headline_table(summary, "all").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nsummary: {layout.summary_csv}\nreport:  {layout.report}")


if __name__ == "__main__":
    run_stage("metrics", main)
