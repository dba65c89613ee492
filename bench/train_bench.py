"""Training throughput: the reference QLoRA recipe vs coverlora's training path, in one invocation.

A random-weight model of a named shape (Llama-2-7B by default, vocab 32,000) is built once and saved to
--ckpt-dir. Speed and memory do not depend on the weights' values. The data is the real train split,
tokenized by coverlora's own PromptFormat (SmolLM2 tokenizer, ids folded into the model's vocabulary), so
both recipes see the real length distribution and the same rows.

  reference   the seed recipe, as the seed project's anchor_bench.py ran it: HF Trainer, batch 1 x grad-accum 4,
              fp16, paged_adamw_32bit, gradient checkpointing, 4-bit NF4 (double quant), LoRA r=8 on q_proj,v_proj.
  coverlora   coverlora.train.stage.build_trainer (TRL SFTTrainer on our tokenized rows) with a TrainConfig per
              variant: packing (TRL BFD, padding-free position_ids), token-budget micro-batches, fused AdamW,
              Liger kernels, SDPA or flex attention.

For every config: real (non-pad) tokens per second over the timed steps (after --warmup steps), peak GiB
allocated on the GPU (weights included), the final logged loss, and the ratio to the reference. Packed
configs also get a boundary check: the packed forward's hidden states must equal per-sample forwards,
while the same row with one causal mask over the whole row ("leaky") must not.

Run (from the repository root; see bench/README.md):
  python bench/train_bench.py                         # all configs, Llama-2-7B shape, needs a GPU
  python bench/train_bench.py --shape tiny --steps 2 --warmup 1 --train-csv data/sample/train.csv   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
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

from bench.common import SHAPES, build_checkpoint, cuda, device_slug, log, release_gpu, run_meta  # noqa: E402
from bench.report import render, train_markdown  # noqa: E402
from bench.train_measure import CountingCollator, boundary_check, make_clock, summarize  # noqa: E402

# LoRA and optimizer settings shared by every config: the reference's.
COMMON = dict(lora_r=8, lora_alpha=16, lora_dropout=0.05, lora_target_modules="q_proj,v_proj",
              learning_rate=2e-4, lr_scheduler="cosine", warmup_steps=1)

# The settings the configs below start from.
SEEDPATH = dict(quantization="nf4", precision="fp16", batch_size=1, gradient_accumulation_steps=4,
                gradient_checkpointing=True, optimizer="paged_adamw_32bit", group_by_length=False)
PACKED = dict(quantization="nf4", precision="bf16", packing=True, pack_length=4096, batch_size=1,
              gradient_checkpointing=False, optimizer="adamw_torch_fused", kbit_upcast="all")  # configs/h100.yaml before Liger and flex
PACKED8K_LIGER = dict(PACKED, pack_length=8192, use_liger_kernel=True)
FLEX = dict(attn_implementation="flex_attention")
T4 = dict(quantization="nf4", precision="fp16", gradient_checkpointing=True, optimizer="paged_adamw_8bit")

# name -> (TrainConfig overrides, what it is). Run in this order; Liger patches transformers' Llama module
# globally once applied, so every Liger config comes after the configs without it.
CONFIGS: dict[str, tuple[dict, str]] = {
    "reference": ({}, "seed recipe: HF Trainer, bs1 ga4 fp16, paged_adamw_32bit, grad-ckpt, NF4, padded"),
    "qlora_seedpath": (SEEDPATH, "coverlora path with the reference's settings (no packing)"),
    "qlora_pack4k": (PACKED, "configs/h100.yaml: NF4 bf16, packed 4096, no grad-ckpt, fused AdamW, SDPA"),
    "qlora_pack4k_liger": (dict(PACKED, use_liger_kernel=True), "+ Liger kernels"),
    "qlora_pack8k_liger": (PACKED8K_LIGER, "+ Liger, packed 8192"),
    "qlora_pack8k_flex_liger": ({**PACKED8K_LIGER, **FLEX}, "+ Liger, packed 8192, flex attention (block-sparse)"),
    "qlora_pack8k_flex_liger_compile": ({**PACKED8K_LIGER, **FLEX, "torch_compile": True},
                                        "configs/h100.yaml + torch_compile (Trainer compiles the PEFT model)"),
    "lora16_pack8k_liger": (dict(PACKED8K_LIGER, quantization="none"), "bf16 LoRA (no 4-bit), packed 8192, Liger, SDPA"),
    "lora16_pack8k_flex_liger": ({**PACKED8K_LIGER, **FLEX, "quantization": "none"},
                                 "bf16 LoRA, packed 8192, Liger, flex attention"),
    "qlora_pack8k_flex_liger_bf16res": ({**PACKED8K_LIGER, **FLEX, "kbit_upcast": "none"},
                                        "as qlora_pack8k_flex_liger with kbit_upcast none: the norms/embeddings that "
                                        "prepare_model_for_kbit_training upcasts stay bf16"),
    "t4_yaml": (dict(T4, batch_size=4, gradient_accumulation_steps=1),
                "configs/t4-llama2-7b.yaml as written: NF4 fp16, bs4 (length-grouped), grad-ckpt, paged 8-bit AdamW"),
    "t4_pack4k": (dict(T4, packing=True, pack_length=4096, batch_size=1, use_liger_kernel=True),
                  "T4 preset (16 GB): NF4 fp16, grad-ckpt, packed 4096, Liger, paged 8-bit AdamW"),
}
DEFAULT_CONFIGS = ["reference", "qlora_pack4k", "t4_yaml", "qlora_pack8k_flex_liger", "qlora_pack8k_flex_liger_bf16res",
                   "lora16_pack8k_flex_liger", "t4_pack4k"]


# --------------------------------------------------------------------------------------------- data


def load_rows(train_csv: str, tokenizer_path: str, vocab: int):
    """The train split (minus coverlora's validation share) tokenized exactly as coverlora.train.stage does."""
    from coverlora import data as data_mod
    from coverlora.models import load_tokenizer
    from coverlora.prompts import PromptFormat
    from coverlora.train.stage import tokenize_rows

    frame = data_mod.load_split(train_csv, "train")
    frame["cover_letter"] = frame["cover_letter"].map(data_mod.clean_letter)
    train_rows, _ = data_mod.train_val_split(frame, 0.1, 42)
    tokenizer = load_tokenizer(tokenizer_path)
    dataset, dropped, _ = tokenize_rows(train_rows, PromptFormat.for_tokenizer(tokenizer), 768)
    if len(tokenizer) > vocab:
        # Fold ids into the model's vocabulary; special ids (< 3 for SmolLM2) stay as they are.
        dataset = dataset.map(lambda ex: {"input_ids": [i if i < vocab else 3 + (i - 3) % (vocab - 3)
                                                        for i in ex["input_ids"]]})
    lengths = [len(x) for x in dataset["input_ids"]]
    stats = {"rows": len(lengths), "dropped_over_768": dropped, "tokens": sum(lengths),
             "mean": round(sum(lengths) / len(lengths), 1), "median": statistics.median(lengths),
             "p95": sorted(lengths)[int(0.95 * len(lengths))], "max": max(lengths)}
    return dataset, tokenizer, stats


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
    profile_steps = args.profile_steps if "reference" in args.profile else 0
    clock = make_clock(warmup, steps, profile_steps, profile_path)
    targs = TrainingArguments(output_dir=str(Path(args.work_dir) / "out_reference"), per_device_train_batch_size=1,
                              gradient_accumulation_steps=ga, max_steps=warmup + steps + profile_steps,
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
    release_gpu()
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


def coverlora_config(name: str, args, ckpt: Path, max_steps: int):
    """Config `name` as a TrainConfig (without CUDA: its smoke version)."""
    from coverlora.config import TrainConfig

    overrides = CONFIGS[name][0]
    if not cuda():
        overrides = smoke_overrides(overrides)
    cfg = TrainConfig(**{**COMMON, **overrides, "model": str(ckpt), "data": args.train_csv,
                         "output_dir": str(Path(args.work_dir) / f"run_{name}"), "max_steps": max_steps,
                         "logging_steps": 1, "eval_strategy": "no"})
    return cfg


def load_prepared(cfg):
    """The model as coverlora.train.stage.train() loads and prepares it."""
    from coverlora.models import load_model, resolve_dtype
    from coverlora.train.stage import prepare_model

    dtype = resolve_dtype(cfg.precision)
    quantize = cfg.quantization == "nf4" or (cfg.quantization == "auto" and cuda())
    model = load_model(cfg.model, dtype, quantize_4bit=quantize, attn_implementation=cfg.attn_implementation)
    return prepare_model(model, cfg, quantize), dtype


def settings(cfg, trainer) -> dict:
    out = {k: getattr(cfg, k) for k in ("quantization", "precision", "packing", "pack_length", "batch_size",
                                        "gradient_accumulation_steps", "gradient_checkpointing", "optimizer",
                                        "use_liger_kernel", "attn_implementation", "torch_compile", "kbit_upcast")}
    out["optim_resolved"] = trainer.args.optim.value if hasattr(trainer.args.optim, "value") else str(trainer.args.optim)
    out["padding_free"] = bool(getattr(trainer, "padding_free", False))
    out["pad_to_multiple_of"] = trainer.args.pad_to_multiple_of
    return out


def run_coverlora(name, args, ckpt: Path, dataset, tokenizer, warmup: int, steps: int, profile_path) -> dict:
    from transformers.trainer_utils import SaveStrategy

    from coverlora.runs.layout import RunLayout
    from coverlora.train.stage import build_trainer

    profile_steps = args.profile_steps if name in args.profile else 0
    cfg = coverlora_config(name, args, ckpt, warmup + steps + profile_steps)
    base_alloc = torch.cuda.memory_allocated() if cuda() else 0
    t = time.time()
    model, dtype = load_prepared(cfg)
    t_load = time.time() - t
    t = time.time()
    trainer = build_trainer(cfg, RunLayout(Path(cfg.output_dir)), model, tokenizer, dataset, None, dtype)
    t_build = time.time() - t
    trainer.args.save_strategy = SaveStrategy.NO  # the bench keeps no checkpoints
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
    out = summarize(name, CONFIGS[name][1], collator, clock, trainer, warmup, steps, cfg.gradient_accumulation_steps,
                    base_alloc, t_load, t_build)
    out["settings"] = settings(cfg, trainer)
    if check is not None:
        out["boundary_check"] = check
    del trainer, model, collator
    release_gpu()
    return out


# --------------------------------------------------------------------------------------------- the invocation


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="llama2-7b", choices=sorted(SHAPES))
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help=f"comma list from: {', '.join(CONFIGS)}")
    p.add_argument("--steps", type=int, default=8, help="timed optimizer steps per config")
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first (allocator, autotune, compile)")
    p.add_argument("--ref-steps", type=int, default=4, help="timed steps for the reference (0 = --steps); ~2 s each")
    p.add_argument("--train-csv", default=None, help="the train split (default: .devdata/train.csv)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: .devdata/tok, else the embedded SmolLM2)")
    p.add_argument("--ckpt-dir", default=None, help="random checkpoint (built when missing); default TMPDIR/coverlora-bench-SHAPE")
    p.add_argument("--work-dir", default=None, help="trainer output folders (default: a temp dir)")
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    p.add_argument("--tag", default="", help="suffix for the result file names")
    p.add_argument("--check-tokens", type=int, default=4096, help="tokens of the first packed row used by the boundary check")
    p.add_argument("--profile", default="", help="comma list of configs to profile (after their timed steps)")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=0, help="skip configs that would start after this many seconds")
    p.add_argument("--render", default=None, help="only rewrite the .md beside this results .jsonl, then exit")
    args = p.parse_args(argv)
    args.profile = [c for c in args.profile.split(",") if c]
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    args.configs.sort(key=lambda n: CONFIGS[n][0].get("use_liger_kernel", False))  # stable: given order otherwise
    if args.train_csv is None and not args.render:
        local = ROOT / ".devdata" / "train.csv"
        if not local.is_file():
            p.error("no .devdata/train.csv: pass --train-csv (bench/README.md; data/sample/train.csv for a smoke test)")
        args.train_csv = str(local)
    return args


def default_paths(args) -> None:
    """The tokenizer, checkpoint and work folders the command line left open."""
    if args.tokenizer is None:
        local = ROOT / ".devdata" / "tok"
        if local.is_dir():
            args.tokenizer = str(local)
        else:
            from coverlora.models import embedded_model_path

            args.tokenizer = str(embedded_model_path())
    args.ckpt_dir = Path(args.ckpt_dir or Path(tempfile.gettempdir()) / f"coverlora-bench-{args.shape}")
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="coverlora-bench-")


def run_config(name: str, args, dataset, tokenizer, profile_path: Path | None) -> dict:
    """One config's row; an error (e.g. out of memory) becomes the row instead of ending the invocation."""
    log(f"=== {name}: {CONFIGS[name][1]}")
    steps = args.ref_steps or args.steps if name == "reference" else args.steps
    t = time.time()
    try:
        if name == "reference":
            row = run_reference(args, args.ckpt_dir, dataset, args.warmup, steps, profile_path)
        else:
            row = run_coverlora(name, args, args.ckpt_dir, dataset, tokenizer, args.warmup, steps, profile_path)
        row["status"] = "ok"
    except Exception as exc:  # one config failing must not lose the others
        traceback.print_exc()
        row = {"config": name, "status": "error", "error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        release_gpu()
    row["wall_s"] = round(time.time() - t, 1)
    return row


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        print(render(Path(args.render)))
        return 0
    default_paths(args)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    meta = {**run_meta(args.shape, __file__), "warmup": args.warmup, "steps": args.steps}
    log(f"device {meta['device']}; versions {meta['versions']}")
    dataset, tokenizer, stats = load_rows(args.train_csv, args.tokenizer, SHAPES[args.shape]["vocab_size"])
    meta["data"] = (f"{Path(args.train_csv).name}: {stats['rows']} rows after the 10% validation split, mean {stats['mean']} "
                    f"tokens (median {stats['median']}, p95 {stats['p95']}, max {stats['max']}), SmolLM2 tokenizer")
    log(f"rows: {stats}")
    build_s = build_checkpoint(args.shape, args.ckpt_dir)
    meta["checkpoint_build_s"] = round(build_s, 1)
    log(f"checkpoint {args.ckpt_dir} ready ({build_s:.0f} s to build)")

    stem = f"{time.strftime('%Y%m%d-%H%M%S')}_{args.shape}_{device_slug()}{'_' + args.tag if args.tag else ''}"
    jsonl, md = out_dir / f"{stem}.jsonl", out_dir / f"{stem}.md"
    rows = []
    for name in args.configs:
        if args.budget_s and time.time() - started > args.budget_s:
            row = {"config": name, "status": "skipped", "error": f"over --budget-s {args.budget_s:.0f}"}
        else:
            row = run_config(name, args, dataset, tokenizer,
                             out_dir / f"{stem}_{name}_profile.txt" if name in args.profile else None)
        row.update(shape=args.shape, device=meta["device"])
        rows.append(row)
        append_jsonl(jsonl, row)
        log(json.dumps({k: row.get(k) for k in ("config", "status", "tok_per_s", "peak_gib", "final_loss", "boundary_check", "wall_s", "error")}))
    append_jsonl(jsonl, {"meta": meta})
    md.write_text(train_markdown(rows, meta), encoding="utf-8")
    print("\n" + md.read_text(), flush=True)
    log(f"wrote {jsonl} and {md} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
