"""Will it fit? A rough memory estimate for a model before it is loaded, against what the device has."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from coverlora.errors import UserError

log = logging.getLogger("coverlora")
GIB = 2**30


def attention_shape(config: dict) -> tuple[int, int, int]:
    """(query heads, key/value heads, head dim) of a Llama-style decoder's config.json."""
    heads = config.get("num_attention_heads") or 1
    kv = config.get("num_key_value_heads") or heads
    return heads, kv, config.get("head_dim") or config["hidden_size"] // heads


def parameter_count(config: dict) -> int:
    """Parameters of a Llama-style decoder from its config.json (embeddings, attention, MLP, head)."""
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    vocab, inter = config["vocab_size"], config.get("intermediate_size", 4 * hidden)
    heads, kv, head_dim = attention_shape(config)
    attention = hidden * head_dim * (2 * heads + 2 * kv)
    mlp = 3 * hidden * inter
    head = 0 if config.get("tie_word_embeddings") else vocab * hidden
    return vocab * hidden + layers * (attention + mlp) + head


def estimate_bytes(config: dict, bytes_per_weight: float, tokens_per_step: int, *, training: bool,
                   checkpointing: bool = False) -> int:
    """Weights plus a working set: fp32 logits and, when training, the activations kept for backward.

    Calibrated on the H100 benchmark (bench/README.md): Llama-2-7B NF4 keeps ~40 bytes per token, hidden unit
    and layer without checkpointing (48.5 GiB at 8192 tokens) and ~2 with it (6.3 GiB at 4 x 768). Rough
    (±30%): its job is to say "this cannot fit" before minutes of loading, not to plan.
    """
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    weights = parameter_count(config) * bytes_per_weight
    logits = tokens_per_step * config["vocab_size"] * 4 * (3 if training else 1)
    activations = 0
    if training:
        activations = tokens_per_step * hidden * (layers * 2 + 32 if checkpointing else layers * 40)
    return int(weights * 1.1 + logits + activations)


def available_bytes() -> tuple[int, str]:
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return free, f"this GPU ({torch.cuda.get_device_name()}) has"
    try:  # MemAvailable counts reclaimable page cache, unlike "free"
        with open("/proc/meminfo", encoding="ascii") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        return int(fields["MemAvailable"].split()[0]) * 1024, "this machine has"
    except (OSError, KeyError, ValueError):
        return 0, "this machine has"


def check_fits(model_path: str, bytes_per_weight: float, tokens_per_step: int, *, training: bool, advice: str,
               checkpointing: bool = False) -> None:
    """Fail in one line when the estimate clearly exceeds free memory (by 25%: the estimate is rough); warn
    when it merely exceeds it; log it otherwise."""
    config_file = Path(model_path) / "config.json"
    if not config_file.is_file():
        return  # a hub id not downloaded yet: nothing to read the shape from
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config = config.get("text_config", config)
    if not {"hidden_size", "num_hidden_layers", "vocab_size"} <= config.keys():
        return
    need = estimate_bytes(config, bytes_per_weight, tokens_per_step, training=training, checkpointing=checkpointing)
    have, where = available_bytes()
    message = f"needs ~{need / GIB:.1f} GiB, {where} {have / GIB:.1f} GiB free"
    if have and need > 1.25 * have:
        raise UserError(message, where=model_path, fix=advice)
    if have and need > have:
        log.warning("memory is tight: %s (%s)", message, advice)
    else:
        log.info("memory: %s", message)
