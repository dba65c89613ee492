"""The letter writer: one loaded model, its tokenizer and prompt format; greedy letters as in the test stage.

A model that was never fine-tuned for letters (no --run) is labelled untuned, and its greedy letters get a
repetition guard by default: untuned small models loop ("Dear [Recipient's Name]" until the cap).
bench/repetition_guard.py measured the guard's effect (bench/results/repetition_guard_smollm2_cpu.md).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from coverlora.config import ServeConfig
from coverlora.errors import UserError
from coverlora.fields import INPUT_FIELDS

log = logging.getLogger("coverlora")


def _stop_when(event: threading.Event):
    """A StoppingCriteria that ends every row of the generate call once `event` is set."""
    import torch
    from transformers import StoppingCriteria

    class StopWhenSet(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StopWhenSet()


def _stopping(event: threading.Event | None):
    from transformers import StoppingCriteriaList

    return StoppingCriteriaList([_stop_when(event)]) if event is not None else None


# Decoding for an untuned model unless the config says otherwise (measured: bench/repetition_guard.py).
UNTUNED_GUARD = {"repetition_penalty": 1.1, "no_repeat_ngram_size": 4}


def _load(cfg: ServeConfig) -> tuple[Any, Any, Any, str, dict[str, Any]]:
    """(model, tokenizer, prompt format, display name, the run's test stage config; None for an untuned model)."""
    from coverlora.generate.loading import load_generator
    from coverlora.models import load_model, load_tokenizer, resolve_dtype, resolve_model
    from coverlora.prompts import PromptFormat
    from coverlora.runs.layout import read_stage_config
    from coverlora.runs.trained import TrainedRun

    dtype = resolve_dtype(cfg.precision)
    if not cfg.run:
        path = resolve_model(cfg.model)
        model, tokenizer = load_model(path, dtype), load_tokenizer(path)
        # A short name for the page: no home folders in a screenshot.
        name = "SmolLM2-135M-Instruct (embedded)" if cfg.model == "embedded" else Path(path).name or path
        return model, tokenizer, PromptFormat.for_tokenizer(tokenizer, cfg.chat_template), name, None
    run = TrainedRun.open(cfg.run)
    try:  # serve letters as the test stage generated (and scored) them
        tested = read_stage_config(run.layout, "test")
    except UserError:
        tested = {}
    model, tokenizer = load_generator(run, "finetuned", dtype)
    adapter_only = not (run.layout.merged / "config.json").is_file()
    name = f"{run.layout.root.name} (fine-tuned{', adapter' if adapter_only else ''})"
    return model, tokenizer, run.prompt_format(tokenizer), name, tested


def decoding_options(cfg: ServeConfig, tested: dict[str, Any] | None) -> dict[str, Any]:
    """GenerationConfig options: this config's, else the run's test stage's (`tested`), else none; for an untuned
    model (`tested` None), else the repetition guard."""
    decoding: dict[str, Any] = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
    defaults = UNTUNED_GUARD if tested is None else tested
    for key in decoding:
        value = getattr(cfg, key) if getattr(cfg, key) is not None else defaults.get(key)
        if value is not None:
            decoding[key] = type(decoding[key])(value)
    return decoding


def chosen_decoding(cfg: ServeConfig, tested: dict[str, Any] | None) -> str:
    """greedy, grounded or repair: this config's, else the run's test stage's (`tested`), else greedy."""
    return cfg.decoding if cfg.decoding != "auto" else (tested or {}).get("decoding", "greedy")


def repair_options(cfg: ServeConfig, tested: dict[str, Any] | None) -> dict[str, Any] | None:
    """Sentence repair's settings ({tries, temperature, seed, top_p, threshold}), or None: this config's, else the run's test
    stage's, else the test stage's defaults."""
    from coverlora.config import GROUNDED_DEFAULTS, REPAIR_DEFAULTS

    if chosen_decoding(cfg, tested) != "repair":
        return None
    tested, defaults = tested or {}, {**GROUNDED_DEFAULTS, **REPAIR_DEFAULTS}
    pick = lambda key: getattr(cfg, key) if getattr(cfg, key) is not None else tested.get(key, defaults[key])  # noqa: E731
    return {"tries": int(pick("repair_tries")), "temperature": float(pick("temperature")),
            "seed": int(tested.get("sample_seed", 0)), "top_p": float(tested.get("top_p", 1.0)),
            "threshold": tested.get("repair_threshold")}


def grounded_options(cfg: ServeConfig, tested: dict[str, Any] | None) -> dict[str, Any] | None:
    """Grounded decoding's settings ({samples, temperature, seed, top_p}), or None for greedy letters: this config's,
    else the run's test stage's (`tested`), else the test stage's defaults."""
    from coverlora.config import GROUNDED_DEFAULTS

    tested = tested or {}
    if chosen_decoding(cfg, tested) != "grounded":
        return None
    pick = lambda key: getattr(cfg, key) if getattr(cfg, key) is not None else tested.get(key, GROUNDED_DEFAULTS[key])  # noqa: E731
    return {"samples": int(pick("candidates")), "temperature": float(pick("temperature")),
            "seed": int(tested.get("sample_seed", 0)), "top_p": float(tested.get("top_p", 1.0))}


class LetterWriter:
    """One loaded model, its tokenizer and prompt format; generation runs in one worker thread."""

    def __init__(self, model, tokenizer, prompt_format, name: str, decoding: dict[str, Any] | None = None,
                 fine_tuned: bool = False, grounded: dict[str, Any] | None = None, engine: tuple[int, int] | None = None,
                 repair: dict[str, Any] | None = None):
        self.model, self.tokenizer, self.format, self.name = model, tokenizer, prompt_format, name
        self.decoding = decoding or {}  # GenerationConfig options, as in the test stage
        self.grounded = grounded  # grounded_options(): best of the greedy letter and N samples; None = greedy
        self.repair = repair  # repair_options(): sentences checked as they are written; None = not repaired
        self.fine_tuned = fine_tuned  # False: a base model never tuned for letters (labelled so in the API and UI)
        self.prefix = None  # the shared prompt prefix's KV cache (staged.PrefixCache), made at the first letter
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coverlora-generate")
        # (slots, positions) of the slot engine for greedy letters: the test stage's engine (generation.slot_engine)
        self.engine = engine if engine and not self.decoding.get("no_repeat_ngram_size") else None
        self.generate_calls = 0  # instrumentation: how many generate calls served how many letters
        self.letters = 0
        config = getattr(model, "config", None)
        self.context_length = int(getattr(config, "max_position_embeddings", 0) or 0)

    @classmethod
    def from_config(cls, cfg: ServeConfig) -> LetterWriter:
        model, tokenizer, fmt, name, tested = _load(cfg)
        model.eval()
        decoding, grounded, repair = decoding_options(cfg, tested), grounded_options(cfg, tested), repair_options(cfg, tested)
        how = ("grounded ({samples} samples at temperature {temperature:g})".format(**grounded) if grounded
               else "repair ({tries} tries per flagged sentence at temperature {temperature:g})".format(**repair) if repair
               else "greedy")
        log.info("decoding: %s, %s", how, ", ".join(f"{k}={v}" for k, v in decoding.items()))
        if tested is None:
            log.warning("%s is an untuned base model: its letters are a demo of the service, not of fine-tuning "
                        "(serve a trained run with --run runs/NAME)", name)
        # On a GPU, greedy letters go through the test stage's slot engine (CUDA graphs, rows joining and leaving);
        # on a CPU, staged prefills give the first token sooner (bench/results/serve_stream_*).
        on_gpu = next(model.parameters()).is_cuda
        if cfg.kv_cache == "slots" and not on_gpu:
            raise UserError("the slot engine needs a CUDA GPU", where="config key 'kv_cache'",
                            fix="use kv_cache: auto or staged")
        use = cfg.kv_cache == "slots" or (cfg.kv_cache == "auto" and on_gpu)
        engine = (cfg.max_batch, cfg.max_prompt_tokens + cfg.max_new_tokens) if use else None
        return cls(model, tokenizer, fmt, name, decoding, fine_tuned=tested is not None, grounded=grounded, engine=engine,
                   repair=repair)

    def generate(self, prompts: list[list[int]], max_new_tokens: int, *, max_seconds: float,
                 stop: threading.Event | None = None, streamer=None) -> tuple[list[str], list[int]]:
        """Blocking: call it in `self.executor`. Greedy letters, as in the test stage; each prompt is prefilled on
        its own and its first token goes to `streamer.first` at once, then one decode loop serves every row
        (staged.py). `streamer`: a BatchStreamer (or any transformers streamer)."""
        from coverlora.service.staged import PrefixCache, generate_staged, shared_prefix

        if self.engine is not None:
            return self._generate_on_engine(prompts, max_new_tokens, max_seconds=max_seconds, stop=stop, streamer=streamer)
        if self.prefix is None:
            self.prefix = PrefixCache(self.model, shared_prefix(self.format.prompt_ids, list(INPUT_FIELDS)))
        self._count(prompts)
        return generate_staged(
            self.model, self.tokenizer, prompts, max_new_tokens, stop_ids=self.format.stop_ids, prefix=self.prefix,
            on_first=getattr(streamer, "first", None), max_time=max_seconds, streamer=streamer,
            stopping_criteria=_stopping(stop), **self.decoding)

    def generate_grounded(self, prompts: list[list[int]], rows: list[dict[str, str]], max_new_tokens: int, *,
                          max_seconds: float, stop: threading.Event | None = None
                          ) -> tuple[list[str], list[int], list[dict[str, int]]]:
        """Blocking, as generate. Grounded decoding (self.grounded): every prompt's greedy letter and samples in one
        batch, then grounded.choose by each prompt's row; returns the letters, their new-token counts and how
        each was chosen. Nothing streams: the letter is known only once every candidate is written."""
        from coverlora.generate.batched import generate_candidates
        from coverlora.generate.candidates import keep_chosen

        self._count(prompts)
        if self.engine is not None:  # the same letters as generate's for the same seed (generate/sampling.py)
            candidates, counts = self._candidates_on_engine(prompts, max_new_tokens, max_seconds=max_seconds, stop=stop)
        else:
            candidates, counts = generate_candidates(  # self.grounded holds the samples, temperature and seed
                self.model, self.tokenizer, prompts, max_new_tokens, stop_ids=self.format.stop_ids,
                generate_kwargs={"max_time": max_seconds, "stopping_criteria": _stopping(stop)}, **self.grounded,
                **self.decoding)
        # lexical evidence: as accurate as MiniLM on the held-out labels, and fast enough for a request
        kept, kept_counts, choices = keep_chosen(candidates, counts, rows, embeddings=False)
        return kept, kept_counts, [
            {"candidates": len(letters), "chosen": c.index, "flagged_claims": c.problems[0],
             "names_missing": c.problems[1], "placeholders": c.problems[2], "tied": c.tied}
            for letters, c in zip(candidates, choices)]

    @property
    def method(self) -> str:
        return "grounded" if self.grounded is not None else "repair" if self.repair is not None else "greedy"

    def generate_repaired(self, prompts: list[list[int]], rows: list[dict[str, str]], max_new_tokens: int, *,
                          max_seconds: float, stop: threading.Event | None = None
                          ) -> tuple[list[str], list[int], list[dict[str, int]]]:
        """Blocking, as generate. Sentence repair (self.repair): the letters, their new-token counts and what
        repair did to each (rewritten, left out, sampled sentences). Nothing streams: a sentence may be rewritten."""
        from coverlora.generate.repair import repair_letters
        from coverlora.generate.repair_slots import slot_repair_letters

        self._count(prompts)
        if self.engine is not None:  # rows decode on while each sync's sentences are judged (repair_slots.py)
            done: dict[int, Any] = {}
            slot_repair_letters(self.model, self.tokenizer, prompts, rows, list(range(len(prompts))), max_new_tokens,
                                tries=self.repair["tries"], temperature=self.repair["temperature"],
                                seed=self.repair["seed"], top_p=self.repair["top_p"],
                                threshold=self.repair["threshold"], stop_ids=self.format.stop_ids,
                                repetition_penalty=self.decoding.get("repetition_penalty", 1.0),
                                most_slots=self.engine[0], on_done=lambda ids, letters, _s: done.update(zip(ids, letters)),
                                should_stop=self._stop_check(max_seconds, stop))
            repaired = [done[i] for i in range(len(prompts))]
            return [r.text for r in repaired], [r.new_tokens for r in repaired], [r.record() for r in repaired]
        repaired = repair_letters(self.model, self.tokenizer, prompts, rows, max_new_tokens, tries=self.repair["tries"],
                                  temperature=self.repair["temperature"], seed=self.repair["seed"],
                                  top_p=self.repair["top_p"], threshold=self.repair["threshold"],
                                  stop_ids=self.format.stop_ids, max_seconds=max_seconds,
                                  should_stop=stop.is_set if stop is not None else None,
                                  generate_kwargs={"stopping_criteria": _stopping(stop)}, **self.decoding)
        return [r.text for r in repaired], [r.new_tokens for r in repaired], [r.record() for r in repaired]

    @staticmethod
    def _stop_check(max_seconds: float, stop: threading.Event | None):
        """should_stop for the engine: the client's stop, or the time cap, from now."""
        started = time.monotonic()
        return lambda: (stop is not None and stop.is_set()) or time.monotonic() - started >= max_seconds

    def _candidates_on_engine(self, prompts: list[list[int]], max_new_tokens: int, *, max_seconds: float,
                              stop: threading.Event | None) -> tuple[list[list[str]], list[list[int]]]:
        """Grounded decoding's candidates through the slot engine (slots.slot_candidates)."""
        from coverlora.generate.slots import slot_candidates

        got: dict[int, tuple[list[str], list[int]]] = {}
        slot_candidates(self.model, self.tokenizer, prompts, list(range(len(prompts))), [max_new_tokens] * len(prompts),
                        batch_size=self.engine[0], desc="grounded candidates", stop_ids=self.format.stop_ids,
                        on_batch=lambda rows, texts, counts, _s: got.update(zip(rows, zip(texts, counts))),
                        repetition_penalty=self.decoding.get("repetition_penalty", 1.0), **self.grounded,
                        should_stop=self._stop_check(max_seconds, stop))
        return [got[i][0] for i in range(len(prompts))], [got[i][1] for i in range(len(prompts))]

    def _generate_on_engine(self, prompts: list[list[int]], max_new_tokens: int, *, max_seconds: float,
                            stop: threading.Event | None, streamer) -> tuple[list[str], list[int]]:
        """generate() through the slot engine: tokens reach the streamer at each sync; a stop or the time cap ends
        every row where it is."""
        from coverlora.generate.batched import letters_from
        from coverlora.generate.slots import slot_engine

        slots, positions = self.engine
        engine = slot_engine(self.model, self.tokenizer, capacity=positions, stop_ids=self.format.stop_ids,
                             repetition_penalty=self.decoding.get("repetition_penalty", 1.0), most_slots=slots)
        self._count(prompts)
        letters = {}
        engine.run(prompts, list(range(len(prompts))), [max_new_tokens] * len(prompts),
                   lambda rows, tokens: letters.update(zip(rows, tokens)),
                   on_progress=(lambda rows, tokens: [streamer.put_row(r, t) for r, t in zip(rows, tokens)])
                   if streamer is not None else None,
                   should_stop=self._stop_check(max_seconds, stop))
        if streamer is not None:
            streamer.end()
        return letters_from(self.tokenizer, [letters[i] for i in range(len(prompts))], self.format.stop_ids)

    def _count(self, prompts: list[list[int]]) -> None:
        self.generate_calls += 1
        self.letters += len(prompts)
