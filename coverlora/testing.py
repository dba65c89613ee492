"""The test stage: base and fine-tuned letters for every test (or validation) row into a resumable eval.csv.

Letters go to eval.partial.jsonl as each batch finishes, so a killed run resumes where it stopped; eval.csv is
written atomically once every row has both letters. Decoding itself is generation.py's.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import time
from pathlib import Path
from typing import Iterable

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import distributed
from .config import TestConfig
from .data import frame_hash
from .fields import FIELDS
from .generation import VllmLetters, generate_all, generate_candidates, load_generator
from .models import has_cuda, load_tokenizer, resolve_dtype
from .runio import RunLayout, atomic_path, file_sha256, run_lock, write_manifest
from .runs import TrainedRun

log = logging.getLogger("coverlora")


class PartialResults:
    """This process's finished letters, appended to a JSONL file as they come, so a killed run resumes where it
    stopped. The file starts with the run's fingerprint; distributed.merge_partials reads the files back."""

    def __init__(self, path: Path, fingerprint: dict):
        self.path = path
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")

    def add(self, records: Iterable[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
            handle.flush()


def _auto_batch_size(cfg: TestConfig) -> int:
    # On a GPU the KV-cache budget (generate_all) sets the real size; 512 caps the logits and the prefill.
    return cfg.batch_size or (512 if has_cuda() else 8)


def candidates_of(cfg: TestConfig):
    """Grounded decoding's decode step: the greedy letter and cfg.candidates samples per row."""
    return functools.partial(generate_candidates, samples=cfg.candidates, temperature=cfg.temperature,
                             seed=cfg.sample_seed)


def choosing(save, rows: list[dict], embeddings: bool):
    """An on_batch that keeps, per row, the candidate grounded.choose picks, and records all of them."""
    from .grounded import choose

    def on_batch(batch: list[int], candidates: list[list[str]], counts: list[list[int]], seconds: float) -> None:
        choices = choose(candidates, [rows[i] for i in batch], embeddings=embeddings)
        save(batch, [letters[c.index] for letters, c in zip(candidates, choices)],
             [numbers[c.index] for numbers, c in zip(counts, choices)], seconds,
             extra=[{"candidates": letters, "chosen": c.index, "problems": list(c.problems)}
                    for letters, c in zip(candidates, choices)])

    return on_batch


def run_test(cfg: TestConfig) -> tuple[TrainedRun, pd.DataFrame]:
    """Letters for every test row into eval.csv (see _run_test); the main process holds the run folder's lock."""
    run = TrainedRun.open(cfg.run)
    with run_lock(run.layout.root, "test") if distributed.is_main() else contextlib.nullcontext():
        return _run_test(cfg)


def _run_test(cfg: TestConfig) -> tuple[TrainedRun, pd.DataFrame]:
    """Letters for every test row into eval.csv. Under `accelerate launch`, each process generates its share of the
    rows into a partial file of its own; the main process merges them in row order once all are done."""
    distributed.init(generation=True)
    rank, world = distributed.rank(), distributed.world_size()
    run = TrainedRun.open(cfg.run)
    if "finetuned" in cfg.model_tags:
        run.require_adapter()
    run.layout = RunLayout(run.layout.root, cfg.split)
    frame, source = run.test_frame(cfg.data) if cfg.split == "test" else run.validation_frame()
    if cfg.limit:
        frame = frame.head(cfg.limit)
    dtype = resolve_dtype(cfg.precision)
    adapter_file = run.layout.adapter / "adapter_model.safetensors"
    decoding = {"repetition_penalty": cfg.repetition_penalty, "no_repeat_ngram_size": cfg.no_repeat_ngram_size}
    chosen_how = {"decoding": cfg.decoding}
    if cfg.decoding == "grounded":
        chosen_how.update(candidates=cfg.candidates, temperature=cfg.temperature, sample_seed=cfg.sample_seed)
    # How, not what (the same greedy letters up to kernel rounding): not fingerprinted.
    kv_cache = cfg.kv_cache if cfg.kv_cache != "auto" else ("static" if has_cuda() else "preallocated")
    fingerprint = {"data": frame_hash(frame), "models": cfg.model_tags, "max_new_tokens": cfg.max_new_tokens,
                   "dtype": str(dtype), "adapter": file_sha256(adapter_file) if adapter_file.exists() else None, **decoding,
                   **chosen_how}
    base = run.layout.eval_partial
    if cfg.overwrite and distributed.is_main():
        for path in distributed.partial_paths(base):
            path.unlink()
    distributed.barrier()  # the discarded files are gone before anyone reads
    done = distributed.merge_partials(distributed.partial_paths(base), fingerprint)  # rows of any earlier run
    distributed.barrier()  # every process has read the same rows before any appends new ones
    if done:
        log.info("resuming: %d letters already generated by an earlier run", len(done))
    own = distributed.rank_partial_path(base, rank, world)
    distributed.end_line(own)  # rows appended after a line a kill cut short stay readable
    partial = PartialResults(own, fingerprint)
    rows = frame.to_dict("records")
    started = time.perf_counter()
    vllm = None
    for tag in cfg.model_tags:
        todo = [i for i, row in enumerate(rows) if (tag, row["row_id"]) not in done]
        todo = distributed.shard(todo, rank, world)
        if not todo:
            continue
        if cfg.backend == "vllm":
            tokenizer = load_tokenizer(run.base_model_path())
            vllm = vllm or VllmLetters(run, cfg, dtype, run.prompt_format(tokenizer).stop_ids)
        else:
            model, tokenizer = load_generator(run, tag, dtype, cfg.attn_implementation)
            model.eval()
        fmt = run.prompt_format(tokenizer)
        prompts = [fmt.prompt_ids(row) for row in rows]

        def save(batch: list[int], texts: list[str], counts: list[int], seconds: float, tag: str = tag,
                 extra: list[dict] | None = None) -> None:
            partial.add({"model": tag, "row_id": rows[i]["row_id"], "output": text, "new_tokens": count,
                         "prompt_tokens": len(prompts[i]), "seconds": round(seconds / len(batch), 3), **more}
                        for i, text, count, more in zip(batch, texts, counts, extra or [{}] * len(batch)))

        desc = f"{tag} letters" + (f" [process {rank}/{world}]" if world > 1 else "")
        if vllm is not None:  # vLLM schedules its own batches; chunks only bound what a kill can lose
            chunk = _auto_batch_size(cfg)
            for start in tqdm(range(0, len(todo), chunk), desc=desc, unit="chunk"):
                batch, t0 = todo[start:start + chunk], time.perf_counter()
                save(batch, *vllm(tag, [prompts[i] for i in batch]), time.perf_counter() - t0)
            continue
        grounded = cfg.decoding == "grounded"
        on_batch = choosing(save, rows, cfg.claim_similarity) if grounded else save
        generate_all(model, tokenizer, prompts, todo, max_new_tokens=cfg.max_new_tokens,
                     batch_size=_auto_batch_size(cfg), on_batch=on_batch, desc=desc, stop_ids=fmt.stop_ids,
                     kv_cache=kv_cache, decode=candidates_of(cfg) if grounded else None, **decoding)
        del model
        gc.collect()
        if has_cuda():
            torch.cuda.empty_cache()

    distributed.barrier()  # every process's letters are on disk
    done = distributed.merge_partials(distributed.partial_paths(base))
    table = frame[["row_id", *[f for f in FIELDS if f != "cover_letter"]]].copy()
    table["reference"] = frame["cover_letter"].values
    for tag in cfg.model_tags:
        records = distributed.in_row_order(done, tag, frame["row_id"])
        table[f"{tag}_output"] = [r["output"] for r in records]
        table[f"{tag}_new_tokens"] = [r["new_tokens"] for r in records]
        table[f"{tag}_seconds"] = [r["seconds"] for r in records]
        table["prompt_tokens"] = [r["prompt_tokens"] for r in records]
        if cfg.decoding == "grounded":  # every candidate, for the evidence and for re-choosing with fewer samples
            table[f"{tag}_candidates"] = [json.dumps(r["candidates"]) for r in records]
            table[f"{tag}_chosen"] = [r["chosen"] for r in records]
    distributed.barrier()  # every process has read the partial files before the main one removes them
    if distributed.is_main():
        with atomic_path(run.layout.eval_csv) as tmp:
            table.to_csv(tmp, index=False)
        extra = {"processes": world} if world > 1 else {}
        if has_cuda():  # this process's; with several, each holds its own copy of the model
            extra["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        write_manifest(run.layout, "test", cfg, {"test_data": source, "test_data_hash": fingerprint["data"], "rows": len(table),
                                                 "eval_csv_sha256": file_sha256(run.layout.eval_csv),
                                                 "seconds": round(time.perf_counter() - started, 1), **extra})
        for path in distributed.partial_paths(base):
            path.unlink(missing_ok=True)
    distributed.barrier()  # eval.csv exists when any process returns
    return run, table
