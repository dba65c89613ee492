"""prefer.py's work: sample and judge pairs on the training rows (resumable), then DPO with TRL's DPOTrainer.

The policy is the SFT adapter itself, trainable; the reference is a frozen copy of it, which TRL's DPOTrainer
makes (adapter "ref") when it is handed a PeftModel with a pretrained adapter and no ref_model: so the reference
is the SFT model, not the base (tests/test_prefer.py checks its log-probabilities). The pairs are tokenized by the
run's PromptFormat, as training and generation are (control tokens only where the template puts them; the
letter ends with the template's end of turn, not tokenizer.eos_token, which differs between transformers
versions for the embedded model).

The output folder is a run like train.py's (train_config.yaml copied, adapter/ the preferred one), so merge.py,
test.py and metrics.py take it unchanged.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch

from coverlora import data as data_mod
from coverlora.config import PreferConfig
from coverlora.errors import UserError
from coverlora.models import has_cuda, load_model, load_tokenizer, resolve_dtype
from coverlora.prefer.pairs import row_records, stats_of
from coverlora.runs.layout import (
    RunLayout,
    file_sha256,
    replace_dir_atomic,
    run_lock,
    write_manifest,
    write_text_atomic,
)
from coverlora.runs.trained import TrainedRun

log = logging.getLogger("coverlora")


def _dpo_trainer_class():
    from trl import DPOTrainer

    class PairsDPOTrainer(DPOTrainer):
        """DPOTrainer on pairs already tokenized (prompt_ids, chosen_ids, rejected_ids): TRL's own preparation
        would re-tokenize text and end each letter with tokenizer.eos_token."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    return PairsDPOTrainer


def _read_partial(path: Path, fingerprint: dict) -> list[dict]:
    """The rows an earlier run of the same setup judged; a partial file of another setup is refused."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or json.loads(lines[0]).get("fingerprint") != fingerprint:
        raise UserError("pairs of another setup are in this folder", where=str(path),
                        fix="use another --output_dir, or delete the file to sample again")
    records = []
    for line in lines[1:]:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line a kill cut short: that row is sampled again
            continue
    return records


def pair_rows(cfg: PreferConfig, run: TrainedRun) -> tuple[list[dict], str]:
    """The rows pairs are sampled on (the run's training rows only, never validation, never test) and their
    hash, which the pairs' fingerprint keeps."""
    _, rows, _ = data_mod.training_rows(run.train)
    rows = rows.head(cfg.max_rows) if cfg.max_rows else rows
    return rows.to_dict("records"), data_mod.frame_hash(rows)


def sample_pairs(cfg: PreferConfig, run: TrainedRun, out: RunLayout, rows: list[dict], rows_hash: str,
                 dtype: torch.dtype) -> list[dict]:
    """One record per training row (its pair, or why none), appended as rows finish: a kill loses no row."""
    from coverlora.generate.letters import candidate_decoders, generate_all
    from coverlora.generate.loading import load_generator

    fingerprint = {"data": rows_hash,
                   "adapter": file_sha256(run.layout.adapter / "adapter_model.safetensors"), "samples": cfg.samples,
                   "temperature": cfg.temperature, "sample_seed": cfg.sample_seed, "max_new_tokens": cfg.max_new_tokens,
                   "words_within": cfg.words_within, "max_rows": cfg.max_rows}
    partial = out.root / "pairs.partial.jsonl"
    records = _read_partial(partial, fingerprint) if cfg.resume or not partial.exists() else None
    if records is None:
        raise UserError("an earlier run's pairs are here", where=str(partial), fix="add --resume to keep them")
    done = {r["row_id"] for r in records}
    todo = [i for i, row in enumerate(rows) if str(row["row_id"]) not in done]
    if todo:
        model, tokenizer = load_generator(run, "finetuned", dtype)
        model.eval()
        fmt = run.prompt_format(tokenizer)
        prompts = [fmt.prompt_ids(row) for row in rows]
        decode, slot_decode = candidate_decoders(samples=cfg.samples, temperature=cfg.temperature,
                                                 seed=cfg.sample_seed)

        def on_batch(batch, candidates, counts, seconds) -> None:
            judged = row_records(candidates, [rows[i] for i in batch], cfg.words_within)
            with open(partial, "a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(r) + "\n" for r in judged))
            records.extend(judged)

        generate_all(model, tokenizer, prompts, todo, max_new_tokens=cfg.max_new_tokens,
                     batch_size=512 if has_cuda() else 8, on_batch=on_batch, desc="pair candidates",
                     stop_ids=fmt.stop_ids, kv_cache="slots" if has_cuda() else "preallocated",
                     decode=decode, slot_decode=slot_decode)
        del model
    order = {str(row["row_id"]): k for k, row in enumerate(rows)}
    return sorted(records, key=lambda r: order[r["row_id"]])


def dpo_config(cfg: PreferConfig, out: RunLayout, dtype: torch.dtype):
    from trl import DPOConfig

    return DPOConfig(output_dir=str(out.checkpoints), beta=cfg.beta, learning_rate=cfg.learning_rate,
                     num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
                     gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_length=cfg.max_length,
                     truncation_mode="keep_start", logging_steps=cfg.logging_steps, save_steps=cfg.save_steps,
                     save_total_limit=2, report_to=[], seed=cfg.seed, bf16=dtype == torch.bfloat16 and has_cuda(),
                     fp16=dtype == torch.float16, use_cpu=not has_cuda(), remove_unused_columns=False,
                     disable_tqdm=True)


def dpo_trainer(cfg: PreferConfig, run: TrainedRun, out: RunLayout, rows: list[dict], pairs: list[dict],
                dtype: torch.dtype):
    """The DPOTrainer: the SFT adapter trainable on its base, TRL's frozen copy of it as the reference."""
    import datasets
    from peft import PeftModel

    tokenizer = load_tokenizer(str(run.layout.adapter))
    fmt = run.prompt_format(tokenizer)
    by_id = {str(row["row_id"]): row for row in rows}
    examples = [{"prompt_ids": fmt.prompt_ids(by_id[p["row_id"]]), "chosen_ids": fmt.completion_ids(p["chosen"]),
                 "rejected_ids": fmt.completion_ids(p["rejected"])} for p in pairs]
    model = PeftModel.from_pretrained(load_model(run.base_model_path(), dtype), str(run.layout.adapter),
                                      is_trainable=True)
    trainer = _dpo_trainer_class()(model=model, args=dpo_config(cfg, out, dtype),
                                   train_dataset=datasets.Dataset.from_list(examples), processing_class=tokenizer)
    return trainer, tokenizer


def prefer(cfg: PreferConfig) -> RunLayout:
    run = TrainedRun.open(cfg.run)
    run.require_adapter()
    out = RunLayout(Path(cfg.output))
    if (out.adapter / "adapter_config.json").is_file() and not cfg.resume:
        raise UserError("this folder already holds a preferred adapter", where=str(out.root),
                        fix="use another --output_dir, or --resume")
    dtype = resolve_dtype(cfg.precision)
    started = time.perf_counter()
    with run_lock(out.root, "prefer"):
        out.root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.layout.stage_config("train"), out.stage_config("train"))  # the same base, data, prompt
        rows, rows_hash = pair_rows(cfg, run)
        records = sample_pairs(cfg, run, out, rows, rows_hash, dtype)
        stats = stats_of(records)
        pairs = [r for r in records if "reason" not in r]
        write_text_atomic(out.root / "pairs.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        log.info("pairs: %d of %d training rows (%d with no clean letter, %d with no flagged one; %d length-matched)",
                 stats.pairs, stats.rows, stats.no_clean_letter, stats.no_flagged_letter, stats.length_matched)
        if not pairs:
            raise UserError("no training row gave a pair (a clean and a flagged letter)", where=str(out.root),
                            fix="sample more letters per row (--samples) or at a higher --temperature")
        trainer, tokenizer = dpo_trainer(cfg, run, out, rows, pairs, dtype)
        last = _last_checkpoint(out) if cfg.resume else None
        trainer.train(resume_from_checkpoint=str(last) if last else None)
        staging = out.root / ".adapter.tmp"
        trainer.model.save_pretrained(str(staging), selected_adapters=["default"])  # not TRL's "ref" copy
        tokenizer.save_pretrained(str(staging))
        replace_dir_atomic(staging, out.adapter)
        write_manifest(out, "prefer", cfg, {"sft_run": str(run.layout.root), "pairs": stats.record(),
                                            "steps": trainer.state.global_step,
                                            "seconds": round(time.perf_counter() - started, 1)})
    return out


def _last_checkpoint(out: RunLayout) -> Path | None:
    from coverlora.train.stage import last_complete_checkpoint

    return last_complete_checkpoint(out.checkpoints)
