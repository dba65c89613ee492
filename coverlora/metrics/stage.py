"""The metrics stage: read eval.csv, score, and write scores.csv, eval_summary.csv, seen_in_training.csv, plots and
report.md."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from coverlora import data as data_mod
from coverlora.config import MetricsConfig
from coverlora.errors import UserError
from coverlora.metrics.leakage import seen_in_training
from coverlora.metrics.report import plot_summary, write_report
from coverlora.metrics.tables import (
    eval_columns_present,
    letters_by_row,
    score_letters,
    subsets_for,
    summarize,
    systems_in,
)
from coverlora.runs.card import refresh_cards
from coverlora.runs.layout import RunLayout, atomic_path, file_sha256, read_json, run_lock, write_manifest
from coverlora.runs.trained import TrainedRun
from coverlora.scoring import BertScoreModel, default_model, roberta_large

log = logging.getLogger("coverlora")


def bertscore_model(name: str, layers: int) -> BertScoreModel | None:
    if name == "off":
        return None
    if name == "minilm":
        return default_model()
    if name == "roberta-large":
        return roberta_large()
    folder = Path(name)
    if not (folder / "config.json").is_file():
        raise UserError("bertscore_model must be minilm, roberta-large, off or a local model folder", where=name)
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


def training_rows_for(train_source: str | None) -> pd.DataFrame | None:
    """The training split, for the leakage subsets and the retrieval baseline (None if it can't be read)."""
    if not train_source:
        return None
    try:
        return data_mod.load_split(train_source, "train")
    except UserError as exc:
        log.warning("leak-free and novel subsets and the retrieval baseline skipped: %s", exc)
        return None


def run_metrics(cfg: MetricsConfig) -> tuple[RunLayout, pd.DataFrame]:
    layout = RunLayout(Path(cfg.run), cfg.split)
    if not layout.root.is_dir():
        raise UserError("run folder not found", where=cfg.run, fix="pass the run folder that test.py wrote")
    with run_lock(layout.root, "metrics"):
        return layout, _score(cfg, layout)


def _score(cfg: MetricsConfig, layout: RunLayout) -> pd.DataFrame:
    table = read_eval_csv(layout)
    model = bertscore_model(cfg.bertscore_model, cfg.bertscore_layers)
    train_source = cfg.train_data
    if train_source is None and layout.stage_config("train").is_file():
        train_source = TrainedRun.open(cfg.run).train.data
    started = time.perf_counter()
    train = training_rows_for(train_source)
    seen = None
    if train is not None:
        seen = seen_in_training(train, table.rename(columns={"reference": "cover_letter"}))
        seen.insert(0, "row_id", table["row_id"].values)
        with atomic_path(layout.results / "seen_in_training.csv") as tmp:
            seen.to_csv(tmp, index=False)
    systems = systems_in(table, train)
    log.info("scoring %d rows × %d systems (BERTScore: %s; claims: %s)", len(table), len(systems),
             model.label if model else "off", cfg.claims)
    scores, label = score_letters(table, systems, model, batch_size=cfg.batch_size, claims=cfg.claims)
    subsets = subsets_for(table, cfg.long_form_chars, seen)
    summary = summarize(scores, letters_by_row(table, systems), subsets, resamples=cfg.bootstrap_resamples, label=label)
    with atomic_path(layout.scores_csv) as tmp:
        scores.to_csv(tmp, index=False)
    with atomic_path(layout.summary_csv) as tmp:
        summary.to_csv(tmp, index=False)
    plots = plot_summary(summary, scores, table, layout.plots)
    write_report(layout, table, scores, summary, plots, label)
    write_manifest(layout, "metrics", cfg, {"bertscore": label, "subsets": {k: len(v) for k, v in subsets.items()},
                                            "seconds": round(time.perf_counter() - started, 1)})
    refresh_cards(layout)  # the adapter's and merged model's cards get this eval table
    return summary
