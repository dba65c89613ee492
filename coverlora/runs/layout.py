"""Run-folder layout, atomic writes and the manifest each stage leaves beside its outputs."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from coverlora.errors import UserError
from coverlora.options import load_yaml, to_yaml_section

# Library versions recorded with every stage's outputs.
TRACKED_PACKAGES = (
    "torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes",
    "gguf", "rouge-score", "bert-score", "pandas", "numpy",
)


@dataclass(frozen=True)
class RunLayout:
    """Where each stage reads and writes inside `runs/<name>/`."""

    root: Path
    split: str = "test"  # which eval set the eval/metrics files are about; validation ones live apart

    @property
    def suffix(self) -> str:
        return "" if self.split == "test" else f"_{self.split}"

    @property
    def results(self) -> Path:
        return self.root if self.split == "test" else self.root / self.split

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def train_log(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def eval_csv(self) -> Path:
        return self.root / f"eval{self.suffix}.csv"

    @property
    def eval_partial(self) -> Path:
        return self.root / f"eval{self.suffix}.partial.jsonl"

    @property
    def scores_csv(self) -> Path:
        return self.results / "scores.csv"

    @property
    def summary_csv(self) -> Path:
        return self.results / "eval_summary.csv"

    @property
    def plots(self) -> Path:
        return self.results / "plots"

    @property
    def report(self) -> Path:
        return self.results / "report.md"

    def stage_config(self, stage: str) -> Path:
        return self.root / f"{stage}_config.yaml"

    @property
    def versions(self) -> Path:
        return self.root / "versions.json"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it over `path` only if the block succeeds.

    Readers never see a half-written file, and a crash leaves the old file untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def replace_dir_atomic(staging: Path, target: Path) -> None:
    """Move a fully written folder into place, replacing an older one only after the new one exists."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_manifest(layout: RunLayout, stage: str, config: Any, extra: dict | None = None) -> None:
    """Write `<stage>_config.yaml` (the resolved config) and this stage's entry in versions.json.

    Runs on the validation split are recorded apart (`test_validation`, ...), so they never mask the test run.
    """
    section, stage = stage, stage + layout.suffix
    header = f"# Resolved {section} config, written by coverlora. Re-run with: python {section}.py --config {layout.stage_config(stage)}\n"
    write_text_atomic(layout.stage_config(stage), header + to_yaml_section(section, config))
    versions = read_json(layout.versions) if layout.versions.exists() else {}
    versions[stage] = {**library_versions(), **(extra or {})}
    write_text_atomic(layout.versions, json.dumps(versions, indent=2) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read JSON ({exc})", where=str(path)) from None


def read_stage_config(layout: RunLayout, stage: str) -> dict:
    path = layout.stage_config(stage)
    if not path.is_file():
        raise UserError(
            f"no {path.name} here, so this is not a {stage} run folder",
            where=str(layout.root),
            fix=f"run `python {stage}.py` first, or pass the run folder it wrote",
        )
    try:
        loaded = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:  # DuplicateKey included: "line N: key 'x' is given twice"
        raise UserError(f"corrupted: not readable YAML ({str(exc).splitlines()[0]})", where=str(path),
                        fix=f"restore it, or re-run python {stage}.py into a new folder") from None
    section = loaded.get(stage, {}) if isinstance(loaded, dict) else None
    if not isinstance(section, dict):
        raise UserError(f"corrupted: no '{stage}:' mapping", where=str(path),
                        fix=f"restore it, or re-run python {stage}.py into a new folder")
    return section


LOCK_NAME = ".coverlora.lock"


@contextlib.contextmanager
def run_lock(folder: Path, stage: str) -> Iterator[None]:
    """Hold an exclusive lock on a run folder while a stage writes into it; a second stage on the same folder is
    refused in one line. The OS drops a flock when its process dies, so a killed run never leaves a stale lock:
    a lock file whose PID is gone is simply taken over. A folder this call created is removed again if the stage
    wrote nothing into it."""
    import fcntl
    import time

    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"this run folder is in use by {holder}", where=str(folder),
                            fix="wait for that stage to finish, or choose another run folder") from None
        if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            break  # the file we locked is still the lock file (its last holder may have removed it meanwhile)
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"{stage}.py (PID {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})")
    handle.flush()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()
        if created and not any(folder.iterdir()):
            folder.rmdir()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _can_create_file(folder: Path) -> bool:
    """Whether a file can be created in `folder`: os.access says yes to root on read-only and virtual file systems
    (/proc), so try it."""
    try:
        fd, name = tempfile.mkstemp(prefix=".coverlora-write-check-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def check_writable(folder: Path, need_bytes: int = 0) -> None:
    """Fail before the long work starts if outputs can't be written (permissions, full disk).

    Checks the nearest existing ancestor, so a bad run creates no folder.
    """
    existing = folder.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not _can_create_file(existing):
        raise UserError(f"cannot create or write files in {existing}", where=str(folder),
                        fix="choose another --output_dir or fix the folder's permissions")
    free = shutil.disk_usage(existing).free
    if free < need_bytes:
        raise UserError(
            f"only {free / 2**30:.1f} GiB free, this stage needs about {need_bytes / 2**30:.1f} GiB",
            where=str(folder), fix="free disk space or choose another --output_dir",
        )
