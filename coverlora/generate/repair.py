"""Sentence repair (`decoding: repair`): each letter is written greedily, one sentence at a time, and the claim
verifier judges every sentence against the row as soon as it ends. A flagged sentence is rolled back (the letter
goes on from where the sentence began, as if it had never been written) and resampled, up to `tries` times at
`temperature`; if every try is flagged, the sentence is left out of the letter, and the model goes on after it.

Two drivers write the same letters for the same seed. Here, on transformers' generate (any model, any device):
a round decodes one sentence for every live row of the batch, the greedy rows in one generate call, the rows
being rewritten in another, each stopping at its own sentence end; then all their new sentences go through one
verifier pass. Each call starts from the prompt and the sentences kept so far, so a rollback is exact. On the
slot engine (repair_slots.py), rows decode on, and each sync's finished sentences are judged together; a
flagged one rewinds its row. A sampled try draws with sampling.py's seeded sampler, keyed by the row's seed
(the run's seed and its prompt), the try's stream (the letter's sampled sentences so far, plus one) and the
token's index in the letter: the draw depends on nothing else, so the drivers agree token for token.

The letter's record says how many sentences were rewritten (a resampled sentence replaced a flagged one) and
left out, and how many tries it took. A last check of the whole letter removes any flagged sentence the
per-sentence check could not see (a sentence the splitter joins differently once the letter is whole), so a
repaired letter holds no flagged sentence by the same verifier.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria

from coverlora.data import clean_letter
from coverlora.generate.batched import generate_tokens
from coverlora.generate.sampling import SeededSampler, row_seed
from coverlora.scoring.claims.evidence import RowSources
from coverlora.scoring.claims.verdicts import FLAGGED_LABELS, verify_sentences
from coverlora.scoring.sentences import BODY, split_sentences

# The most new tokens one sentence may take before the round ends it anyway (a run-on line, a list).
SENTENCE_TOKENS = 96
_TERMINAL = re.compile(r"[.!?][\"')\]]*$")


@dataclass(frozen=True)
class TokenTable:
    """Per token id, what a sentence end needs: blank (whitespace only), holds a newline, starts with a space,
    ends with a sentence's final punctuation."""

    blank: torch.Tensor
    newline: torch.Tensor
    space_start: torch.Tensor
    terminal_end: torch.Tensor

    @classmethod
    def of(cls, tokenizer) -> TokenTable:
        table = getattr(tokenizer, "_coverlora_sentence_table", None)
        if table is None:
            pieces = [tokenizer.decode([i]) for i in range(len(tokenizer))]
            flags = [[not p.strip() for p in pieces], ["\n" in p for p in pieces], [p[:1].isspace() for p in pieces],
                     [bool(_TERMINAL.search(p)) for p in pieces]]
            table = cls(*(torch.tensor(f, dtype=torch.bool) for f in flags))
            tokenizer._coverlora_sentence_table = table  # 49k decodes: once per tokenizer
        return table

    def sentence_end(self, tokens: Sequence[int]) -> int | None:
        """How many of `tokens` (new tokens after the kept text) make the next sentence, if it ended: at a token
        holding a newline (kept), or at a token starting with a space after final punctuation (not kept: it
        begins the next sentence). Leading blanks belong to the sentence; it must hold some text."""
        blank, newline, space_start, terminal_end = self._lists
        seen = False
        for k, token in enumerate(tokens):
            if newline[token] and (seen or not blank[token]):
                return k + 1
            if seen and space_start[token] and terminal_end[tokens[k - 1]]:
                return k
            seen = seen or not blank[token]
        return None

    @functools.cached_property
    def _lists(self) -> tuple[list[bool], ...]:
        """The flags as Python lists: the host scans tokens one by one, where a tensor lookup costs microseconds."""
        return tuple(t.tolist() for t in (self.blank, self.newline, self.space_start, self.terminal_end))


class SentenceEnds(StoppingCriteria):
    """Each row of a generate call stops at its sentence end: TokenTable.sentence_end, step by step."""

    def __init__(self, table: TokenTable, width: int, rows: int, device):
        self.table = TokenTable(*(t.to(device) for t in (table.blank, table.newline, table.space_start,
                                                         table.terminal_end)))
        self.width, self.seen = width, torch.zeros(rows, dtype=torch.bool, device=device)

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.BoolTensor:
        last, t = input_ids[:, -1], self.table
        done = t.newline[last] & (self.seen | ~t.blank[last])
        if input_ids.shape[1] - self.width >= 2:
            done |= self.seen & t.space_start[last] & t.terminal_end[input_ids[:, -2]]
        self.seen |= ~t.blank[last]
        return done


@dataclass
class Letter:
    """One row's letter while it is repaired."""

    prompt: list[int]
    budget: int  # new tokens left
    seed: int = 0  # sampling.row_seed of the run's seed and the prompt
    context: list[int] = field(default_factory=list)  # every sentence the model wrote and went on from
    sentences: list[tuple[list[int], bool]] = field(default_factory=list)  # each with whether the letter keeps it
    cache: object = None  # a row decoded alone keeps its KV cache of prompt + context between rounds (HF driver)
    tries: int = 0  # flagged tries at the current sentence
    rewritten: int = 0
    left_out: int = 0
    samples: int = 0  # sampled sentences in all
    generated: int = 0  # new tokens decoded, flagged tries included
    done: bool = False

    @property
    def stream(self) -> int:
        """The sampling stream of this letter's next sampled try: one per try, never reused."""
        return self.samples + 1


@dataclass(frozen=True)
class Repaired:
    text: str
    new_tokens: int  # the letter's tokens as the model went on from them (left-out sentences included)
    rewritten: int
    left_out: int
    samples: int  # sentences sampled
    generated: int  # new tokens decoded, flagged tries included

    def record(self) -> dict[str, int]:
        return {"rewritten": self.rewritten, "left_out": self.left_out, "samples": self.samples,
                "generated_tokens": self.generated}


def _decode_round(model, tokenizer, letters: list[Letter], sample: bool, *, stop_ids: list[int], temperature: float,
                  top_p: float, table: TokenTable, generate_kwargs: dict, decoding: dict) -> list[list[int]]:
    """One sentence's new tokens for each of `letters` (greedy, or sampled at `temperature`)."""
    from transformers import DynamicCache, LogitsProcessorList, StoppingCriteriaList

    prompts = [letter.prompt + letter.context for letter in letters]
    width = max(map(len, prompts))
    cap = min(SENTENCE_TOKENS, max(letter.budget for letter in letters))
    ends = SentenceEnds(table, width, len(prompts), next(model.parameters()).device)
    kwargs = {**generate_kwargs, "stopping_criteria": StoppingCriteriaList(
        [ends, *(generate_kwargs.get("stopping_criteria") or [])])}
    options = dict(decoding)
    if sample:  # greedy search over the seeded sampler's choice (it runs after every other processor)
        sampler = SeededSampler(seed=[letter.seed for letter in letters], stream=[letter.stream for letter in letters],
                                first=[len(letter.context) for letter in letters],
                                temperature=[temperature] * len(letters), width=width, top_p=top_p)
        kwargs["logits_processor"] = LogitsProcessorList([*(generate_kwargs.get("logits_processor") or []), sampler])
    alone = letters[0] if len(letters) == 1 else None
    if alone is not None:  # no padding: the cache of what was kept is reused, and only the new part prefilled
        alone.cache = alone.cache if alone.cache is not None else DynamicCache()
        kwargs["past_key_values"] = alone.cache
    new = generate_tokens(model, tokenizer, prompts, cap, stop_ids=stop_ids,
                          kv_cache="dynamic" if alone is not None else "preallocated", generate_kwargs=kwargs, **options)
    if alone is not None:  # back to the prompt and the kept context (less its last token, which the next call feeds)
        extra = alone.cache.get_seq_length() - (len(prompts[0]) - 1)
        if extra > 0:
            alone.cache.crop(-extra)  # a negative crop removes tokens on every transformers 5.x
    return new.tolist()


def take_sentence(letter: Letter, tokens: list[int], stops: set[int], table: TokenTable) -> tuple[list[int], bool]:
    """The sentence in a round's new tokens, and whether the letter ends with it (its stop token or budget)."""
    stop = next((k for k, token in enumerate(tokens) if token in stops), None)
    tokens = tokens[:min(stop if stop is not None else len(tokens), letter.budget)]
    end = table.sentence_end(tokens)
    sentence = tokens[:end] if end is not None else tokens
    return sentence, end is None and (stop is not None or len(tokens) >= letter.budget or not tokens)


def judge(tokenizer, letters: list[Letter], sentences: list[list[int]], rows: list[Mapping[str, str]],
           sources: list[RowSources], threshold: float | None = None) -> list[bool]:
    """Whether each letter's new sentence is flagged by the verifier, read in the letter so far."""
    split = []
    for letter, sentence in zip(letters, sentences):
        before = len(tokenizer.decode(letter.context, skip_special_tokens=True).rstrip())
        text = tokenizer.decode(letter.context + sentence, skip_special_tokens=True)
        split.append([s for s in split_sentences(text) if s.end > before and s.kind == BODY])
    verdicts = verify_sentences(split, rows, sources, threshold)
    return [any(v.label in FLAGGED_LABELS for v in letter_verdicts) for letter_verdicts in verdicts]


def _layout(text: str) -> str:
    """What a left-out sentence leaves behind: the blank lines or space before it and the line break after it."""
    after = text.rstrip(" ")
    return text[:len(text) - len(text.lstrip())] + after[len(after.rstrip("\n")):]


def finish(tokenizer, letter: Letter, row: Mapping[str, str], sources: RowSources,
           threshold: float | None = None) -> Repaired:
    """The kept sentences as a letter, with any sentence the whole-letter check flags removed (left out)."""
    decoded = [tokenizer.decode(tokens, skip_special_tokens=True) for tokens, _ in letter.sentences]
    text = "".join(piece if kept else _layout(piece) for piece, (_, kept) in zip(decoded, letter.sentences))
    flagged = [v for v in verify_sentences([split_sentences(text)], [row], [sources], threshold)[0]
               if v.label in FLAGGED_LABELS]
    for verdict in reversed(flagged):
        text = text[:verdict.start] + text[verdict.end:].lstrip(" ")
    return Repaired(clean_letter(text), len(letter.context), letter.rewritten, letter.left_out + len(flagged),
                    letter.samples, letter.generated)


def repair_letters(model, tokenizer, prompts: list[list[int]], rows: Sequence[Mapping[str, str]], max_new_tokens: int,
                   *, tries: int, temperature: float, seed: int = 0, top_p: float = 1.0,
                   threshold: float | None = None, stop_ids: list[int] | None = None, generate_kwargs: dict | None = None,
                   max_seconds: float | None = None, should_stop: Callable[[], bool] | None = None,
                   **decoding) -> list[Repaired]:
    """Repaired letters for `prompts` (rows[i] is prompts[i]'s row): see the module's docstring. `max_seconds`
    or `should_stop()` ends every letter where it is (between rounds; generate_kwargs' stopping_criteria, such
    as a service's stop, within one)."""
    stop_ids = list(stop_ids or [tokenizer.eos_token_id])
    stops, table = set(stop_ids), TokenTable.of(tokenizer)
    generate_kwargs = {k: v for k, v in (generate_kwargs or {}).items() if k != "max_time"}
    sources = [RowSources.of(row) for row in rows]
    letters = [Letter(list(prompt), max_new_tokens, row_seed(seed, prompt)) for prompt in prompts]
    started = time.monotonic()
    while True:
        live = [i for i, letter in enumerate(letters) if not letter.done]
        if not live or (max_seconds is not None and time.monotonic() - started >= max_seconds) or (
                should_stop is not None and should_stop()):
            break
        for sample in (False, True):
            group = [i for i in live if (letters[i].tries > 0) == sample]
            if not group:
                continue
            new = _decode_round(model, tokenizer, [letters[i] for i in group], sample, stop_ids=stop_ids,
                                temperature=temperature, top_p=top_p, table=table, generate_kwargs=generate_kwargs,
                                decoding=decoding)
            taken = [take_sentence(letters[i], tokens, stops, table) for i, tokens in zip(group, new)]
            flagged = judge(tokenizer, [letters[i] for i in group], [s for s, _ in taken], [rows[i] for i in group],
                            [sources[i] for i in group], threshold)
            for i, (sentence, ended), bad in zip(group, taken, flagged):
                advance(letters[i], sentence, ended, bad, sample, tries)
    return [finish(tokenizer, letter, row, source, threshold) for letter, row, source in zip(letters, rows, sources)]


def advance(letter: Letter, sentence: list[int], ended: bool, flagged: bool, sampled: bool, tries: int) -> None:
    """Keep a sentence, roll it back for another try, or leave it out after `tries` flagged ones."""
    letter.samples += sampled
    letter.generated += len(sentence)
    if flagged and letter.tries < tries and sentence:
        letter.tries += 1  # rolled back: the next round resamples from where it began
        return
    if flagged:
        letter.left_out += 1  # every try flagged: not in the letter; the model goes on after it
    else:
        letter.rewritten += letter.tries > 0
    letter.sentences.append((sentence, not flagged))
    letter.context += sentence
    letter.budget -= len(sentence)
    letter.tries = 0
    letter.done = ended or letter.budget <= 0 or not sentence
