"""A thin wrapper over TRL's SFTTrainer: our tokenized rows, PEFT LoRA/QLoRA, progress and resume."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from transformers import TrainerCallback

from coverlora import data as data_mod
from coverlora import distributed
from coverlora.config import TrainConfig
from coverlora.errors import UserError
from coverlora.fields import CSV_HEADERS, TARGET_FIELD
from coverlora.models import has_cuda, load_model, load_tokenizer, lora_target_check, resolve_dtype, resolve_model
from coverlora.prompts import PromptFormat, check_special_tokens, control_token_in
from coverlora.runs.card import write_model_card
from coverlora.runs.layout import (
    RunLayout,
    check_writable,
    read_stage_config,
    replace_dir_atomic,
    run_lock,
    write_manifest,
)
from coverlora.train.memory import check_fits
from coverlora.train.tracking import check_report_to, plot_loss, tracker_environment

log = logging.getLogger("coverlora")


def refuse_control_tokens(frame, tokenizer, where: str) -> None:
    """A letter holding a control token's text ("<|im_end|>") is refused, not cleaned: it is chat markup pasted
    into the data, and training on an edited copy would teach a letter the file does not hold. (Its text could
    no longer become the control token anyway: PromptFormat.text_ids spells it out.)"""
    for row in frame.to_dict("records"):
        token = control_token_in(str(row.get(TARGET_FIELD) or ""), tokenizer)
        if token:
            raise UserError(f"line {row.get('line', '?')} (row {row.get('row_id', '?')}), column "
                            f"'{CSV_HEADERS[TARGET_FIELD]}' holds the control token {token!r}", where=where,
                            fix="remove the chat markup from that letter (or drop the row: scripts/filter.py)")


def tokenize_rows(frame, fmt: PromptFormat, max_length: int, *, unbacked: str = "train", sign_off: bool = False):
    """Rows → a datasets.Dataset of input_ids + completion_mask (targets.training_examples: unbacked sentences
    trained on, masked or deleted; the sign-off), rows over max_length left out, and the targets' TargetStats.

    Truncating instead would cut the EOS off and teach the model to never stop.
    """
    import datasets

    from coverlora.train.targets import training_examples

    examples, stats = training_examples(frame.to_dict("records"), fmt, unbacked=unbacked, sign_off=sign_off)
    kept = [example for example in examples if len(example["input_ids"]) <= max_length]
    return datasets.Dataset.from_list(kept), len(examples) - len(kept), stats


def one_gpu_per_process(args):
    """Without a launcher, Trainer wraps the model in nn.DataParallel over every visible GPU, which SFTTrainer
    refuses (measured on 2 H200s: ValueError). A plain `python train.py` trains on this process's GPU alone."""
    if args.n_gpu > 1 and not distributed.is_distributed():
        log.warning("%d GPUs visible: training on one. For all of them: accelerate launch --config_file "
                    "configs/accelerate/ddp.yaml --num_processes %d train.py ...", args.n_gpu, args.n_gpu)
        args._n_gpu = 1
    return args


def sft_config(cfg: TrainConfig, layout: RunLayout, dtype: torch.dtype, has_val: bool, end_token: str | None = None):
    from trl import SFTConfig

    cuda = has_cuda()
    evaluate = cfg.eval_strategy if has_val else "no"
    return one_gpu_per_process(SFTConfig(
        output_dir=str(layout.checkpoints),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        gradient_checkpointing=cfg.gradient_checkpointing,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        optim=cfg.optimizer if cfg.optimizer != "auto" else ("adamw_torch_fused" if cuda else "adamw_torch"),
        bf16=cuda and dtype == torch.bfloat16,
        fp16=cuda and dtype == torch.float16,
        use_cpu=not cuda,
        seed=cfg.seed,
        data_seed=cfg.seed,
        completion_only_loss=True,  # labels of the prompt tokens become -100 from our completion_mask
        # TRL makes this the tokenizer's EOS and adds it to the model's generation config: the saved model then stops
        # where its letters end, in any tool that reads the config (vLLM, llama.cpp, Ollama).
        eos_token=end_token,
        max_length=cfg.pack_length if cfg.packing else cfg.max_length,
        packing=cfg.packing,
        packing_strategy="bfd",
        # Packed micro-batches of one fixed shape: flex attention compiles once instead of recompiling for each
        # new length, and the allocator reuses the same blocks. The few pad tokens are masked out of the loss
        # and each attends only to itself (position_ids restart at 0 on every one).
        pad_to_multiple_of=cfg.pack_length if cfg.packing else None,
        use_liger_kernel=cfg.use_liger_kernel,
        torch_compile=cfg.torch_compile,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        eval_strategy=evaluate,
        save_strategy=evaluate if evaluate != "no" else "epoch",
        eval_steps=cfg.eval_steps or None,
        save_steps=cfg.eval_steps or None,
        load_best_model_at_end=evaluate != "no",
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        report_to=cfg.report_to,
        run_name=layout.root.name,
        ddp_find_unused_parameters=False,  # every LoRA weight gets a gradient: skip DDP's extra graph walk
        dataloader_num_workers=0,
        disable_tqdm=False,
    ))


def make_progress_callback(log_path: Path):
    """tqdm bar plus one dense line per logging interval (loss, lr, tok/s), also appended to train_log.jsonl."""
    from transformers.trainer_callback import ProgressCallback

    class DenseProgress(ProgressCallback):
        def __init__(self):
            super().__init__()
            self.last_time, self.last_tokens = time.perf_counter(), None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            now, tokens = time.perf_counter(), logs.get("num_tokens")
            if "loss" in logs and tokens is not None:
                if self.last_tokens is not None and now > self.last_time:
                    logs["tokens_per_s"] = (tokens - self.last_tokens) / (now - self.last_time)
                self.last_time, self.last_tokens = now, tokens
            record = {"step": state.global_step, "epoch": round(state.epoch or 0, 3), **logs}
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            parts = [f"step {state.global_step}/{state.max_steps}", f"ep {state.epoch or 0:.2f}"]
            for key, fmt in (("loss", "loss {:.4f}"), ("eval_loss", "val_loss {:.4f}"), ("learning_rate", "lr {:.2e}"),
                             ("grad_norm", "gnorm {:.2f}"), ("tokens_per_s", "{:,.0f} tok/s"), ("num_tokens", "tokens {:,.0f}"),
                             ("train_loss", "mean train_loss {:.4f}"), ("train_runtime", "{:.0f} s")):
                if key in logs:
                    parts.append(fmt.format(logs[key]))
            line = " | ".join(parts)
            if self.training_bar is not None:
                self.training_bar.write(line)
            else:
                print(line, flush=True)

    return DenseProgress()


def prepare_model(model, cfg: TrainConfig, quantize: bool):
    """The loaded base model made ready for build_trainer: no KV cache, LoRA targets checked, and a 4-bit model
    prepared for k-bit training. train() and bench/train_bench.py both go through here."""
    model.config.use_cache = False
    lora_target_check(model, cfg.target_modules)
    if quantize and not distributed.fsdp_enabled():
        # Not under FSDP: its flat parameters need one dtype, and this upcasts norms and embeddings to fp32.
        # TRL then enables input gradients for gradient checkpointing itself.
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        dtype = resolve_dtype(cfg.precision)
        if kbit_upcast(cfg.kbit_upcast, dtype) == "none":
            keep_frozen_in_compute_dtype(model, dtype)
    return model


def kbit_upcast(setting: str, dtype: torch.dtype) -> str:
    """'auto' resolved: bf16 keeps the frozen weights in bf16 (measured: bench/kbit_upcast.sh); fp16 keeps peft's fp32
    upcast, since fp16's range is what the upcast protects and its GradScaler path was only tested that way."""
    if setting != "auto":
        return setting
    return "none" if dtype == torch.bfloat16 else "all"


def keep_frozen_in_compute_dtype(model, dtype: torch.dtype) -> int:
    """Undo prepare_model_for_kbit_training's fp32 upcast of the frozen norms, embeddings and lm_head: the residual
    stream stays in `dtype`, so no Linear4bit casts its input and output. Returns how many tensors were cast."""
    cast = 0
    for param in model.parameters():
        if param.dtype == torch.float32 and not param.requires_grad and dtype != torch.float32:
            param.data = param.data.to(dtype)
            cast += 1
    return cast


def build_trainer(cfg: TrainConfig, layout: RunLayout, model, tokenizer, train_set, val_set, dtype: torch.dtype,
                  end_token: str | None = None):
    """SFTTrainer with LoRA on `model` (a plain or 4-bit base), our progress line, and no default log printing."""
    from peft import LoraConfig
    from transformers.trainer_callback import ProgressCallback
    from trl import SFTTrainer

    peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                             target_modules=cfg.target_modules, task_type="CAUSAL_LM")
    has_val = val_set is not None and len(val_set) > 0
    trainer = SFTTrainer(model=model, args=sft_config(cfg, layout, dtype, has_val, end_token), train_dataset=train_set,
                         eval_dataset=val_set if has_val else None, processing_class=tokenizer, peft_config=peft_config)
    if dtype == torch.float16:
        # TRL keeps QLoRA adapters in bf16, but fp16 mixed precision's grad scaler can't unscale bf16 gradients
        # (measured: the first optimizer step fails). fp32 master weights are what fp16 AMP expects anyway.
        for param in trainer.model.parameters():
            if param.requires_grad and param.dtype == torch.bfloat16:
                param.data = param.data.float()
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(make_progress_callback(layout.train_log))
    return trainer


def checkpoint_complete(path: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint without it is what a kill during a save leaves."""
    return (path / "trainer_state.json").is_file()


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint the Trainer finished writing (Trainer's own "latest" would pick a cut-short one
    and crash)."""
    complete = [path for path in folder.glob("checkpoint-*") if checkpoint_complete(path)]
    return max(complete, key=lambda path: int(path.name.rsplit("-", 1)[1]), default=None)


def _check_resume(cfg: TrainConfig, layout: RunLayout) -> Path | None:
    """The checkpoint to resume from, if any; refuse to overwrite a finished or foreign run."""
    checkpoints = sorted(layout.checkpoints.glob("checkpoint-*")) if layout.checkpoints.is_dir() else []
    if not cfg.resume:
        if layout.adapter.exists() or checkpoints:
            raise UserError("this run folder already holds a training run", where=str(layout.root),
                            fix="pass --resume to continue it, or choose a new --output_dir")
        return None
    if not layout.stage_config("train").is_file():
        raise UserError("nothing to resume here (no train_config.yaml)", where=str(layout.root),
                        fix="drop --resume to start a new run")
    saved = read_stage_config(layout, "train")
    ignored = {"resume", "epochs", "max_steps", "logging_steps", "report_to"}
    changed = sorted(k for k, v in asdict(cfg).items() if k not in ignored and saved.get(k) != v)
    if changed:
        raise UserError(f"--resume with settings that differ from the saved run: {', '.join(changed)}",
                        where=str(layout.stage_config("train")), fix="resume with the same config, or start a new --output_dir")
    resume_from = last_complete_checkpoint(layout.checkpoints) if checkpoints else None
    for path in checkpoints:
        if not checkpoint_complete(path):
            log.warning("removing %s: a kill cut its save short", path.name)
            if distributed.is_main():
                shutil.rmtree(path)
    return resume_from


class NonFiniteGuard(TrainerCallback):
    """Stop at the first non-finite loss, gradient norm or adapter weight, in one line naming the step and the
    likely causes. The Trainer writes a checkpoint only after the step's log, so the last good checkpoint stays; a
    checkpoint saved with non-finite weights is removed again. Under fp16 an infinite gradient norm is the grad
    scaler's business (it skips that step), so only the loss and the weights count there."""

    def __init__(self, fp16: bool):
        super().__init__()
        self.fp16 = fp16

    @staticmethod
    def fail(step: int, what: str) -> None:
        raise UserError(f"training diverged at step {step}: {what}", where="train",
                        fix="start a new --output_dir with a lower --learning_rate, --precision bf16 instead of fp16 "
                            "(fp16 overflows), or a finite --weight_decay; checkpoints/ keeps the last good step")

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "eval_loss", *(() if self.fp16 else ("grad_norm",))):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(value):
                self.fail(state.global_step, f"{key} is {value}")

    def on_save(self, args, state, control, model=None, **kwargs):
        if model is not None and not weights_finite(model):
            shutil.rmtree(Path(args.output_dir) / f"checkpoint-{state.global_step}", ignore_errors=True)
            self.fail(state.global_step, "the adapter's weights are not finite")


def weights_finite(model) -> bool:
    trainable = [p.detach() for p in model.parameters() if p.requires_grad]
    return not trainable or bool(torch.stack(torch._foreach_norm(trainable)).isfinite().all())


def train(cfg: TrainConfig) -> RunLayout:
    """Fine-tune and save adapter/. Under `accelerate launch` (DDP or FSDP) each process trains on its share of every
    batch; the manifest, train_log.jsonl and adapter/ are written by the main process only (checkpoints by the Trainer).
    The main process holds the run folder's lock throughout: a second run into the same folder is refused."""
    distributed.init()  # before the model loads: each process's own GPU
    layout = RunLayout(Path(cfg.output_dir))
    # Everything that can fail fast does so before the model is loaded and before the run folder exists.
    frame, train_rows, val_rows = data_mod.training_rows(cfg)
    model_path = resolve_model(cfg.model)
    check_report_to(cfg.report_to)
    check_writable(layout.root, need_bytes=256 * 2**20)
    with run_lock(layout.root, "train") if distributed.is_main() else contextlib.nullcontext():
        resume_from = _check_resume(cfg, layout)
        trainer, tokenizer = _fit(cfg, layout, model_path, frame, train_rows, val_rows, resume_from)
        _save_adapter(trainer, tokenizer, layout)
        if distributed.is_main():
            plot_loss(layout)
            write_model_card(layout, layout.adapter)
    return layout


def _fit(cfg: TrainConfig, layout: RunLayout, model_path: str, frame, train_rows, val_rows, resume_from):
    tokenizer = load_tokenizer(model_path)
    fmt = PromptFormat.for_tokenizer(tokenizer, cfg.chat_template, cfg.system_prompt)
    if fmt.use_chat_template:
        check_special_tokens(tokenizer, fmt.end_id)
    log.info("letters end with %r (id %d)", fmt.end_token, fmt.end_id)
    source = Path(cfg.data) / "train.csv" if Path(cfg.data).is_dir() else Path(cfg.data)
    refuse_control_tokens(pd.concat([train_rows, val_rows]), tokenizer, str(source))
    targets = {"unbacked": cfg.unbacked_sentences, "sign_off": cfg.sign_off}  # validation measures the same objective
    train_set, dropped, target_stats = tokenize_rows(train_rows, fmt, cfg.max_length, **targets)
    val_set, val_dropped, _ = tokenize_rows(val_rows, fmt, cfg.max_length, **targets)
    if cfg.unbacked_sentences != "train" or cfg.sign_off:
        log.info("%s", target_stats.line(cfg.unbacked_sentences))
    if len(train_set) == 0:
        raise UserError(f"no training row fits max_length={cfg.max_length}", where=cfg.data, fix="raise --max_length")
    if dropped or val_dropped:
        log.warning("left out %d train / %d validation rows longer than max_length=%d tokens", dropped, val_dropped, cfg.max_length)

    dtype = resolve_dtype(cfg.precision)
    quantize = cfg.quantization == "nf4" or (cfg.quantization == "auto" and has_cuda())
    if has_cuda():
        log.info("CUDA: %s LoRA, compute dtype %s", "QLoRA (4-bit NF4, double quant)" if quantize else "16-bit", dtype)
    else:
        log.info("no CUDA: plain LoRA in %s on the CPU (no 4-bit quantization)", str(dtype).removeprefix("torch."))
    tokens = (cfg.pack_length if cfg.packing else cfg.max_length) * cfg.batch_size
    check_fits(model_path, 0.55 if quantize else dtype.itemsize, tokens, training=True,
               checkpointing=cfg.gradient_checkpointing,
               advice="use configs/t4-fast.yaml, or lower --batch_size / --max_length, or --gradient_checkpointing true")
    model = load_model(model_path, dtype, quantize_4bit=quantize, attn_implementation=cfg.attn_implementation)
    model = prepare_model(model, cfg, quantize)
    if distributed.is_main():
        processes = {}
        if distributed.is_distributed():
            processes = {"processes": distributed.world_size(), "fsdp": distributed.fsdp_enabled()}
        write_manifest(layout, "train", cfg, {
            "model_path": model_path, "data_hash": data_mod.frame_hash(frame), "train_rows": len(train_set),
            "val_rows": len(val_set), "rows_too_long": dropped + val_dropped, "chat_template": fmt.use_chat_template,
            "targets": {**targets, **target_stats.record()},
            **processes,
        })
    tracker_environment(cfg.report_to, layout)
    trainer = build_trainer(cfg, layout, model, tokenizer, train_set, val_set, dtype, fmt.end_token)
    trainer.add_callback(NonFiniteGuard(fp16=dtype == torch.float16))
    log.info("training on %d rows (%d held out for validation) -> %s", len(train_set), len(val_set), layout.root)
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except torch.cuda.OutOfMemoryError:
        raise UserError(f"out of GPU memory while training (batch_size {cfg.batch_size}, "
                        f"{'pack_length ' + str(cfg.pack_length) if cfg.packing else 'max_length ' + str(cfg.max_length)}, "
                        f"gradient_checkpointing {cfg.gradient_checkpointing})", where=str(layout.root),
                        fix="start a new --output_dir with --gradient_checkpointing true, a lower --batch_size or "
                            "--pack_length, or configs/t4-fast.yaml") from None
    return trainer, tokenizer


def _save_adapter(trainer, tokenizer, layout: RunLayout) -> None:
    if not weights_finite(trainer.model):
        NonFiniteGuard.fail(trainer.state.global_step, "the trained adapter's weights are not finite")
    staging = layout.root / ".adapter.tmp"
    if trainer.is_fsdp_enabled:
        # Checkpoints stay sharded (each process its part); the adapter is gathered whole for a plain PEFT folder.
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(staging))  # the best checkpoint's weights when validation ran; only the main process writes
    if distributed.is_main():
        tokenizer.save_pretrained(str(staging))
        replace_dir_atomic(staging, layout.adapter)
    distributed.barrier()  # adapter/ is in place when train() returns in any process
    best = trainer.state.best_metric
    log.info("adapter saved to %s%s", layout.adapter, f" (best val_loss {best:.4f})" if best is not None else "")
