"""Merge a LoRA adapter into its full-precision base and prove the merge changed nothing."""

from __future__ import annotations

import logging
import math
import time

import torch

from coverlora.config import MergeConfig
from coverlora.errors import UserError
from coverlora.models import load_adapter, load_model, load_tokenizer, resolve_dtype
from coverlora.runs.card import write_model_card
from coverlora.runs.layout import replace_dir_atomic, run_lock, write_manifest
from coverlora.runs.trained import TrainedRun

log = logging.getLogger("coverlora")


@torch.no_grad()
def _logits(model, prompts: list[list[int]]) -> list[torch.Tensor]:
    device = next(model.parameters()).device
    return [model(torch.tensor([ids], device=device)).logits.float().cpu() for ids in prompts]


def check_merge(max_diff: float, top1_agreement: float, dtype: torch.dtype, limit: float, where: str) -> None:
    """fp32 merges must match to rounding (1e-3). In 16 bits, W + BA is itself rounded, and over a deep model
    that moves logits by ~1 (1.25-1.47 measured on SmolLM2 in bf16, with 97.9% top-1 agreement), so there the
    test is the next-token choice: the merged model must pick the adapter model's top-1 token at >= 95% of
    positions. That catches a wrong merge (scale, base, 4-bit), not bf16's own rounding."""
    if not math.isfinite(max_diff):  # NaN compares as "not above" any limit: a diverged adapter would pass
        raise UserError(f"merged or adapter logits are not finite ({max_diff})", where=where,
                        fix="the adapter holds NaN/inf weights: retrain (lower --learning_rate, or --precision bf16 "
                            "instead of fp16)")
    if limit or dtype == torch.float32:
        limit = limit or 1e-3
        if max_diff > limit:
            raise UserError(f"merged logits differ from the adapter model's by {max_diff:.3g} (limit {limit:.3g})",
                            where=where, fix="merge in higher precision: --precision fp32")
    elif top1_agreement < 0.95:
        raise UserError(f"the merged model picks a different next token at {100 * (1 - top1_agreement):.1f}% of positions",
                        where=where, fix="merge in higher precision: --precision fp32")


def merge(cfg: MergeConfig) -> tuple[TrainedRun, float]:
    run = TrainedRun.open(cfg.run)
    with run_lock(run.layout.root, "merge"):
        return run, _merge(run, cfg)


def _merge(run: TrainedRun, cfg: MergeConfig) -> float:
    adapter = run.require_adapter()
    base_path = run.base_model_path()
    dtype = resolve_dtype(cfg.precision)
    tokenizer = load_tokenizer(str(adapter))
    fmt = run.prompt_format(tokenizer)
    prompts = [fmt.prompt_ids(row) for row in run.first_train_rows(cfg.check_prompts).to_dict("records")]

    started = time.perf_counter()
    # Always merge into a 16/32-bit base: merging into a 4-bit base re-quantizes and loses the adapter's effect.
    base = load_model(base_path, dtype)
    model = load_adapter(base, str(adapter), run.train.model)
    model.eval()
    adapter_logits = _logits(model, prompts)
    merged = model.merge_and_unload()
    merged_logits = _logits(merged, prompts)
    # torch's max propagates NaN (Python's max() would skip it, depending on the order).
    max_diff = float(torch.stack([(a - b).abs().max() for a, b in zip(adapter_logits, merged_logits)]).max())
    agree = float(torch.cat([(a.argmax(-1) == b.argmax(-1)).flatten() for a, b in zip(adapter_logits, merged_logits)]).float().mean())
    log.info("merged vs adapter logits on %d prompts: max |diff| = %.3g, same top-1 token at %.2f%% of positions",
             len(prompts), max_diff, 100 * agree)
    check_merge(max_diff, agree, dtype, cfg.max_logit_diff, str(adapter))

    # Written beside merged/ and swapped in only when complete, so re-running never leaves half a model.
    staging = run.layout.root / ".merged.tmp"
    # Any tool that reads generation_config.json stops where the letters end, not only at the tokenizer's EOS.
    merged.generation_config.eos_token_id = fmt.stop_ids
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    merged.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    replace_dir_atomic(staging, run.layout.merged)
    write_manifest(run.layout, "merge", cfg, {"base_model": base_path, "dtype": str(dtype).removeprefix("torch."),
                                              "max_logit_diff": max_diff, "seconds": round(time.perf_counter() - started, 1)})
    write_model_card(run.layout, run.layout.merged)
    return max_diff
