"""The test stage: base and fine-tuned letters for every test (or validation) row into a resumable eval.csv.

Letters go to eval.partial.jsonl as each batch finishes, so a killed run resumes where it stopped; eval.csv is
written atomically once every row has both letters. Decoding itself is generate/letters.py's.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from coverlora import distributed
from coverlora.config import TestConfig
from coverlora.data import frame_hash
from coverlora.errors import UserError
from coverlora.fields import FIELDS
from coverlora.generate.letters import candidate_decoders, generate_all
from coverlora.generate.loading import generator_source, load_generator
from coverlora.generate.vllm import VllmLetters
from coverlora.models import has_cuda, load_tokenizer, load_weights_into, prefetch, resolve_dtype
from coverlora.runs.layout import RunLayout, atomic_path, file_sha256, run_lock, write_manifest
from coverlora.runs.trained import TrainedRun

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
    """Grounded decoding's decode steps, on generate and on the slot engine (the same letters for the same seed):
    the greedy letter and cfg.candidates samples per row."""
    return candidate_decoders(samples=cfg.candidates, temperature=cfg.temperature, seed=cfg.sample_seed,
                              top_p=cfg.top_p)


@contextlib.contextmanager
def choosing(save, rows: list[dict], embeddings: bool):
    """An on_batch that keeps, per row, the candidate candidates.choose picks, and records all of them. The
    choice runs in a worker process (worker.py) while the engine decodes on; each batch is saved once chosen,
    so a killed run still resumes from what was saved."""
    from coverlora.generate.candidates import keep_chosen
    from coverlora.generate.worker import in_worker

    def chosen(result, meta) -> None:
        kept, kept_counts, choices = result
        batch, candidates, seconds = meta
        save(batch, kept, kept_counts, seconds,
             extra=[{"candidates": letters, "chosen": c.index, "problems": list(c.problems)}
                    for letters, c in zip(candidates, choices)])

    choose = functools.partial(keep_chosen, embeddings=embeddings)  # picklable: the worker imports keep_chosen
    with in_worker(chosen) as submit:
        def on_batch(batch: list[int], candidates: list[list[str]], counts: list[list[int]], seconds: float) -> None:
            submit(choose, candidates, counts, [rows[i] for i in batch], meta=(batch, candidates, seconds))

        yield on_batch


def repairing(cfg: TestConfig, save, rows: list[dict], prompts: list[list[int]]):
    """Sentence repair's decode steps (generate's, in batches; the slot engine's, all rows at once) and on_batch:
    each letter repaired against its row, saved with how many sentences were rewritten and left out."""
    from coverlora.generate.repair import repair_letters
    from coverlora.generate.repair_slots import slot_repair_letters

    row_of = {id(prompt): row for prompt, row in zip(prompts, rows)}
    options = {"tries": cfg.repair_tries, "temperature": cfg.temperature, "seed": cfg.sample_seed, "top_p": cfg.top_p,
               "threshold": cfg.repair_threshold}

    def decode(model, tokenizer, batch_prompts, max_new_tokens, *, stop_ids, kv_cache, **decoding):
        repaired = repair_letters(model, tokenizer, batch_prompts, [row_of[id(p)] for p in batch_prompts],
                                  max_new_tokens, stop_ids=stop_ids, **options, **decoding)
        return [r.text for r in repaired], repaired

    def slot_decode(model, tokenizer, all_prompts, indices, caps, *, batch_size, on_batch, desc, stop_ids,
                    repetition_penalty):
        bar = tqdm(total=len(indices), desc=desc, unit="letter")

        def done(batch: list[int], repaired: list, seconds: float) -> None:
            on_batch(batch, [r.text for r in repaired], repaired, seconds)
            bar.update(len(batch))

        slot_repair_letters(model, tokenizer, all_prompts, rows, indices, max(caps), stop_ids=stop_ids,
                            repetition_penalty=repetition_penalty, most_slots=batch_size, on_done=done, **options)
        bar.close()
        log.info("%s: %s", desc, model._slot_engine.stats.line())

    def on_batch(batch: list[int], texts: list[str], repaired: list, seconds: float) -> None:
        save(batch, texts, [r.new_tokens for r in repaired], seconds, extra=[r.record() for r in repaired])

    return decode, slot_decode, on_batch


def decoders(cfg: TestConfig, save, rows: list[dict], prompts: list[list[int]]):
    """cfg.decoding's decode step on generate and on the slot engine (None, None: greedy), and a context holding
    the on_batch that saves what they write."""
    if cfg.decoding == "grounded":
        decode, slot_decode = candidates_of(cfg)
        return decode, slot_decode, choosing(save, rows, cfg.claim_similarity)
    if cfg.decoding == "repair":
        decode, slot_decode, on_batch = repairing(cfg, save, rows, prompts)
        return decode, slot_decode, contextlib.nullcontext(on_batch)
    return None, None, contextlib.nullcontext(save)


def saver(partial: PartialResults, tag: str, rows: list[dict], prompts: list[list[int]]):
    """An on_batch that appends `tag`'s finished letters (and any per-row extra fields) to the partial file."""

    def save(batch: list[int], texts: list[str], counts: list[int], seconds: float,
             extra: list[dict] | None = None) -> None:
        partial.add({"model": tag, "row_id": rows[i]["row_id"], "output": text, "new_tokens": count,
                     "prompt_tokens": len(prompts[i]), "seconds": round(seconds / len(batch), 3), **more}
                    for i, text, count, more in zip(batch, texts, counts, extra or [{}] * len(batch)))

    return save


def resume_state(base: Path, fingerprint: dict, overwrite: bool, rank: int, world: int) -> tuple[dict, PartialResults]:
    """The letters earlier runs of this setup finished (all processes'), and this process's partial file."""
    if overwrite and distributed.is_main():
        for path in distributed.partial_paths(base):
            path.unlink()
    distributed.barrier()  # the discarded files are gone before anyone reads
    done = distributed.merge_partials(distributed.partial_paths(base), fingerprint)  # rows of any earlier run
    distributed.barrier()  # every process has read the same rows before any appends new ones
    if done:
        log.info("resuming: %d letters already generated by an earlier run", len(done))
    own = distributed.rank_partial_path(base, rank, world)
    distributed.end_line(own)  # rows appended after a line a kill cut short stay readable
    return done, PartialResults(own, fingerprint)


def write_eval(run: TrainedRun, cfg: TestConfig, table: pd.DataFrame, source: str, fingerprint: dict, started: float,
               world: int) -> None:
    """eval.csv, atomically, and the stage's manifest; then the partial files go."""
    with atomic_path(run.layout.eval_csv) as tmp:
        table.to_csv(tmp, index=False)
    extra = {"processes": world} if world > 1 else {}
    if has_cuda():  # this process's; with several, each holds its own copy of the model
        extra["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    write_manifest(run.layout, "test", cfg, {"test_data": source, "test_data_hash": fingerprint["data"], "rows": len(table),
                                             "eval_csv_sha256": file_sha256(run.layout.eval_csv),
                                             "seconds": round(time.perf_counter() - started, 1), **extra})
    for path in distributed.partial_paths(run.layout.eval_partial):
        path.unlink(missing_ok=True)


def fingerprint_of(cfg: TestConfig, run: TrainedRun, frame: pd.DataFrame, dtype: torch.dtype, decoding: dict) -> dict:
    """What makes two runs' letters the same letters: finished rows of another fingerprint are never mixed in."""
    adapter_file = run.layout.adapter / "adapter_model.safetensors"
    chosen_how = {"decoding": cfg.decoding}
    if cfg.decoding == "grounded":
        chosen_how.update(candidates=cfg.candidates, temperature=cfg.temperature, sample_seed=cfg.sample_seed,
                          top_p=cfg.top_p)
    if cfg.decoding == "repair":
        chosen_how.update(repair_tries=cfg.repair_tries, temperature=cfg.temperature, sample_seed=cfg.sample_seed,
                          top_p=cfg.top_p, repair_threshold=cfg.repair_threshold)
    if cfg.lengths_from:
        chosen_how["lengths_from"] = file_sha256(Path(cfg.lengths_from))
    return {"data": frame_hash(frame), "models": cfg.model_tags, "max_new_tokens": cfg.max_new_tokens,
            "dtype": str(dtype), "adapter": file_sha256(adapter_file) if adapter_file.exists() else None, **decoding,
            **chosen_how}


def vllm_letters(vllm: VllmLetters, tag: str, todo: list[int], prompts: list[list[int]], save, chunk: int,
                 desc: str) -> None:
    """vLLM schedules its own batches; the chunks only bound what a kill can lose."""
    for start in tqdm(range(0, len(todo), chunk), desc=desc, unit="chunk"):
        batch, t0 = todo[start:start + chunk], time.perf_counter()
        save(batch, *vllm(tag, [prompts[i] for i in batch]), time.perf_counter() - t0)


def replayed_lengths(path: str, tag: str, frame: pd.DataFrame) -> dict[int, int]:
    """lengths_from: each row's new-token count in an earlier eval.csv, by position in `frame` (matched on row_id)."""
    column = f"{tag}_new_tokens"
    try:
        table = pd.read_csv(path, usecols=["row_id", column])
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read row_id and {column} ({type(exc).__name__})", where=path,
                        fix="give an eval.csv written by test.py") from None
    counts = dict(zip(table["row_id"].astype(str), table[column]))
    limits = {}
    for position, row_id in enumerate(frame["row_id"].astype(str)):
        count = counts.get(row_id)
        if count is None or not float(count).is_integer() or count < 1:
            found = "missing" if count is None else repr(count)
            raise UserError(f"row_id {row_id}: field {column} is {found}", where=path,
                            fix="use an eval.csv of the same test data, with positive token counts")
        limits[position] = int(count)
    return limits


def letters_table(frame: pd.DataFrame, done: dict, cfg: TestConfig) -> pd.DataFrame:
    """eval.csv's rows: the inputs, the reference, and each model's letter with its token counts and time."""
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
        if cfg.decoding == "repair":  # what repair did to each letter
            for key in ("rewritten", "left_out", "samples"):
                table[f"{tag}_{key}"] = [r[key] for r in records]
    return table


def free_memory() -> None:
    """Return a deleted model's memory (GPU included) before the next model loads."""
    gc.collect()
    if has_cuda():
        torch.cuda.empty_cache()


def resolved_kv_cache(cfg: TestConfig) -> str:
    """kv_cache 'auto': the slot engine on a GPU (and wherever lengths are replayed, which only it can do); on a CPU
    the preallocated cache, which measured 4% faster there when every letter runs to the cap (bench/results/)."""
    if cfg.kv_cache != "auto":
        return cfg.kv_cache
    return "slots" if has_cuda() or cfg.lengths_from else "preallocated"


def reuse_generator(run: TrainedRun, tag: str, previous) -> tuple | None:
    """`previous` (the last tag's model) with `tag`'s weights copied in, when they are a full checkpoint of the same
    architecture: the slot engine built on it, CUDA graphs included, then serves both models. None otherwise."""
    path, adapter = generator_source(run, tag)
    started = time.perf_counter()
    if adapter is None and load_weights_into(previous, path):
        log.info("%s: weights copied into the loaded model in %.1f s (its decoding graphs are reused)", tag,
                 time.perf_counter() - started)
        return previous, load_tokenizer(path)
    return None


def run_test(cfg: TestConfig) -> tuple[TrainedRun, pd.DataFrame]:
    """Letters for every test row into eval.csv (see _run_test); the main process holds the run folder's lock."""
    run = TrainedRun.open(cfg.run)
    with run_lock(run.layout.root, "test") if distributed.is_main() else contextlib.nullcontext():
        return _run_test(cfg)


def _open_run(cfg: TestConfig) -> tuple[TrainedRun, pd.DataFrame, str]:
    """The trained run (its layout on cfg.split), the rows to write letters for, and where they came from."""
    run = TrainedRun.open(cfg.run)
    if "finetuned" in cfg.model_tags:
        run.require_adapter()
    run.layout = RunLayout(run.layout.root, cfg.split)
    frame, source = run.test_frame(cfg.data) if cfg.split == "test" else run.validation_frame()
    return run, (frame.head(cfg.limit) if cfg.limit else frame), source


def _run_test(cfg: TestConfig) -> tuple[TrainedRun, pd.DataFrame]:
    """Letters for every test row into eval.csv. Under `accelerate launch`, each process generates its share of the
    rows into a partial file of its own; the main process merges them in row order once all are done."""
    distributed.init(generation=True)
    rank, world = distributed.rank(), distributed.world_size()
    run, frame, source = _open_run(cfg)
    dtype = resolve_dtype(cfg.precision)
    decoding = {"repetition_penalty": cfg.repetition_penalty, "no_repeat_ngram_size": cfg.no_repeat_ngram_size}
    kv_cache = resolved_kv_cache(cfg)  # how, not what (the same greedy letters up to kernel rounding): not fingerprinted
    limits = {tag: replayed_lengths(cfg.lengths_from, tag, frame) for tag in cfg.model_tags} if cfg.lengths_from else {}
    fingerprint = fingerprint_of(cfg, run, frame, dtype, decoding)
    base = run.layout.eval_partial
    done, partial = resume_state(base, fingerprint, cfg.overwrite, rank, world)
    rows = frame.to_dict("records")
    started = time.perf_counter()
    vllm = model = None
    for position, tag in enumerate(cfg.model_tags):
        todo = [i for i, row in enumerate(rows) if (tag, row["row_id"]) not in done]
        todo = distributed.shard(todo, rank, world)
        if not todo:
            continue
        if cfg.backend == "vllm":
            tokenizer = load_tokenizer(run.base_model_path())
            vllm = vllm or VllmLetters(run, cfg, dtype, run.prompt_format(tokenizer).stop_ids)
        else:
            reused = reuse_generator(run, tag, model) if model is not None and kv_cache == "slots" else None
            if reused is None:
                model = None
                free_memory()  # the last model leaves before the next one loads
            model, tokenizer = reused or load_generator(run, tag, dtype, cfg.attn_implementation)
            model.eval()
        fmt = run.prompt_format(tokenizer)
        prompts = [fmt.prompt_ids(row) for row in rows]

        save = saver(partial, tag, rows, prompts)
        desc = f"{tag} letters" + (f" [process {rank}/{world}]" if world > 1 else "")
        if vllm is not None:
            vllm_letters(vllm, tag, todo, prompts, save, _auto_batch_size(cfg), desc)
            continue
        for later in cfg.model_tags[position + 1:]:  # the next model's files load while this one decodes
            prefetch(generator_source(run, later)[0])
        decode, slot_decode, handling = decoders(cfg, save, rows, prompts)
        with handling as on_batch:
            generate_all(model, tokenizer, prompts, todo, max_new_tokens=cfg.max_new_tokens,
                         batch_size=_auto_batch_size(cfg), on_batch=on_batch, desc=desc, stop_ids=fmt.stop_ids,
                         kv_cache=kv_cache, decode=decode, slot_decode=slot_decode, limits=limits.get(tag),
                         **decoding)
    del model
    free_memory()

    distributed.barrier()  # every process's letters are on disk
    done = distributed.merge_partials(distributed.partial_paths(base))
    table = letters_table(frame, done, cfg)
    distributed.barrier()  # every process has read the partial files before the main one removes them
    if distributed.is_main():
        write_eval(run, cfg, table, source, fingerprint, started, world)
    distributed.barrier()  # eval.csv exists when any process returns
    return run, table
