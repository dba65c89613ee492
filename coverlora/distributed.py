"""Several processes under `accelerate launch` (or torchrun): who this process is, its share of the test rows,
and merging every process's finished rows back into one set.

A plain `python train.py` / `python test.py` is one process (no RANK / WORLD_SIZE in the environment): every
function here then does what a single process needs and nothing more (barrier() is a no-op, shard() keeps all).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch

from coverlora.errors import UserError

log = logging.getLogger("coverlora")
T = TypeVar("T")

# Training: what transformers' Trainer uses by default (ddp_timeout). Generation needs no collective until the end,
# where the first process to finish its share waits for the slowest: a barrier must outwait the longest share.
TRAIN_TIMEOUT = timedelta(minutes=30)
GENERATION_TIMEOUT = timedelta(hours=24)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def rank() -> int:
    """This process's index among all processes (0 on a plain run)."""
    return _env_int("RANK", 0)


def world_size() -> int:
    return _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    """This process's index on its machine: the GPU it owns."""
    return _env_int("LOCAL_RANK", 0)


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """The process that writes run outputs (manifest, logs, adapter, eval.csv)."""
    return rank() == 0


def fsdp_enabled() -> bool:
    """`accelerate launch` with an FSDP config sets this for every process it starts."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").strip().lower() in ("1", "true", "yes")


def cuda_device_index() -> int:
    """The GPU this process loads models onto: its LOCAL_RANK when launched as several processes."""
    return local_rank() if is_distributed() else torch.cuda.current_device()


def init(*, generation: bool = False) -> None:
    """Prepare a process started by `accelerate launch`: its own GPU, its process group, quiet replica logs.

    Training gets accelerate's process group (NCCL on GPUs, gloo on CPUs), created before the model is loaded as
    the Trainer would create it later. Generation exchanges no tensors, only waits at the end: a gloo group with a
    long timeout, so a process that finishes its share early waits for the slowest instead of timing out.
    """
    if not is_distributed():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    if not is_main():
        log.setLevel(logging.WARNING)  # one copy of each info line, from the main process; warnings from all
    if torch.distributed.is_initialized():
        return
    if generation:
        torch.distributed.init_process_group("gloo", timeout=GENERATION_TIMEOUT)
    else:
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available(), timeout=TRAIN_TIMEOUT)
    log.info("process %d of %d", rank(), world_size())


def barrier() -> None:
    """Wait until every process gets here (no-op for a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """This process's share: every world-th item from position `rank`. Shares are disjoint and cover all items."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    return list(items[rank::world])


def rank_partial_path(base: Path, rank: int, world: int) -> Path:
    """Where process `rank` appends its finished rows: `base` itself for a single process, else a file of its own."""
    return base if world == 1 else base.with_name(f"{base.name.removesuffix('.jsonl')}.rank{rank}.jsonl")


def partial_paths(base: Path) -> list[Path]:
    """Every partial file of `base` on disk: the single-process one, then each rank's in rank order.

    Any earlier run, with any number of processes, is found: a resume may use a different process count.
    """
    stem = base.name.removesuffix(".jsonl")
    ranks = []
    for path in base.parent.glob(f"{stem}.rank*.jsonl"):
        number = path.name[len(stem) + len(".rank"):-len(".jsonl")]
        if number.isdigit():
            ranks.append((int(number), path))
    return ([base] if base.is_file() else []) + [path for _, path in sorted(ranks)]


def read_partial(path: Path) -> tuple[dict, list[dict]]:
    """(header, records) of one partial file; a line a kill cut short is skipped, the lines after it are kept."""
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        header = {}
    records = []
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "model" in record and "row_id" in record:
            records.append(record)
    return header, records


def merge_partials(paths: Iterable[Path], fingerprint: dict | None = None) -> dict[tuple, dict]:
    """Finished rows of all partial files, keyed by (model, row_id): each row once, whichever files hold it.

    A row found twice (a resumed run that redid it) keeps the copy read last. With `fingerprint`, a file written
    for another setup (data, model or settings) is refused rather than mixed in.
    """
    done: dict[tuple, dict] = {}
    for path in paths:
        header, records = read_partial(path)
        if fingerprint is not None and header.get("fingerprint") != fingerprint:
            raise UserError("unfinished results from a different setup (data, model or settings) are here",
                            where=str(path), fix="pass --overwrite to discard them, or rerun with the old settings")
        for record in records:
            done[(record["model"], record["row_id"])] = record
    return done


def in_row_order(done: dict[tuple, dict], model: str, row_ids: Iterable) -> list[dict]:
    """`model`'s finished rows in the order of `row_ids`, failing on any row that no process finished."""
    row_ids = list(row_ids)
    missing = [row_id for row_id in row_ids if (model, row_id) not in done]
    if missing:
        shown = ", ".join(str(row_id) for row_id in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise UserError(f"{len(missing)} {model} letters are missing from the partial files (row_id {shown})",
                        fix="rerun the same command: finished rows are kept and only the missing ones are generated")
    return [done[(model, row_id)] for row_id in row_ids]


def end_line(path: Path) -> None:
    """End a last line that a kill cut short, so rows appended after it stay readable."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
