"""Training throughput: the reference QLoRA recipe vs coverlora's training path, in one invocation.

A random-weight model of a named shape (Llama-2-7B by default, vocab 32,000) is built once and saved to
--ckpt-dir. Speed and memory do not depend on the weights' values. The data is the real train split,
tokenized by coverlora's own PromptFormat (SmolLM2 tokenizer, ids folded into the model's vocabulary), so
both recipes see the real length distribution and the same rows.

  reference   the seed recipe, as /work/shared/reference/anchor_bench.py ran it: HF Trainer, batch 1 x grad-accum 4,
              fp16, paged_adamw_32bit, gradient checkpointing, 4-bit NF4 (double quant), LoRA r=8 on q_proj,v_proj.
  coverlora   coverlora.training.build_trainer (TRL SFTTrainer on our tokenized rows) with a TrainConfig per
              variant: packing (TRL BFD, padding-free position_ids), token-budget micro-batches, fused AdamW,
              Liger kernels, SDPA or flex attention.

For every config: real (non-pad) tokens per second over the timed steps (after --warmup steps), peak GiB
allocated on the GPU (weights included), the final logged loss, and the ratio to the reference. Packed
configs also get a boundary check: the packed forward's hidden states must equal per-sample forwards,
while the same row with one causal mask over the whole row ("leaky") must not.

Run (from the repository root; see bench/README.md):
  python bench/train_bench.py                         # all configs, Llama-2-7B shape, needs a GPU
  python bench/train_bench.py --shape tiny --steps 2 --warmup 1   # CPU smoke test of the whole script
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHAPES = {
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5),
    "tiny": dict(vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-5),
}

# LoRA and optimizer settings shared by every config: the reference's.
COMMON = dict(lora_r=8, lora_alpha=16, lora_dropout=0.05, lora_target_modules="q_proj,v_proj",
              learning_rate=2e-4, lr_scheduler="cosine", warmup_steps=1)

# name -> (TrainConfig overrides, what it is). Run in this order; Liger patches transformers' Llama module
# globally once applied, so every Liger config comes after the configs without it.
CONFIGS: dict[str, tuple[dict, str]] = {
    "reference": ({}, "seed recipe: HF Trainer, bs1 ga4 fp16, paged_adamw_32bit, grad-ckpt, NF4, padded"),
    "qlora_seedpath": (dict(quantization="nf4", precision="fp16", batch_size=1, gradient_accumulation_steps=4,
                            gradient_checkpointing=True, optimizer="paged_adamw_32bit", group_by_length=False),
                       "coverlora path with the reference's settings (no packing)"),
    "qlora_pack4k": (dict(quantization="nf4", precision="bf16", packing=True, pack_length=4096, batch_size=1,
                          gradient_checkpointing=False, optimizer="adamw_torch_fused"),
                     "configs/h100.yaml: NF4 bf16, packed 4096, no grad-ckpt, fused AdamW, SDPA"),
    "qlora_pack4k_liger": (dict(quantization="nf4", precision="bf16", packing=True, pack_length=4096, batch_size=1,
                                gradient_checkpointing=False, optimizer="adamw_torch_fused", use_liger_kernel=True),
                           "+ Liger kernels"),
    "qlora_pack8k_liger": (dict(quantization="nf4", precision="bf16", packing=True, pack_length=8192, batch_size=1,
                                gradient_checkpointing=False, optimizer="adamw_torch_fused", use_liger_kernel=True),
                           "+ Liger, packed 8192"),
    "qlora_pack8k_flex_liger": (dict(quantization="nf4", precision="bf16", packing=True, pack_length=8192,
                                     batch_size=1, gradient_checkpointing=False, optimizer="adamw_torch_fused",
                                     use_liger_kernel=True, attn_implementation="flex_attention"),
                                "+ Liger, packed 8192, flex attention (block-sparse)"),
    "qlora_pack8k_flex_liger_compile": (dict(quantization="nf4", precision="bf16", packing=True, pack_length=8192,
                                             batch_size=1, gradient_checkpointing=False, optimizer="adamw_torch_fused",
                                             use_liger_kernel=True, attn_implementation="flex_attention",
                                             torch_compile=True),
                                        "configs/h100.yaml + torch_compile (Trainer compiles the PEFT model)"),
    "lora16_pack8k_liger": (dict(quantization="none", precision="bf16", packing=True, pack_length=8192, batch_size=1,
                                 gradient_checkpointing=False, optimizer="adamw_torch_fused", use_liger_kernel=True),
                            "bf16 LoRA (no 4-bit), packed 8192, Liger, SDPA"),
    "lora16_pack8k_flex_liger": (dict(quantization="none", precision="bf16", packing=True, pack_length=8192,
                                      batch_size=1, gradient_checkpointing=False, optimizer="adamw_torch_fused",
                                      use_liger_kernel=True, attn_implementation="flex_attention"),
                                 "bf16 LoRA, packed 8192, Liger, flex attention"),
    "qlora_pack8k_flex_liger_bf16res": (dict(quantization="nf4", precision="bf16", packing=True, pack_length=8192,
                                             batch_size=1, gradient_checkpointing=False, optimizer="adamw_torch_fused",
                                             use_liger_kernel=True, attn_implementation="flex_attention",
                                             _bench_bf16_residual=True),
                                        "EXPERIMENT, not coverlora's path yet: as qlora_pack8k_flex_liger, but the "
                                        "norms/embeddings that prepare_model_for_kbit_training upcasts stay bf16"),
    "t4_yaml": (dict(quantization="nf4", precision="fp16", batch_size=4, gradient_accumulation_steps=1,
                     gradient_checkpointing=True, optimizer="paged_adamw_8bit"),
                "configs/t4-llama2-7b.yaml as written: NF4 fp16, bs4 (length-grouped), grad-ckpt, paged 8-bit AdamW"),
    "t4_pack4k": (dict(quantization="nf4", precision="fp16", packing=True, pack_length=4096, batch_size=1,
                       gradient_checkpointing=True, optimizer="paged_adamw_8bit", use_liger_kernel=True),
                  "T4 preset (16 GB): NF4 fp16, grad-ckpt, packed 4096, Liger, paged 8-bit AdamW"),
}
DEFAULT_CONFIGS = ["reference", "qlora_pack4k", "t4_yaml", "qlora_pack8k_flex_liger", "qlora_pack8k_flex_liger_bf16res",
                   "lora16_pack8k_flex_liger", "t4_pack4k"]
TARGETS = {"qlora": 12000, "lora16": 15000}  # real tok/s on one H100; t4: peak <= 15 GiB


def cuda() -> bool:
    return torch.cuda.is_available()


def sync() -> None:
    if cuda():
        torch.cuda.synchronize()


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes", "liger-kernel", "triton"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def device_name() -> str:
    if cuda():
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


# --------------------------------------------------------------------------------------------- data & model


def load_rows(train_csv: str, tokenizer_path: str, vocab: int):
    """The train split (minus coverlora's validation share) tokenized exactly as coverlora.training does."""
    from coverlora import data as data_mod
    from coverlora.models import load_tokenizer
    from coverlora.prompts import PromptFormat
    from coverlora.training import tokenize_rows

    frame = data_mod.load_split(train_csv, "train")
    frame["cover_letter"] = frame["cover_letter"].map(data_mod.clean_letter)
    train_rows, _ = data_mod.train_val_split(frame, 0.1, 42)
    tokenizer = load_tokenizer(tokenizer_path)
    dataset, dropped = tokenize_rows(train_rows, PromptFormat.for_tokenizer(tokenizer), 768)
    if len(tokenizer) > vocab:
        # Fold ids into the model's vocabulary; special ids (< 3 for SmolLM2) stay as they are.
        dataset = dataset.map(lambda ex: {"input_ids": [i if i < vocab else 3 + (i - 3) % (vocab - 3)
                                                        for i in ex["input_ids"]]})
    lengths = [len(x) for x in dataset["input_ids"]]
    stats = {"rows": len(lengths), "dropped_over_768": dropped, "tokens": sum(lengths),
             "mean": round(sum(lengths) / len(lengths), 1), "median": statistics.median(lengths),
             "p95": sorted(lengths)[int(0.95 * len(lengths))], "max": max(lengths)}
    return dataset, tokenizer, stats


def build_checkpoint(shape: str, ckpt: Path, tokenizer_path: str | None = None) -> float:
    """A random-weight bf16 Llama of `shape` saved to `ckpt` (reused when already there). With `tokenizer_path`,
    its vocabulary and special ids come from that tokenizer, saved beside the weights (a model test.py can run)."""
    if (ckpt / "config.json").is_file():
        return 0.0
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    t = time.time()
    tokenizer, ids = None, dict(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    if tokenizer_path:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
    config = LlamaConfig(**{**SHAPES[shape], **ids}, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device("cuda" if cuda() else "cpu"):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16 if cuda() else torch.float32)
    model.save_pretrained(str(ckpt))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(ckpt))
    del model
    gc.collect()
    if cuda():
        torch.cuda.empty_cache()
    return time.time() - t


# --------------------------------------------------------------------------------------------- measurement


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
                from torch.profiler import ProfilerActivity, profile

                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda() else [])
                self.prof = profile(activities=acts)
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


def kernel_category(name: str) -> str:
    n = name.lower()
    if "dequant" in n or "kgemm_4bit" in n or "bnb" in n:
        return "nf4 dequant (bitsandbytes)"
    if any(k in n for k in ("fmha", "flash", "attention", "flex", "sdpa", "triton_tem_fused")):
        return "attention"
    if any(k in n for k in ("gemm", "cutlass", "xmma", "nvjet", "cublas", "sm90_", "wgmma", "matmul")):
        return "matmul (GEMM)"
    if any(k in n for k in ("rms", "rope", "swiglu", "silu", "liger", "layer_norm")):
        return "norm/rope/swiglu"
    if "adam" in n or "foreach" in n or "multi_tensor" in n:
        return "optimizer"
    if any(k in n for k in ("cross_entropy", "log_softmax", "logsumexp", "nll", "log_prob", "entropy")):
        return "loss/lm head"
    if any(k in n for k in ("memcpy", "memset", "copy", "cast", "to_copy")):
        return "copies/casts"
    return "other elementwise/reduce"


def kernel_ms(prof) -> dict[str, tuple[float, int]]:
    """Milliseconds and calls of each GPU kernel and copy in a profile (of each op on a CPU run)."""
    out = {}
    for e in prof.key_averages():
        if cuda():  # GPU kernels and copies only: the aten ops that launch them would count them twice
            if "CUDA" not in str(getattr(e, "device_type", "")):
                continue
            t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        else:
            t = e.self_cpu_time_total
        if t and t > 0:
            out[e.key] = (t / 1e3, e.count)
    return out


def ms_by_category(ms_by_kernel: dict[str, float]) -> dict[str, float]:
    """Kernel times summed by kernel_category, largest first."""
    cats: dict[str, float] = {}
    for name, ms in ms_by_kernel.items():
        cats[kernel_category(name)] = cats.get(kernel_category(name), 0.0) + ms
    return dict(sorted(cats.items(), key=lambda kv: -kv[1]))


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
    cleanup()
    if not packed_err:
        return {"skipped": "one segment only"}
    worst, leak = max(packed_err), statistics.median(leaky_err)
    return {"segments_checked": len(packed_err), "segments_in_row": len(segments), "tokens": int(ids.shape[1]),
            "packed_vs_separate_max_rel": round(worst, 5), "leaky_vs_separate_median_rel": round(leak, 5),
            "ok": boundaries_ok(worst, leak)}


def cleanup() -> None:
    gc.collect()
    if cuda():
        torch.cuda.empty_cache()


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


# --------------------------------------------------------------------------------------------- the two recipes


def run_reference(args, ckpt: Path, dataset, warmup: int, steps: int, profile_path) -> dict:
    """anchor_bench.py's 'seed' config, on our rows (labels: the letter only, as coverlora trains)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Trainer, TrainingArguments

    ga, base_alloc = 4, torch.cuda.memory_allocated() if cuda() else 0
    t = time.time()
    if cuda():
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.float16)
        model = AutoModelForCausalLM.from_pretrained(str(ckpt), quantization_config=bnb, device_map={"": 0},
                                                     dtype=torch.float16)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    else:  # CPU smoke test: no bitsandbytes kernels, fp32
        model = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32)
        model.gradient_checkpointing_enable()
    t_load = time.time() - t
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                             lora_dropout=0.05, bias="none", task_type="CAUSAL_LM"))
    rows = [{"input_ids": ex["input_ids"], "attention_mask": [1] * len(ex["input_ids"]),
             "labels": [i if m else -100 for i, m in zip(ex["input_ids"], ex["completion_mask"])]} for ex in dataset]

    def collate(batch):
        m = max(len(b["input_ids"]) for b in batch)
        pad = lambda x, v: x + [v] * (m - len(x))  # noqa: E731
        return {"input_ids": torch.tensor([pad(b["input_ids"], 2) for b in batch]),
                "attention_mask": torch.tensor([pad(b["attention_mask"], 0) for b in batch]),
                "labels": torch.tensor([pad(b["labels"], -100) for b in batch])}

    collator = CountingCollator(collate)
    clock = make_clock(warmup, steps, args.profile_steps if "reference" in args.profile else 0, profile_path)
    targs = TrainingArguments(output_dir=str(Path(args.work_dir) / "out_reference"), per_device_train_batch_size=1,
                              gradient_accumulation_steps=ga, max_steps=warmup + steps + (args.profile_steps if "reference" in args.profile else 0),
                              learning_rate=2e-4, fp16=cuda(), optim="paged_adamw_32bit" if cuda() else "adamw_torch",
                              gradient_checkpointing=True, logging_steps=1, save_strategy="no", report_to="none",
                              warmup_steps=1, lr_scheduler_type="cosine", dataloader_num_workers=0,
                              remove_unused_columns=False, use_cpu=not cuda(), seed=0, disable_tqdm=True)
    t = time.time()
    trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collator, callbacks=[clock])
    t_build = time.time() - t
    if cuda():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    out = summarize("reference", CONFIGS["reference"][1], collator, clock, trainer, warmup, steps, ga, base_alloc,
                    t_load, t_build)
    out["settings"] = {"recipe": "anchor_bench.py seed", "batch_size": 1, "gradient_accumulation_steps": ga,
                       "precision": "fp16" if cuda() else "fp32", "optimizer": targs.optim, "gradient_checkpointing": True,
                       "quantization": "nf4" if cuda() else "none", "attn_implementation": model.config._attn_implementation}
    del trainer, model
    cleanup()
    return out


def smoke_overrides(overrides: dict) -> dict:
    """On a machine without CUDA: the same path in fp32 without 4-bit, Liger or flex (they need a GPU)."""
    o = dict(overrides)
    o.update(quantization="none", precision="fp32", use_liger_kernel=False)
    if o.get("optimizer", "auto") not in ("auto", "adamw_torch"):
        o["optimizer"] = "adamw_torch"
    if o.get("attn_implementation") == "flex_attention":
        o["attn_implementation"] = "sdpa"
    return o


def run_coverlora(name, args, ckpt: Path, dataset, tokenizer, warmup: int, steps: int, profile_path) -> dict:
    from coverlora.config import TrainConfig
    from coverlora.models import load_model, lora_target_check, resolve_dtype
    from coverlora.runio import RunLayout
    from coverlora.training import build_trainer

    overrides, desc = CONFIGS[name]
    if not cuda():
        overrides = smoke_overrides(overrides)
    bench_flags = {k: v for k, v in overrides.items() if k.startswith("_bench_")}
    overrides = {k: v for k, v in overrides.items() if not k.startswith("_bench_")}
    profile_steps = args.profile_steps if name in args.profile else 0
    out_dir = Path(args.work_dir) / f"run_{name}"
    cfg = TrainConfig(**{**COMMON, **overrides, "model": str(ckpt), "data": args.train_csv, "output_dir": str(out_dir),
                         "max_steps": warmup + steps + profile_steps, "logging_steps": 1, "eval_strategy": "no"})
    base_alloc = torch.cuda.memory_allocated() if cuda() else 0
    # The model as coverlora.training.train() prepares it (same calls, same order).
    t = time.time()
    dtype = resolve_dtype(cfg.precision)
    quantize = cfg.quantization == "nf4" or (cfg.quantization == "auto" and cuda())
    model = load_model(cfg.model, dtype, quantize_4bit=quantize, attn_implementation=cfg.attn_implementation)
    model.config.use_cache = False
    lora_target_check(model, cfg.target_modules)
    if quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        if bench_flags.get("_bench_bf16_residual"):  # EXPERIMENT: undo the fp32 upcast of the frozen norms/embeddings
            for param in model.parameters():
                if param.dtype == torch.float32 and not param.requires_grad:
                    param.data = param.data.to(dtype)
    t_load = time.time() - t
    t = time.time()
    trainer = build_trainer(cfg, RunLayout(out_dir), model, tokenizer, dataset, None, dtype)
    t_build = time.time() - t
    from transformers.trainer_utils import SaveStrategy

    trainer.args.save_strategy = SaveStrategy.NO  # the bench keeps no checkpoints
    workaround = None
    if quantize and dtype == torch.float16:
        # WORKAROUND (not in coverlora yet): TRL 1.16 casts QLoRA adapter weights to bf16, and fp16 AMP's GradScaler
        # cannot unscale bf16 gradients ("_amp_foreach_non_finite_check_and_unscale_cuda" not implemented for
        # 'BFloat16'), so coverlora.train() with precision fp16 + nf4 fails at the first optimizer step.
        # fp32 adapters, as PEFT makes them by default, fix it.
        for param in trainer.model.parameters():
            if param.requires_grad and param.dtype == torch.bfloat16:
                param.data = param.data.float()
        workaround = "trainable bf16 -> fp32 after build_trainer (fp16 GradScaler)"
    check = None
    if cfg.packing:
        t = time.time()
        check = boundary_check(trainer, dtype, args.check_tokens)
        check["s"] = round(time.time() - t, 1)
        log(f"boundary check: {check}")
    collator = CountingCollator(trainer.data_collator)
    trainer.data_collator = collator
    clock = make_clock(warmup, steps, profile_steps, profile_path)
    trainer.add_callback(clock)
    if cuda():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    out = summarize(name, desc, collator, clock, trainer, warmup, steps, cfg.gradient_accumulation_steps, base_alloc,
                    t_load, t_build)
    out["settings"] = {k: getattr(cfg, k) for k in ("quantization", "precision", "packing", "pack_length", "batch_size",
                                                     "gradient_accumulation_steps", "gradient_checkpointing", "optimizer",
                                                     "use_liger_kernel", "attn_implementation", "torch_compile")}
    out["settings"]["optim_resolved"] = trainer.args.optim.value if hasattr(trainer.args.optim, "value") else str(trainer.args.optim)
    out["settings"]["padding_free"] = bool(getattr(trainer, "padding_free", False))
    out["settings"]["pad_to_multiple_of"] = trainer.args.pad_to_multiple_of
    if bench_flags:
        out["settings"]["bench_flags"] = bench_flags
    if workaround:
        out["settings"]["bench_workaround"] = workaround
    if check is not None:
        out["boundary_check"] = check
    del trainer, model, collator
    cleanup()
    return out


# --------------------------------------------------------------------------------------------- report


def target_note(row: dict) -> str:
    name = row["config"]
    if "tok_per_s" not in row:
        return ""
    if name.startswith("t4"):
        return "peak <= 15 GiB: " + ("yes" if row.get("peak_gib", 99) <= 15 else "NO")
    for prefix, target in TARGETS.items():
        if name.startswith(prefix) and row.get("settings", {}).get("packing"):
            return f">= {target:,}: " + ("yes" if row["tok_per_s"] >= target else "no")
    return ""


def markdown(rows: list[dict], meta: dict) -> str:
    ref = next((r for r in rows if r["config"] == "reference" and "tok_per_s" in r), None)
    lines = [f"# Training bench: {meta['shape']} on {meta['device']}", "",
             f"- command: `{meta['command']}`", f"- date: {meta['date']}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v),
             f"- data: {meta['data']}", f"- steps: {meta['warmup']} warm-up + {meta['steps']} timed per config; "
             "tok/s counts real (non-pad) input tokens of the timed steps only", "",
             "| config | real tok/s | ratio vs reference | peak GiB (reserved) | final loss | boundaries | target | what |",
             "|---|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        if "tok_per_s" not in r:
            lines.append(f"| {r['config']} | – | – | – | – | – | – | {r.get('status', '')}: {r.get('error', '')[:120]} |")
            continue
        ratio = f"{r['tok_per_s'] / ref['tok_per_s']:.1f}x" if ref else "–"
        bc = r.get("boundary_check", {})
        bcs = ("ok" if "ok" in bc and boundaries_ok(bc["packed_vs_separate_max_rel"], bc["leaky_vs_separate_median_rel"])
               else "LEAK?") + f" ({bc['packed_vs_separate_max_rel']:.1e} vs leaky {bc['leaky_vs_separate_median_rel']:.1e})" \
            if "ok" in bc else ("n/a (unpacked)" if not bc else bc.get("skipped", ""))
        peak = f"{r['peak_gib']} ({r['peak_reserved_gib']})" if "peak_gib" in r else "–"
        lines.append(f"| {r['config']} | {r['tok_per_s']:,.0f} | {ratio} | {peak} | {r['final_loss']} | "
                     f"{bcs} | {target_note(r)} | {r['desc']} |")
    for r in rows:
        if r.get("profile") and "error" not in r["profile"]:
            p = r["profile"]
            lines += ["", f"## Profile: {r['config']} (device time per optimizer step, {p['device_ms_per_step']} ms; "
                          f"wall {r['step_s_median'] * 1000:.0f} ms)", "", "| category | ms/step |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in p["ms_per_step_by_category"].items()]
            lines += ["", "| top kernels | ms/step | calls/step |", "|---|---:|---:|"]
            lines += [f"| `{k['name']}` | {k['ms_per_step']} | {k['calls_per_step']} |" for k in p["top_kernels"][:15]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="llama2-7b", choices=sorted(SHAPES))
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help=f"comma list from: {', '.join(CONFIGS)}")
    p.add_argument("--steps", type=int, default=8, help="timed optimizer steps per config")
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first (allocator, autotune, compile)")
    p.add_argument("--ref-steps", type=int, default=4, help="timed steps for the reference (0 = --steps); ~2 s each")
    p.add_argument("--train-csv", default=None, help="default: .devdata/train.csv, else ../shared/data/.../train.csv")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: .devdata/tok, else the embedded SmolLM2)")
    p.add_argument("--ckpt-dir", default=None, help="random checkpoint (built when missing); default /tmp/coverlora-bench-SHAPE")
    p.add_argument("--work-dir", default=None, help="trainer output folders (default: a temp dir)")
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    p.add_argument("--tag", default="", help="suffix for the result file names")
    p.add_argument("--check-tokens", type=int, default=4096, help="tokens of the first packed row used by the boundary check")
    p.add_argument("--profile", default="", help="comma list of configs to profile (after their timed steps)")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=0, help="skip configs that would start after this many seconds")
    p.add_argument("--render", default=None, help="only rewrite the .md beside this results .jsonl, then exit")
    args = p.parse_args(argv)
    if args.render:
        lines = [json.loads(line) for line in Path(args.render).read_text(encoding="utf-8").splitlines() if line.strip()]
        meta = next(x["meta"] for x in lines if "meta" in x)
        Path(args.render).with_suffix(".md").write_text(markdown([x for x in lines if "config" in x], meta), encoding="utf-8")
        print(Path(args.render).with_suffix(".md").read_text(encoding="utf-8"))
        return 0
    args.profile = [c for c in args.profile.split(",") if c]
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        p.error(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    names.sort(key=lambda n: CONFIGS[n][0].get("use_liger_kernel", False))  # stable: given order otherwise

    if args.train_csv is None:
        local = ROOT / ".devdata" / "train.csv"
        args.train_csv = str(local if local.is_file() else ROOT.parent / "shared" / "data" / "cover-letter-dataset" / "train.csv")
    if args.tokenizer is None:
        local = ROOT / ".devdata" / "tok"
        if local.is_dir():
            args.tokenizer = str(local)
        else:
            from coverlora.models import embedded_model_path

            args.tokenizer = str(embedded_model_path())
    ckpt = Path(args.ckpt_dir or Path(tempfile.gettempdir()) / f"coverlora-bench-{args.shape}")
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="coverlora-bench-")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()

    meta = {"shape": args.shape, "device": device_name(), "versions": versions(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
            "warmup": args.warmup, "steps": args.steps}
    log(f"device {meta['device']}; versions {meta['versions']}")
    dataset, tokenizer, stats = load_rows(args.train_csv, args.tokenizer, SHAPES[args.shape]["vocab_size"])
    meta["data"] = (f"{Path(args.train_csv).name}: {stats['rows']} rows after the 10% validation split, mean {stats['mean']} "
                    f"tokens (median {stats['median']}, p95 {stats['p95']}, max {stats['max']}), SmolLM2 tokenizer")
    log(f"rows: {stats}")
    build_s = build_checkpoint(args.shape, ckpt)
    meta["checkpoint_build_s"] = round(build_s, 1)
    log(f"checkpoint {ckpt} ready ({build_s:.0f} s to build)")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    gpu = torch.cuda.get_device_name(0).split()[-1].lower().replace(" ", "") if cuda() else "cpu"
    if cuda():
        gpu = "-".join(torch.cuda.get_device_name(0).lower().replace("nvidia", "").split())[:24]
    stem = f"{stamp}_{args.shape}_{gpu}{'_' + args.tag if args.tag else ''}"
    jsonl, md = out_dir / f"{stem}.jsonl", out_dir / f"{stem}.md"
    rows = []
    for name in names:
        if args.budget_s and time.time() - started > args.budget_s:
            row = {"config": name, "status": "skipped", "error": f"over --budget-s {args.budget_s:.0f}"}
        else:
            log(f"=== {name}: {CONFIGS[name][1]}")
            steps = args.ref_steps or args.steps if name == "reference" else args.steps
            prof_path = out_dir / f"{stem}_{name}_profile.txt" if name in args.profile else None
            t = time.time()
            try:
                if name == "reference":
                    row = run_reference(args, ckpt, dataset, args.warmup, steps, prof_path)
                else:
                    row = run_coverlora(name, args, ckpt, dataset, tokenizer, args.warmup, steps, prof_path)
                row["status"] = "ok"
            except Exception as exc:  # one config failing (e.g. out of memory) must not lose the others
                traceback.print_exc()
                row = {"config": name, "status": "error", "error": f"{type(exc).__name__}: {str(exc)[:400]}"}
                cleanup()
            row["wall_s"] = round(time.time() - t, 1)
        row.update(shape=args.shape, device=meta["device"])
        rows.append(row)
        with open(jsonl, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        log(json.dumps({k: row.get(k) for k in ("config", "status", "tok_per_s", "peak_gib", "final_loss", "boundary_check", "wall_s", "error")}))
    with open(jsonl, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"meta": meta}) + "\n")
    md.write_text(markdown(rows, meta), encoding="utf-8")
    print("\n" + md.read_text(), flush=True)
    log(f"wrote {jsonl} and {md} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
