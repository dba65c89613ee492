"""Publishing a run on the Hugging Face Hub: its adapter (or merged model) with a fresh model card.

Optional and off unless asked for (scripts/push_to_hub.py); it needs a network and a token (`hf auth login`, or
HF_TOKEN). The Hub client is passed in, so tests use a stand-in and never touch the network.
"""

from __future__ import annotations

import logging
from typing import Any

from coverlora.errors import UserError
from coverlora.runs.card import refresh_cards
from coverlora.runs.layout import RunLayout

log = logging.getLogger("coverlora")
# Never uploaded: the run's lock file and any staging leftovers.
IGNORE = [".coverlora.lock", "*.tmp", ".*"]


def hub_api() -> Any:
    """huggingface_hub's HfApi (reads the token that `hf auth login` saved, or HF_TOKEN)."""
    from huggingface_hub import HfApi

    return HfApi()


def is_network_error(exc: BaseException) -> bool:
    """Offline mode (HF_HUB_OFFLINE, itself a ConnectionError), no route, DNS or a timeout: the Hub client raises
    OSError subclasses through requests and httpx.TransportError through httpx."""
    if isinstance(exc, OSError):
        return True
    try:
        import httpx
    except ImportError:
        return False
    return isinstance(exc, httpx.TransportError)


def push_run(layout: RunLayout, repo_id: str, *, merged: bool = False, private: bool = True, api: Any = None) -> str:
    """Refresh the cards, create `repo_id` if needed and upload adapter/ (or merged/); returns the commit's URL."""
    folder = layout.merged if merged else layout.adapter
    if not (folder / ("config.json" if merged else "adapter_config.json")).is_file():
        raise UserError(f"no {folder.name}/ to push in this run", where=str(layout.root),
                        fix="run python merge.py first" if merged else "finish training first")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UserError(f"repo_id must be 'user/name', got {repo_id!r}", where="--repo_id")
    refresh_cards(layout)
    api = api if api is not None else hub_api()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder), ignore_patterns=IGNORE,
                                 commit_message=f"coverlora: {layout.root.name} ({folder.name}/)")
    except Exception as exc:
        if not is_network_error(exc):
            raise
        raise UserError(f"no network: the Hub cannot be reached ({type(exc).__name__})", where=f"push to {repo_id}",
                        fix=f"the run is intact; push later from a machine online: python scripts/push_to_hub.py "
                            f"--run {layout.root} --repo_id {repo_id}{' --merged' if merged else ''}") from None
    url = str(getattr(info, "commit_url", info))
    log.info("pushed %s to %s", folder, url)
    return url
