"""The model that writes a tag's letters ('base' or 'finetuned'), located in a run folder and loaded."""

from __future__ import annotations

import logging

import torch

from coverlora.models import load_adapter, load_model, load_tokenizer
from coverlora.runs.trained import TrainedRun

log = logging.getLogger("coverlora")


def generator_source(run: TrainedRun, tag: str) -> tuple[str, str | None]:
    """Where `tag`'s letters come from: (model folder, adapter folder or None). 'base' is the base model;
    'finetuned' is merged/, else the base model with adapter/."""
    if tag == "base":
        return run.base_model_path(), None
    if (run.layout.merged / "config.json").is_file():
        return str(run.layout.merged), None
    return run.base_model_path(), str(run.require_adapter())


def load_generator(run: TrainedRun, tag: str, dtype: torch.dtype, attn: str = "sdpa"):
    """Model and tokenizer for `tag`'s letters (see generator_source)."""
    path, adapter = generator_source(run, tag)
    model = load_model(path, dtype, attn_implementation=attn)
    if adapter is None:
        return model, load_tokenizer(path)
    log.info("no merged/ model: generating from base + adapter (slower; run merge.py first)")
    return load_adapter(model, adapter, run.train.model), load_tokenizer(adapter)
