"""Where training's numbers go: an optional experiment tracker (TensorBoard or Weights & Biases, through TRL's
`report_to`; off by default) and, either way, the loss curve as a PNG in the run folder (plots/loss.png)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path

from coverlora.errors import UserError
from coverlora.runs.layout import RunLayout, atomic_path

log = logging.getLogger("coverlora")
# report_to → (the package it needs, how to get it)
TRACKERS = {"tensorboard": ("tensorboard", "pip install tensorboard"),
            "wandb": ("wandb", "pip install wandb, then wandb login (or WANDB_MODE=offline)")}


def check_report_to(report_to: str) -> None:
    """Fail before the model loads when the chosen tracker is not installed."""
    if report_to in TRACKERS and importlib.util.find_spec(TRACKERS[report_to][0]) is None:
        raise UserError(f"report_to '{report_to}' needs the {TRACKERS[report_to][0]} package", where="config key 'report_to'",
                        fix=f"{TRACKERS[report_to][1]}, or report_to: none")


def tracker_environment(report_to: str, layout: RunLayout) -> None:
    """Defaults the trackers read from the environment: TensorBoard writes into <run>/tensorboard, W&B logs to the
    project 'coverlora'. Values already set win."""
    if report_to == "tensorboard":
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(layout.root / "tensorboard"))
        log.info("TensorBoard: tensorboard --logdir %s", os.environ["TENSORBOARD_LOGGING_DIR"])
    elif report_to == "wandb":
        os.environ.setdefault("WANDB_PROJECT", "coverlora")


def read_losses(log_path: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, loss) and (step, eval_loss) pairs from train_log.jsonl; a resumed run's repeated steps keep the last."""
    train, val = {}, {}
    if log_path.is_file():
        for line in log_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if "loss" in record:
                train[record["step"]] = record["loss"]
            if "eval_loss" in record:
                val[record["step"]] = record["eval_loss"]
    return sorted(train.items()), sorted(val.items())


def plot_loss(layout: RunLayout) -> Path | None:
    """Training and validation loss against the step, as <run>/plots/loss.png; None when nothing was logged."""
    train, val = read_losses(layout.train_log)
    if not train and not val:
        log.warning("no loss in %s: no loss curve drawn (logging_steps larger than the run?)", layout.train_log)
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for points, label, style in ((train, "training loss", "-"), (val, "validation loss", "o--")):
        if points:
            ax.plot([step for step, _ in points], [loss for _, loss in points], style, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (letter tokens)")
    ax.set_title(f"{layout.root.name}: loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = layout.root / "plots" / "loss.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    log.info("loss curve -> %s", out)
    return out
