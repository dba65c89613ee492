"""The metrics stage: score eval.csv (tables), write plots and report.md (report); run_metrics ties them together."""

from coverlora.metrics.report import HEADLINE, headline_table, plot_summary
from coverlora.metrics.stage import read_eval_csv, run_metrics

__all__ = ["HEADLINE", "headline_table", "plot_summary", "read_eval_csv", "run_metrics"]
