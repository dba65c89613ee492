"""Hub ids versus local paths, and failing fast when the Hugging Face Hub is out of reach.

Offline, transformers and datasets retry the hub for tens of seconds and then raise a 100-line OSError. A name that
looks like a path is never sent to the hub, and a hub id on a machine without network fails within seconds.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from coverlora.errors import UserError

PROBE_SECONDS = 3.0
LOCAL_SUFFIXES = (".csv", ".json", ".jsonl", ".yaml", ".yml", ".safetensors", ".bin", ".gguf", ".txt")


def looks_local(name: str) -> bool:
    """A path, not a hub id: starts with . / ~, has more than one slash, ends like a file, exists, or its first
    part is a folder here ("data/smaple" is a misspelt path, not the hub user "data")."""
    path = Path(name).expanduser()
    return (name.startswith((".", "/", "~")) or name.count("/") != 1 or name.lower().endswith(LOCAL_SUFFIXES)
            or path.exists() or Path(name.split("/", 1)[0]).is_dir())


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def in_hub_cache(repo_id: str, filename: str, repo_type: str = "model") -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, filename, repo_type=repo_type)
    return isinstance(found, str)


def require_hub(repo_id: str, what: str, cached_file: str | None = None) -> None:
    """Fail in seconds, in one line, when `repo_id` must come from the hub and the hub can't be reached."""
    if cached_file and in_hub_cache(repo_id, cached_file):
        return
    if not hub_reachable():
        raise UserError("a hub id, and the Hugging Face Hub cannot be reached (no network, "
                        "or HF_HUB_OFFLINE is set)", where=f"{what} '{repo_id}'",
                        fix="pass a local folder (or CSV) instead; for the model, 'embedded' works offline")
