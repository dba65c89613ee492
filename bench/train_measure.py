"""How train_bench measures one training run: tokens per micro-batch, a synchronized clock per optimizer step
(with an optional profile after the timed steps), the packed-boundary check, and the summary row."""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import torch

from bench.common import cuda, kernel_ms, ms_by_category, profiler_activities, release_gpu, sync


class CountingCollator:
    """Wraps a collator; records real (non-pad) and supervised tokens of every micro-batch, in order."""

    def __init__(self, inner):
        self.inner, self.real, self.supervised, self.padded = inner, [], [], []

    def __call__(self, examples):
        batch = self.inner(examples)
        ids = batch["input_ids"]
        real = sum(len(ex["input_ids"]) for ex in examples)  # rows (or packed rows) before any padding
        if "attention_mask" in batch:
            assert real == int(batch["attention_mask"].sum())
        self.real.append(real)
        self.supervised.append(int((batch["labels"] != -100).sum()))
        self.padded.append(int(ids.numel()))
        return batch


def make_clock(warmup: int, timed: int, profile_steps: int, profile_path: Path | None):
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """Synchronized wall time at the end of every optimizer step; optional profiler after the timed steps."""

        def __init__(self):
            self.times, self.prof = [], None

        def on_train_begin(self, args, state, control, **kwargs):
            sync()
            self.start = time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):
            if profile_steps and state.global_step == warmup + timed and self.prof is None:
                from torch.profiler import profile

                self.prof = profile(activities=profiler_activities())
                self.prof.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.times.append(time.perf_counter())
            if self.prof is not None and state.global_step == warmup + timed + profile_steps:
                self.prof.__exit__(None, None, None)
                try:
                    self.report = profile_report(self.prof, profile_steps, profile_path)
                except Exception as exc:  # a profiler quirk must not cost the config's numbers
                    self.report = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                self.prof = None

    return StepClock()


def profile_report(prof, steps: int, path: Path | None) -> dict:
    rows = sorted(((name, ms / steps, count // max(steps, 1)) for name, (ms, count) in kernel_ms(prof).items()),
                  key=lambda r: -r[1])
    cats = ms_by_category({name: ms for name, ms, _ in rows})
    total = sum(cats.values()) or 1.0
    report = {"ms_per_step_by_category": {k: round(v, 1) for k, v in cats.items()},
              "device_ms_per_step": round(total, 1),
              "top_kernels": [{"name": n[:110], "ms_per_step": round(ms, 2), "calls_per_step": c} for n, ms, c in rows[:25]]}
    if path is not None:
        path.write_text(prof.key_averages().table(
            sort_by="self_cuda_time_total" if cuda() else "self_cpu_time_total", row_limit=60))
    return report


def boundaries_ok(packed_err: float, leaky_err: float) -> bool:
    """Packed must match per-sample forwards to within rounding, far below what cross-sample attention gives.

    Rounding alone gives ~0 in fp32 (CPU), ~4e-3 in fp16 and ~3-6e-2 in bf16 on the random 7B (32 layers of
    8-bit-mantissa error); attending across samples gives ~1.3. A tenth of the leaky error separates the two.
    """
    return bool(packed_err < 0.1 * leaky_err)


def boundary_check(trainer, dtype: torch.dtype, max_tokens: int, max_segments: int = 8) -> dict:
    """Packed forward vs per-sample forwards on the first packed micro-batch (hidden states of the last layer).

    Runs before training, in train mode with autograd on, exactly as the training forward runs (so flex
    attention compiles once, for both). LoRA B starts at zero, so LoRA dropout cannot make the runs differ.
    """
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = base.model
    batch = next(iter(trainer.get_train_dataloader()))
    if "position_ids" not in batch or "attention_mask" in batch:
        return {"skipped": "not a padding-free batch"}
    dev = next(backbone.parameters()).device
    ids = batch["input_ids"][:, :max_tokens].to(dev)
    pos = batch["position_ids"][:, :max_tokens].to(dev)
    starts = (pos[0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
    was_training = model.training
    model.train()
    amp = torch.autocast("cuda", dtype=dtype) if cuda() and dtype != torch.float32 else contextlib.nullcontext()

    def rel(a, b):
        return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))

    def hidden(**kw):
        with amp:
            return backbone(**kw).last_hidden_state[0].detach()

    packed_err, leaky_err = [], []
    with torch.enable_grad():
        h_packed = hidden(input_ids=ids, position_ids=pos)
        h_leaky = hidden(input_ids=ids, position_ids=pos, attention_mask=torch.ones_like(ids))
        segments = list(zip(starts[:-1], starts[1:]))
        for a, b in segments[1: max_segments + 1]:  # the first segment sees no earlier tokens either way
            h_sep = hidden(input_ids=ids[:, a:b])
            packed_err.append(rel(h_packed[a:b], h_sep))
            leaky_err.append(rel(h_leaky[a:b], h_sep))
    model.train(was_training)
    del h_packed, h_leaky
    release_gpu()
    if not packed_err:
        return {"skipped": "one segment only"}
    worst, leak = max(packed_err), statistics.median(leaky_err)
    return {"segments_checked": len(packed_err), "segments_in_row": len(segments), "tokens": int(ids.shape[1]),
            "packed_vs_separate_max_rel": round(worst, 5), "leaky_vs_separate_median_rel": round(leak, 5),
            "ok": boundaries_ok(worst, leak)}


def summarize(name, desc, collator, clock, trainer, warmup, steps, ga, base_alloc, t_load, t_build) -> dict:
    times = clock.times
    n = warmup + steps
    if len(times) < n:
        raise RuntimeError(f"only {len(times)} steps ran, {n} needed")
    t0 = times[warmup - 1] if warmup > 0 else clock.start
    dt = times[n - 1] - t0
    real = sum(collator.real[warmup * ga: n * ga])
    sup = sum(collator.supervised[warmup * ga: n * ga])
    padded = sum(collator.padded[warmup * ga: n * ga])
    step_s = [b - a for a, b in zip([clock.start] + times[:-1], times)]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    out = {"config": name, "desc": desc, "steps_timed": steps, "warmup_steps": warmup, "micro_batches_timed": steps * ga,
           "real_tokens": real, "supervised_tokens": sup, "padded_tokens": padded, "timed_s": round(dt, 3),
           "tok_per_s": round(real / dt, 1), "step_s_median": round(statistics.median(step_s[warmup:n]), 3),
           "warmup_step_s": [round(s, 2) for s in step_s[:warmup]],
           "final_loss": round(losses[-1], 4) if losses else None,
           "losses": [round(x, 4) for x in losses],
           "load_s": round(t_load, 1), "trainer_build_s": round(t_build, 1)}
    if cuda():
        out["peak_gib"] = round((torch.cuda.max_memory_allocated() - base_alloc) / 2**30, 2)
        out["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    if getattr(clock, "report", None):
        out["profile"] = clock.report
    return out
