"""Merge a LoRA adapter into its full-precision base and prove the merge changed nothing."""

from __future__ import annotations

import logging
import time

import torch

from .config import MergeConfig
from .errors import UserError
from .models import load_model, load_tokenizer, resolve_dtype
from .runio import replace_dir_atomic, write_manifest
from .runs import TrainedRun

log = logging.getLogger("coverlora")


@torch.no_grad()
def _logits(model, prompts: list[list[int]]) -> list[torch.Tensor]:
    device = next(model.parameters()).device
    return [model(torch.tensor([ids], device=device)).logits.float().cpu() for ids in prompts]


def merge(cfg: MergeConfig) -> tuple[TrainedRun, float]:
    from peft import PeftModel

    run = TrainedRun.open(cfg.run)
    adapter = run.require_adapter()
    base_path = run.base_model_path()
    dtype = resolve_dtype(cfg.precision)
    tokenizer = load_tokenizer(str(adapter))
    fmt = run.prompt_format(tokenizer)
    prompts = [fmt.prompt_ids(row) for row in run.first_train_rows(cfg.check_prompts).to_dict("records")]

    started = time.perf_counter()
    # Always merge into a 16/32-bit base: merging into a 4-bit base re-quantizes and loses the adapter's effect.
    base = load_model(base_path, dtype)
    try:
        model = PeftModel.from_pretrained(base, str(adapter))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(f"the adapter does not fit base model {run.train.model} ({str(exc).splitlines()[0][:160]})",
                        where=str(adapter), fix="merge with the base model the adapter was trained on") from None
    model.eval()
    adapter_logits = _logits(model, prompts)
    merged = model.merge_and_unload()
    merged_logits = _logits(merged, prompts)
    max_diff = max(float((a - b).abs().max()) for a, b in zip(adapter_logits, merged_logits))
    limit = cfg.max_logit_diff or (1e-3 if dtype == torch.float32 else 0.5)
    log.info("merged vs adapter logits on %d prompts: max |diff| = %.3g (limit %.3g)", len(prompts), max_diff, limit)
    if max_diff > limit:
        raise UserError(f"merged logits differ from the adapter model's by {max_diff:.3g} (limit {limit:.3g})",
                        where=str(adapter), fix="merge in higher precision: --precision fp32")

    # Written beside merged/ and swapped in only when complete, so re-running never leaves half a model.
    staging = run.layout.root / ".merged.tmp"
    merged.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    replace_dir_atomic(staging, run.layout.merged)
    write_manifest(run.layout, "merge", cfg, {"base_model": base_path, "dtype": str(dtype).removeprefix("torch."),
                                              "max_logit_diff": max_diff, "seconds": round(time.perf_counter() - started, 1)})
    return run, max_diff
