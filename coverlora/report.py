"""The metrics stage: read eval.csv, score, and write scores.csv, eval_summary.csv, plots and report.md."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from . import data as data_mod
from .config import MetricsConfig
from .errors import UserError
from .evaluation import eval_columns_present, letters_by_row, score_letters, subsets_for, summarize
from .runio import RunLayout, atomic_path, file_sha256, read_json, write_manifest, write_text_atomic
from .runs import TrainedRun
from .scoring import BertScoreModel, default_model, roberta_large

log = logging.getLogger("coverlora")
HEADLINE = ("rouge_l", "bertscore_f1", "repetition", "seq_rep_4", "distinct_2", "company_named", "title_named",
            "unsupported_years", "entity_precision", "has_placeholder", "self_bleu_4", "letter_words")
SYSTEM_ORDER = ("base", "finetuned", "reference", "copy_input")
SYSTEM_COLORS = {"base": "#9aa5b1", "finetuned": "#2f6fb0", "reference": "#4caf50", "copy_input": "#d9a441"}


def bertscore_model(name: str, layers: int) -> BertScoreModel:
    if name == "minilm":
        return default_model()
    if name == "roberta-large":
        return roberta_large()
    folder = Path(name)
    if not (folder / "config.json").is_file():
        raise UserError("bertscore_model must be minilm, roberta-large or a local model folder", where=name)
    import json

    depth = layers or json.loads((folder / "config.json").read_text())["num_hidden_layers"]
    return BertScoreModel(model_type=str(folder), num_layers=depth, baseline_path=None, display_name=folder.name)


def read_eval_csv(layout: RunLayout) -> pd.DataFrame:
    path = layout.eval_csv
    if not path.is_file():
        raise UserError(f"no {path.name} in this run", where=str(layout.root),
                        fix=f"run: python test.py --run {layout.root} --split {layout.split}")
    test_entry = read_json(layout.versions).get("test" + layout.suffix, {}) if layout.versions.is_file() else {}
    if test_entry.get("eval_csv_sha256") and test_entry["eval_csv_sha256"] != file_sha256(path):
        raise UserError("eval.csv is not the one this run's test.py wrote (different test set or edited)",
                        where=str(path), fix=f"regenerate it: python test.py --run {layout.root}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot parse eval.csv ({str(exc).splitlines()[0]})", where=str(path)) from None
    missing = eval_columns_present(table)
    if missing or not any(c in table for c in ("base_output", "finetuned_output")):
        raise UserError(f"eval.csv lacks columns {', '.join(missing) or 'base_output/finetuned_output'}", where=str(path),
                        fix="use the eval.csv that test.py writes")
    table["row_id"] = table["row_id"].astype(int)
    return table


def leaked_rows(table: pd.DataFrame, train_source: str | None) -> set[int] | None:
    """Test rows whose letter or inputs also occur in the training data (None if it can't be read)."""
    if not train_source:
        return None
    from .quality import find_leakage

    try:
        train = data_mod.load_split(train_source, "train")
    except UserError as exc:
        log.warning("leak-free subset skipped: %s", exc)
        return None
    test = table.rename(columns={"reference": "cover_letter"})
    leakage = find_leakage(train, test)
    return set(test.loc[leakage["leaked"].values, "row_id"])


def plot_summary(summary: pd.DataFrame, scores: pd.DataFrame, table: pd.DataFrame, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    overall = summary[summary.subset == "all"]
    metrics = [m for m in HEADLINE if m in set(overall.metric)]
    fig, axes = plt.subplots(2, (len(metrics) + 1) // 2, figsize=(3.2 * ((len(metrics) + 1) // 2), 6.5))
    for ax, metric in zip(axes.flat, metrics):
        rows = overall[overall.metric == metric].set_index("system").reindex([s for s in SYSTEM_ORDER])
        rows = rows.dropna(subset=["mean"])
        ax.bar(rows.index, rows["mean"], yerr=rows["std"].fillna(0), capsize=3,
               color=[SYSTEM_COLORS[system] for system in rows.index])
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", rotation=35, labelsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("base vs fine-tuned (mean ± std, all test rows)")
    fig.tight_layout()
    paths.append(_save(fig, folder / "metrics_bar.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    lengths = dict(zip(table["row_id"], table["reference"].str.len()))
    for system in ("base", "finetuned"):
        part = scores[scores.system == system]
        if len(part):
            ax.scatter(part["row_id"].map(lengths), part["rouge_l"], s=12, alpha=0.7, label=system,
                       color=SYSTEM_COLORS[system])
    ax.set_xlabel("reference length (characters)")
    ax.set_ylabel("ROUGE-L F1")
    ax.legend()
    ax.set_title("ROUGE-L against reference length")
    fig.tight_layout()
    paths.append(_save(fig, folder / "rouge_vs_length.png"))
    plt.close("all")
    return paths


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def _markdown_table(frame: pd.DataFrame) -> str:
    frame = frame.fillna("")
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "\n".join("| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False))


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def headline_table(summary: pd.DataFrame, subset: str) -> pd.DataFrame:
    """Metrics as rows, systems as columns, plus the fine-tuned − base difference and its 95% CI."""
    part = summary[(summary.subset == subset) & summary.metric.isin(HEADLINE)]
    wide = part.pivot_table(index="metric", columns="system", values="mean", aggfunc="first")
    wide = wide.reindex(index=[m for m in HEADLINE if m in wide.index], columns=[s for s in SYSTEM_ORDER if s in wide.columns])
    diffs = part[part.system == "finetuned"].set_index("metric")
    if "diff_vs_base" in diffs and diffs["diff_vs_base"].notna().any():
        wide["finetuned − base [95% CI]"] = [
            f"{d['diff_vs_base']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if m in diffs.index and pd.notna(d["diff_vs_base"]) else ""
            for m in wide.index for d in [diffs.loc[m] if m in diffs.index else {}]]
    return wide.reset_index()


def write_report(layout: RunLayout, table: pd.DataFrame, scores: pd.DataFrame, summary: pd.DataFrame,
                 plots: list[Path], label: str) -> None:
    lines = [f"# Evaluation report: {layout.root.name}", "",
             f"{len(table)} test rows. BERTScore: {label}. Rates (company_named, ...) are shares of letters; "
             "unsupported_years counts only letters whose resume states years. The copy_input row is the prompt "
             "fields pasted as the letter: a system should beat it.", ""]
    for subset in summary.subset.unique():
        n = int(summary[(summary.subset == subset) & (summary.system == "reference")]["n"].max())
        lines += [f"## {subset} ({n} rows)", "", _markdown_table(headline_table(summary, subset)), ""]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(layout.results).as_posix()})" for p in plots] + [""]
    if "finetuned" in set(scores.system):
        tuned = scores[scores.system == "finetuned"].sort_values("rouge_l").reset_index(drop=True)
        picks = {"worst": tuned.iloc[0], "median": tuned.iloc[len(tuned) // 2], "best": tuned.iloc[-1]}
        lines += ["## Examples (fine-tuned ROUGE-L: best, median, worst)", ""]
        by_row = table.set_index("row_id")
        for name, pick in picks.items():
            row = by_row.loc[pick["row_id"]]
            lines += [f"### {name}: row {pick['row_id']}, ROUGE-L {pick['rouge_l']:.3f} — {row['job_title']} at {row['hiring_company']}", ""]
            for column, title in (("base_output", "base"), ("finetuned_output", "fine-tuned"), ("reference", "reference")):
                if column in row:
                    lines += [f"**{title}**", "", "> " + str(row[column]).replace("\n", "\n> "), ""]
    write_text_atomic(layout.report, "\n".join(lines))


def run_metrics(cfg: MetricsConfig) -> tuple[RunLayout, pd.DataFrame]:
    layout = RunLayout(Path(cfg.run), cfg.split)
    if not layout.root.is_dir():
        raise UserError("run folder not found", where=cfg.run, fix="pass the run folder that test.py wrote")
    table = read_eval_csv(layout)
    model = bertscore_model(cfg.bertscore_model, cfg.bertscore_layers)
    train_source = cfg.train_data
    if train_source is None and layout.stage_config("train").is_file():
        train_source = TrainedRun.open(cfg.run).train.data
    started = time.perf_counter()
    log.info("scoring %d rows (BERTScore: %s)", len(table), model.label)
    scores, label = score_letters(table, model, batch_size=cfg.batch_size)
    subsets = subsets_for(table, cfg.long_form_chars, leaked_rows(table, train_source))
    summary = summarize(scores, letters_by_row(table), subsets, resamples=cfg.bootstrap_resamples, label=label)
    with atomic_path(layout.scores_csv) as tmp:
        scores.to_csv(tmp, index=False)
    with atomic_path(layout.summary_csv) as tmp:
        summary.to_csv(tmp, index=False)
    plots = plot_summary(summary, scores, table, layout.plots)
    write_report(layout, table, scores, summary, plots, label)
    write_manifest(layout, "metrics", cfg, {"bertscore": label, "subsets": {k: len(v) for k, v in subsets.items()},
                                            "seconds": round(time.perf_counter() - started, 1)})
    return layout, summary
