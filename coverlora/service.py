"""The local letter-writing service: a FastAPI app around one loaded model.

POST /v1/letters takes a job and a resume and answers with a letter and its grounding warnings;
POST /v1/letters/stream sends the same letter as server-sent events while it is written. Requests
that arrive together are batched into one `generate` call (an asyncio queue with a max wait and a
max batch; generation runs in one worker thread), so concurrent clients share the model's time.
The prompt is PromptFormat's, exactly as in training; the warnings are scoring.grounding's checks.

Safety for a service on a laptop: it binds 127.0.0.1, answers only the extension's origin and
localhost pages (any other Origin gets 403, a foreign Host header 400: no DNS rebinding), can
require a bearer token, and caps body size, field lengths, prompt tokens, new tokens and time.
"""

import asyncio
import hmac
import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping, Sequence


from .config import PRECISIONS, _opt, _require, build_config, collect_values
from .errors import ConfigError, UserError

log = logging.getLogger("coverlora")

# The extension's id is fixed by the public key in extension/manifest.json ("key").
EXTENSION_ID = "hcnfajonogbleimlnhakbmnhceghilff"
DEFAULT_ORIGINS = f"chrome-extension://{EXTENSION_ID},http://localhost:*,http://127.0.0.1:*,http://[::1]:*"
EXTENSION_DIR = Path(__file__).resolve().parent.parent / "extension"
# The extension's popup doubles as the service's web page: one form, two hosts.
PAGE_FILES = {"/": ("popup.html", "text/html; charset=utf-8"), "/popup.js": ("popup.js", "text/javascript"),
              "/popup.css": ("popup.css", "text/css"), "/heuristics.js": ("heuristics.js", "text/javascript")}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@dataclass
class ServeConfig:
    run: str = _opt("", "Run folder written by train.py: serves merged/ (or base + adapter/) with the run's prompt settings. Empty = serve `model`.")
    model: str = _opt("embedded", "Model when no run is given: 'embedded' (SmolLM2-135M-Instruct, offline), a local folder or a hub id.")
    chat_template: str = _opt("auto", "For `model` only (a run has its own): 'auto', 'on' or 'off', as in training.")
    precision: str = _opt("auto", "Generation dtype: 'auto' = bf16 where supported, fp16 on older GPUs, fp32 on CPU.")
    host: str = _opt("127.0.0.1", "Address to bind. Keep 127.0.0.1: anything else exposes the model to your network.")
    port: int = _opt(8765, "TCP port.")
    max_new_tokens: int = _opt(384, "Cap on a letter's new tokens, and the default when a request gives none.")
    repetition_penalty: float | None = _opt(None, "Greedy decoding's penalty on repeated tokens; null = the run's test stage value (test_config.yaml), else 1.0.")
    no_repeat_ngram_size: int | None = _opt(None, "Forbid repeating n-grams of this size (0 = off); null = the run's test stage value, else 0.")
    max_seconds: float = _opt(120.0, "Cap on one generate call's time (a letter cut by it gets a 'truncated' warning).")
    request_timeout: float = _opt(300.0, "Seconds a request may wait for its letter, queue included, before a 504.")
    max_batch: int = _opt(8, "Most letters generated together in one generate call.")
    max_wait_ms: int = _opt(25, "How long the first queued request waits for others to batch with.")
    max_prompt_tokens: int = _opt(1536, "Longest prompt in tokens; a long `posting` is cut to fit, other fields fail with 422.")
    token: str | None = _opt(None, "Bearer token required on /v1/*; null = none. The COVERLORA_TOKEN environment variable also sets it.")
    allowed_origins: str = _opt(DEFAULT_ORIGINS, "Comma-separated browser origins allowed to call the API ('*' in a part, ':*' = any port or none); any other Origin gets 403.")
    allowed_hosts: str = _opt("127.0.0.1,localhost,[::1]", "Comma-separated Host header names accepted (DNS-rebinding guard); '*' = any.")
    max_body_bytes: int = _opt(65536, "Largest request body; larger ones get 413.")
    max_short_chars: int = _opt(200, "Longest job title, company and applicant name.")
    max_field_chars: int = _opt(4000, "Longest preferred qualifications and resume field.")
    max_posting_chars: int = _opt(12000, "Longest free-text job posting.")
    log_level: str = _opt("info", "uvicorn log level: critical, error, warning, info, debug.")

    def __post_init__(self) -> None:
        _require(self.chat_template in ("auto", "on", "off"), "chat_template", f"must be auto, on or off, got {self.chat_template!r}")
        _require(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        _require(bool(self.run or self.model), "model", "give a run folder (--run) or a model (--model embedded)")
        _require(not (self.run and self.model not in ("", "embedded")), "model",
                 "give --run or --model, not both (a run names its own base model)")
        _require(0 < self.port < 65536, "port", f"must be 1-65535, got {self.port}")
        for key in ("max_new_tokens", "max_batch", "max_prompt_tokens", "max_body_bytes", "max_short_chars",
                    "max_field_chars", "max_posting_chars"):
            _require(getattr(self, key) > 0, key, f"must be positive, got {getattr(self, key)}")
        _require(self.max_wait_ms >= 0, "max_wait_ms", f"must be ≥ 0, got {self.max_wait_ms}")
        _require(self.repetition_penalty is None or 0.5 <= self.repetition_penalty <= 2.0, "repetition_penalty",
                 f"must be in [0.5, 2] (or null), got {self.repetition_penalty}")
        _require(self.no_repeat_ngram_size is None or self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size",
                 f"must be ≥ 0 (or null), got {self.no_repeat_ngram_size}")
        _require(self.max_seconds > 0, "max_seconds", f"must be positive, got {self.max_seconds}")
        _require(self.request_timeout > 0, "request_timeout", f"must be positive, got {self.request_timeout}")
        _require(self.token is None or len(self.token) >= 8, "token", "must be at least 8 characters (or null for none)")
        _require(self.log_level in ("critical", "error", "warning", "info", "debug"), "log_level",
                 f"must be critical, error, warning, info or debug, got {self.log_level!r}")
        origin_regex(self.allowed_origins)  # fails on a malformed pattern now, not at the first request

    @property
    def hosts(self) -> list[str]:
        return [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]


# ---------------------------------------------------------------------------- command line


def parse_serve_cli(argv: Sequence[str]) -> ServeConfig:
    """coverlora.config's conventions for the serve stage: defaults → the `serve:` section of `--config FILE`
    → `--key value` flags. A preset without `run`/`model` in `serve:` serves its train run."""
    values, sections = collect_values("serve", argv, ServeConfig)
    train_dir = (sections.get("train") or {}).get("output_dir")
    if train_dir and not ({"run", "model"} & set(values)):
        values["run"] = (train_dir, "train.output_dir")
    if "run" in values and "model" not in values:
        values["model"] = ("", "a run names its own model")
    return build_config(ServeConfig, values)


def run_serve(main: Callable[[ServeConfig], None], argv: Sequence[str] | None = None) -> None:
    """coverlora.cli.run_stage for serve.py: exit 0, 2 on a user error (one line), 130 on Ctrl-C."""
    from .cli import run_stage

    run_stage("serve", main, argv, parse=parse_serve_cli)


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


# ---------------------------------------------------------------------------- the model


class _GenerateWith:
    """The model as generation.generate_batch sees it, with extra `generate` arguments (a streamer, a stop
    flag): the prompt padding, greedy decoding, EOS cut and clean-up stay generate_batch's."""

    def __init__(self, model, arguments: dict[str, Any]):
        self._model, self._arguments = model, arguments

    def __getattr__(self, name: str):  # parameters(), config, ...: the model's own
        return getattr(self._model, name)

    def generate(self, **kwargs: Any):
        return self._model.generate(**kwargs, **self._arguments)


def _stop_when(event: threading.Event):
    import torch
    from transformers import StoppingCriteria

    class StopWhenSet(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StopWhenSet()


class LetterWriter:
    """One loaded model, its tokenizer and prompt format; generation runs in one worker thread."""

    def __init__(self, model, tokenizer, prompt_format, name: str, decoding: dict[str, Any] | None = None):
        self.model, self.tokenizer, self.format, self.name = model, tokenizer, prompt_format, name
        self.decoding = decoding or {}  # GenerationConfig options, as in the test stage
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coverlora-generate")
        self.generate_calls = 0  # instrumentation: how many generate calls served how many letters
        self.letters = 0
        config = getattr(model, "config", None)
        self.context_length = int(getattr(config, "max_position_embeddings", 0) or 0)

    @classmethod
    def from_config(cls, cfg: ServeConfig) -> "LetterWriter":
        from .generation import _load_generator
        from .models import load_model, load_tokenizer, resolve_dtype, resolve_model
        from .prompts import PromptFormat
        from .runio import read_stage_config
        from .runs import TrainedRun

        dtype = resolve_dtype(cfg.precision)
        tested: dict[str, Any] = {}
        if cfg.run:
            run = TrainedRun.open(cfg.run)
            try:  # serve letters as the test stage generated (and scored) them
                tested = read_stage_config(run.layout, "test")
            except UserError:
                pass
            model, tokenizer = _load_generator(run, "finetuned", dtype)
            adapter_only = not (run.layout.merged / "config.json").is_file()
            fmt = run.prompt_format(tokenizer)
            name = f"{run.layout.root.name} (fine-tuned{', adapter' if adapter_only else ''})"
        else:
            path = resolve_model(cfg.model)
            model, tokenizer = load_model(path, dtype), load_tokenizer(path)
            fmt = PromptFormat.for_tokenizer(tokenizer, cfg.chat_template)
            # A short name for the page: no home folders in a screenshot.
            name = "SmolLM2-135M-Instruct (embedded)" if cfg.model == "embedded" else Path(path).name or path
        model.eval()
        decoding = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
        for key in decoding:
            value = getattr(cfg, key) if getattr(cfg, key) is not None else tested.get(key)
            if value is not None:
                decoding[key] = type(decoding[key])(value)
        log.info("decoding: greedy, %s", ", ".join(f"{k}={v}" for k, v in decoding.items()))
        return cls(model, tokenizer, fmt, name, decoding)

    def generate(self, prompts: list[list[int]], max_new_tokens: int, *, max_seconds: float,
                 stop: threading.Event | None = None, streamer=None) -> tuple[list[str], list[int]]:
        """Blocking: call it in `self.executor`. Greedy letters, as in the test stage."""
        from transformers import StoppingCriteriaList

        from .generation import generate_batch

        arguments: dict[str, Any] = {}
        if stop is not None:
            arguments["stopping_criteria"] = StoppingCriteriaList([_stop_when(stop)])
        if streamer is not None:
            arguments["streamer"] = streamer
        self.generate_calls += 1
        self.letters += len(prompts)
        return generate_batch(_GenerateWith(self.model, arguments), self.tokenizer, prompts, max_new_tokens,
                              stop_ids=self.format.stop_ids, max_time=max_seconds, **self.decoding)


@dataclass
class _Pending:
    prompt: list[int]
    max_new_tokens: int
    future: asyncio.Future


@dataclass
class Generated:
    text: str
    new_tokens: int
    batch_size: int
    seconds: float  # the generate call's own time


class Batcher:
    """Requests queue up; a worker takes the first, waits up to `max_wait` for more (at most
    `max_batch`), and runs them as one generate call in the writer's thread. Requests with
    different max_new_tokens go in separate calls (a longer cap would change the shorter letters'
    truncation). While a batch generates, the next one gathers in the queue."""

    def __init__(self, writer: LetterWriter, *, max_batch: int, max_wait: float, max_seconds: float):
        self.writer, self.max_batch, self.max_wait, self.max_seconds = writer, max_batch, max_wait, max_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def _ensure_worker(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._work(self._queue), name="coverlora-batcher")
        return self._queue

    async def submit(self, prompt: list[int], max_new_tokens: int) -> Generated:
        queue = self._ensure_worker()
        future = asyncio.get_running_loop().create_future()
        await queue.put(_Pending(prompt, max_new_tokens, future))
        return await future

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, RuntimeError):
                pass
        self._task = None

    async def _gather(self, queue: asyncio.Queue) -> list[_Pending]:
        batch = [await queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), left))
            except (asyncio.TimeoutError, TimeoutError):
                break
        return [item for item in batch if not item.future.done()]  # clients that gave up meanwhile

    @staticmethod
    def _stop_when_abandoned(items: list[_Pending]) -> threading.Event:
        """An event set once every client of one generate call is gone (timed out or disconnected)."""
        stop, remaining = threading.Event(), [len(items)]

        def gave_up(_future: asyncio.Future) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                stop.set()  # nobody waits for these letters: stop generating them

        for item in items:
            item.future.add_done_callback(gave_up)
        return stop

    async def _work(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(queue)
            groups: dict[int, list[_Pending]] = {}
            for item in batch:
                groups.setdefault(item.max_new_tokens, []).append(item)
            for max_new, items in groups.items():
                stop = self._stop_when_abandoned(items)
                started = time.perf_counter()
                try:
                    texts, counts = await loop.run_in_executor(
                        self.writer.executor,
                        lambda items=items, max_new=max_new, stop=stop: self.writer.generate(
                            [i.prompt for i in items], max_new, max_seconds=self.max_seconds, stop=stop))
                except Exception as exc:  # noqa: BLE001 - every waiting client must hear about it
                    log.exception("generation failed")
                    for item in items:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    continue
                seconds = time.perf_counter() - started
                for item, text, count in zip(items, texts, counts, strict=True):
                    if not item.future.done():
                        item.future.set_result(Generated(text, count, len(items), seconds))


# ---------------------------------------------------------------------------- requests and answers


def request_models(cfg: ServeConfig):
    """The request body's pydantic models, with this config's length limits (they show in the OpenAPI)."""
    from typing import Annotated

    from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr
    from pydantic_core import PydanticCustomError

    def json_integer(value: Any) -> Any:
        # JSON Schema's integer: 4 and 4.0, not "4" or true.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        return value

    TokenCap = Annotated[int, Field(ge=1, le=cfg.max_new_tokens), BeforeValidator(json_integer)]

    short, long_, posting_chars = cfg.max_short_chars, cfg.max_field_chars, cfg.max_posting_chars

    class _Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    class Job(_Strict):
        title: StrictStr = Field(min_length=1, max_length=short, description="Job title.", examples=["Data Analyst"])
        company: StrictStr = Field(min_length=1, max_length=short, description="Hiring company.", examples=["Acme Corp"])
        preferred_qualifications: StrictStr = Field("", max_length=long_, description="What the job asks for.")
        posting: StrictStr = Field("", max_length=posting_chars, description=(
            "Free text of the job posting (e.g. the page's text). Used as the preferred qualifications when those are "
            "empty, cut to fit the prompt."))

    class Resume(_Strict):
        name: StrictStr = Field(min_length=1, max_length=short, description="Applicant's name.", examples=["Ana Silva"])
        current_experience: StrictStr = Field("", max_length=long_)
        past_experience: StrictStr = Field("", max_length=long_)
        skills: StrictStr = Field("", max_length=long_)
        qualifications: StrictStr = Field("", max_length=long_)

    class LetterRequest(_Strict):
        job: Job
        resume: Resume
        max_new_tokens: TokenCap | None = Field(None, description=(
            f"New-token cap for this letter (default and most: {cfg.max_new_tokens})."))

    return LetterRequest


def response_models():
    from pydantic import BaseModel, Field

    class Warning_(BaseModel):
        code: str = Field(description="company_missing, title_missing, name_missing, unsupported_years, placeholders, "
                                      "unsupported_entities, truncated, posting_trimmed or empty.")
        message: str

    class Grounding(BaseModel):
        company_named: bool | None
        title_named: bool | None
        name_named: bool | None
        years_claimed: list[float]
        resume_years: float | None
        unsupported_years: bool
        unsupported_entities: list[str]
        entity_precision: float | None
        placeholders: list[str]

    class LetterResponse(BaseModel):
        letter: str
        warnings: list[Warning_]
        grounding: Grounding
        prompt_tokens: int
        new_tokens: int
        seconds: float = Field(description="Time in the service, queue included.")
        batch_size: int = Field(description="Letters generated in the same generate call.")
        model: str

    class Health(BaseModel):
        status: str
        model: str
        limits: dict[str, int]
        token_required: bool
        token_ok: bool | None = Field(description="Whether the request's bearer token is right; null when none is needed.")
        generate_calls: int = Field(description="generate calls so far (batching: fewer than letters).")
        letters: int

    class Error(BaseModel):
        detail: str

    return LetterResponse, Health, Error


FIELD_MAP = (("job", "title", "job_title"), ("job", "company", "hiring_company"),
             ("job", "preferred_qualifications", "preferred_qualifications"), ("resume", "name", "applicant_name"),
             ("resume", "current_experience", "current_experience"), ("resume", "past_experience", "past_experience"),
             ("resume", "skills", "skillsets"), ("resume", "qualifications", "qualifications"))


def body_to_row(body: Mapping[str, Any]) -> dict[str, str]:
    """The API's names → the dataset's field names that PromptFormat and the grounding checks use.
    The free-text posting stands in for the preferred qualifications when those are empty."""
    row = {field: str(body[part].get(key) or "") for part, key, field in FIELD_MAP}
    if not row["preferred_qualifications"].strip():
        row["preferred_qualifications"] = str(body["job"].get("posting") or "")
    return row


@dataclass
class Prepared:
    row: dict[str, str]
    prompt: list[int]
    max_new_tokens: int
    warnings: list[dict[str, str]]


class PromptTooLong(Exception):
    pass


def prepare(writer: LetterWriter, cfg: ServeConfig, body: Mapping[str, Any]) -> Prepared:
    """Row, prompt ids and new-token cap for one request; a long posting is cut to the token budget."""
    max_new = body.get("max_new_tokens") or cfg.max_new_tokens
    budget = cfg.max_prompt_tokens
    if writer.context_length:
        budget = min(budget, writer.context_length - max_new)
    row = body_to_row(body)
    prompt = writer.format.prompt_ids(row)
    warnings = []
    uses_posting = not str(body["job"].get("preferred_qualifications") or "").strip() and row["preferred_qualifications"]
    if len(prompt) > budget and uses_posting:
        posting_ids = writer.tokenizer(row["preferred_qualifications"], add_special_tokens=False)["input_ids"]
        for _ in range(4):  # re-tokenizing a cut text can shift a token or two: retry with a margin
            keep = len(posting_ids) - (len(prompt) - budget) - 8
            if keep <= 0:
                break
            posting_ids = posting_ids[:keep]
            row["preferred_qualifications"] = writer.tokenizer.decode(posting_ids, skip_special_tokens=True).strip()
            prompt = writer.format.prompt_ids(row)
            if len(prompt) <= budget:
                warnings.append({"code": "posting_trimmed", "message": (
                    f"The job posting was cut to its first {len(row['preferred_qualifications'])} characters to fit the "
                    f"{budget}-token prompt; select the relevant part of the page for a better letter.")})
                break
    if len(prompt) > budget:
        raise PromptTooLong(f"the prompt is {len(prompt)} tokens, more than the {budget} allowed: shorten the resume fields"
                            + (" or the posting" if uses_posting else ""))
    return Prepared(row, prompt, max_new, warnings)


def grounding_report(letter: str, row: Mapping[str, str], new_tokens: int, max_new_tokens: int,
                     timed_out: bool) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """scoring.grounding.check_letter's findings as readable warnings, plus the raw checks."""
    from .scoring.grounding import check_letter

    check = check_letter(letter, row)
    warnings = []

    def warn(code: str, message: str) -> None:
        warnings.append({"code": code, "message": message})

    if not letter.strip():
        warn("empty", "The model wrote no letter.")
    if check["company_named"] is False:
        warn("company_missing", f"The letter does not name the company ({row['hiring_company']}).")
    if check["title_named"] is False:
        warn("title_missing", f"The letter does not name the job title ({row['job_title']}).")
    if check["name_named"] is False:
        warn("name_missing", f"The letter does not give the applicant's name ({row['applicant_name']}).")
    if check["unsupported_years"]:
        claimed = sorted({c.claimed_years for c in check["years_claims"] if c.claimed_years > (check["resume_years"] or 0)})
        warn("unsupported_years", f"The letter claims {', '.join(f'{y:g}' for y in claimed)} years of experience; "
                                  f"the resume supports {check['resume_years']:g}.")
    if check["has_placeholder"]:
        warn("placeholders", "Unfilled template slots: " + ", ".join(check["placeholders"]) + ".")
    if check["unsupported_entities"]:
        warn("unsupported_entities", "Mentions that are not in the job or the resume (check they are true): "
                                     + ", ".join(check["unsupported_entities"]) + ".")
    if timed_out:
        warn("truncated", "Generation hit the service's time cap: the letter may be cut off.")
    elif new_tokens >= max_new_tokens:
        warn("truncated", f"The letter reached the {max_new_tokens}-token cap and may be cut off.")
    grounding = {
        "company_named": check["company_named"], "title_named": check["title_named"], "name_named": check["name_named"],
        "years_claimed": [float(c.claimed_years) for c in check["years_claims"]], "resume_years": check["resume_years"],
        "unsupported_years": bool(check["unsupported_years"]), "unsupported_entities": list(check["unsupported_entities"]),
        "entity_precision": check["entity_precision"], "placeholders": list(check["placeholders"]),
    }
    return warnings, grounding


# ---------------------------------------------------------------------------- the app


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, by Content-Length or as it streams in."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._too_large(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._too_large(send)
            if not message.get("more_body"):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replayed, send)

    async def _too_large(self, send):
        body = json.dumps({"detail": f"request body over {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class OriginGuard:
    """ASGI middleware: 400 for a Host not in allowed_hosts (DNS rebinding), 403 for a browser Origin that
    is not allowed. Requests without an Origin (curl, scripts) pass; CORS headers are CORSMiddleware's."""

    def __init__(self, app, origins: re.Pattern, hosts: list[str]):
        self.app, self.origins, self.hosts = app, origins, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            host = headers.get(b"host", b"").decode("latin-1").lower()
            hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if "*" not in self.hosts and hostname not in self.hosts:
                return await _send_json(send, 400, {"detail": f"host {host!r} not allowed"})
            origin = headers.get(b"origin")
            if origin is not None and not self.origins.match(origin.decode("latin-1")):
                return await _send_json(send, 403, {"detail": "origin not allowed"})
        return await self.app(scope, receive, send)


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(cfg: ServeConfig, writer: LetterWriter | None = None):
    """The FastAPI app; loads the model unless a loaded `writer` is given (tests share one)."""
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from transformers import TextStreamer

    writer = writer or LetterWriter.from_config(cfg)
    token = cfg.token or os.environ.get("COVERLORA_TOKEN") or None
    batcher = Batcher(writer, max_batch=cfg.max_batch, max_wait=cfg.max_wait_ms / 1000, max_seconds=cfg.max_seconds)
    LetterRequest = request_models(cfg)
    LetterResponse, Health, Error = response_models()

    @asynccontextmanager
    async def lifespan(app):
        yield
        await batcher.stop()

    app = FastAPI(title="coverlora letter service", version="1", lifespan=lifespan, description=(
        "Writes a cover letter from a job description and a resume with a fine-tuned model running on this machine, "
        "and flags what the letter claims that the inputs do not support."))
    app.state.writer, app.state.batcher, app.state.config = writer, batcher, cfg

    bearer = HTTPBearer(auto_error=False, description="Needed only when the service was started with a token.")

    def token_ok(given: str) -> bool:
        return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))

    async def check_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not token_ok(credentials.credentials if credentials is not None else ""):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    # Without a token the API declares no security scheme: the OpenAPI says what the service checks.
    auth = [Depends(check_token)] if token is not None else []

    @app.exception_handler(RequestValidationError)
    async def readable_422(request: Request, exc: RequestValidationError):
        detail = []
        for error in exc.errors():
            loc = [str(part) for part in error.get("loc", ())]
            detail.append({"loc": loc, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))})
        message = "; ".join(f"{'.'.join(d['loc'][1:] if d['loc'][:1] == ['body'] else d['loc']) or 'body'}: {d['msg']}"
                            for d in detail)
        return JSONResponse({"detail": detail, "message": message}, status_code=422)

    def prompt_too_long(exc: PromptTooLong):
        detail = [{"loc": ["body"], "msg": str(exc), "type": "prompt_too_long"}]
        return JSONResponse({"detail": detail, "message": str(exc)}, status_code=422)

    errors = {400: {"model": Error, "description": "Body is not UTF-8 JSON, or the Host header is not allowed."},
              401: {"model": Error, "description": "Missing or wrong bearer token."},
              403: {"model": Error, "description": "Browser origin not allowed."},
              413: {"model": Error, "description": "Body too large."},
              504: {"model": Error, "description": "No letter within request_timeout."}}

    def answer(prepared: Prepared, generated: Generated, started: float) -> dict[str, Any]:
        timed_out = generated.seconds >= cfg.max_seconds
        warnings, grounding = grounding_report(generated.text, prepared.row, generated.new_tokens,
                                               prepared.max_new_tokens, timed_out)
        return {"letter": generated.text, "warnings": prepared.warnings + warnings, "grounding": grounding,
                "prompt_tokens": len(prepared.prompt), "new_tokens": generated.new_tokens,
                "seconds": round(time.perf_counter() - started, 3), "batch_size": generated.batch_size,
                "model": writer.name}

    @app.post("/v1/letters", response_model=LetterResponse, responses=errors, dependencies=auth,
              summary="Write a cover letter")
    async def write_letter(body: LetterRequest):
        started = time.perf_counter()
        try:
            prepared = prepare(writer, cfg, body.model_dump())
        except PromptTooLong as exc:
            return prompt_too_long(exc)
        try:
            generated = await asyncio.wait_for(batcher.submit(prepared.prompt, prepared.max_new_tokens),
                                               cfg.request_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise HTTPException(504, f"no letter within {cfg.request_timeout:g} s: the service is busy") from None
        return answer(prepared, generated, started)

    @app.post("/v1/letters/stream", responses={**errors, 200: {
        "content": {"text/event-stream": {"schema": {  # one event (OpenAPI 3.1 reads `schema` per event)
            "type": "object", "required": ["event", "data"],
            "properties": {"event": {"type": "string", "enum": ["start", "token", "done", "error"]},
                           "data": {"type": "string", "description": "JSON: start {prompt_tokens, model}, token {text}, "
                                                                     "done (a LetterResponse), error {detail}."}}}}},
        "description": "Server-sent events: `token` ({text}) as the letter is written, then `done` (the same "
                       "object as POST /v1/letters, with the cleaned letter) or `error` ({detail})."}},
        dependencies=auth, summary="Write a cover letter, streamed", response_class=StreamingResponse)
    async def stream_letter(body: LetterRequest):
        started = time.perf_counter()
        try:
            prepared = prepare(writer, cfg, body.model_dump())
        except PromptTooLong as exc:
            return prompt_too_long(exc)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        finished = object()

        class QueueStreamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    loop.call_soon_threadsafe(queue.put_nowait, text)

        stop = threading.Event()
        streamer = QueueStreamer(writer.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def run() -> tuple[list[str], list[int], float]:
            t0 = time.perf_counter()
            texts, counts = writer.generate([prepared.prompt], prepared.max_new_tokens, max_seconds=cfg.max_seconds,
                                            stop=stop, streamer=streamer)
            return texts, counts, time.perf_counter() - t0

        async def events() -> AsyncIterator[str]:
            # Bypasses the batcher (one prompt, one streamer) but shares its worker thread.
            job = loop.run_in_executor(writer.executor, run)
            job.add_done_callback(lambda _: queue.put_nowait(finished))
            deadline = started + cfg.request_timeout
            try:
                yield _sse("start", {"prompt_tokens": len(prepared.prompt), "model": writer.name})
                while True:
                    item = await asyncio.wait_for(queue.get(), max(deadline - time.perf_counter(), 0.001))
                    if item is finished:
                        break
                    yield _sse("token", {"text": item})
                texts, counts, seconds = await job
                yield _sse("done", answer(prepared, Generated(texts[0], counts[0], 1, seconds), started))
            except (asyncio.TimeoutError, TimeoutError):
                yield _sse("error", {"detail": f"no letter within {cfg.request_timeout:g} s: the service is busy"})
            except Exception as exc:  # noqa: BLE001 - the status line is sent already: report in the stream
                log.exception("streamed generation failed")
                yield _sse("error", {"detail": f"generation failed: {type(exc).__name__}"})
            finally:
                stop.set()  # a client that went away stops the generation too

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/healthz", response_model=Health, summary="Liveness, model and limits")
    async def healthz(request: Request):
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        limits = {key: getattr(cfg, key) for key in ("max_new_tokens", "max_short_chars", "max_field_chars",
                                                    "max_posting_chars", "max_body_bytes", "max_prompt_tokens")}
        return {"status": "ok", "model": writer.name, "limits": limits, "token_required": token is not None,
                "token_ok": None if token is None else scheme.lower() == "bearer" and token_ok(given.strip()),
                "generate_calls": writer.generate_calls, "letters": writer.letters}

    def page_route(path: str, filename: str, media_type: str):
        async def page() -> Response:
            file = EXTENSION_DIR / filename
            if not file.is_file():
                raise HTTPException(404, f"{filename} not found: the web page is served from {EXTENSION_DIR}")
            return Response(file.read_bytes(), media_type=media_type,
                            headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                                     "Cache-Control": "no-cache"})

        app.add_api_route(path, page, methods=["GET"], include_in_schema=path == "/", response_class=Response,
                          summary="The letter form (web page)" if path == "/" else None,
                          responses={200: {"content": {media_type.split(";")[0]: {}}}})

    for path, (filename, media_type) in PAGE_FILES.items():
        page_route(path, filename, media_type)

    # Outermost last: CORS headers go on every answer to an allowed origin, the 403 and 413 included.
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.add_middleware(OriginGuard, origins=origin_regex(cfg.allowed_origins), hosts=cfg.hosts)
    app.add_middleware(CORSMiddleware, allow_origin_regex=origin_regex(cfg.allowed_origins).pattern,
                       allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"], max_age=600)
    return app


def serve(cfg: ServeConfig) -> None:
    """Load the model and serve until Ctrl-C."""
    import uvicorn

    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not (cfg.token or os.environ.get("COVERLORA_TOKEN")):
        log.warning("binding %s without a token: anyone who can reach this port can use the model", cfg.host)
    app = create_app(cfg)
    log.info("serving %s on http://%s:%d (web page at /, API docs at /docs)", app.state.writer.name, cfg.host, cfg.port)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
