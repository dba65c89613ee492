"""Sentence repair on the slot engine: the letters repair.py's generate driver writes, for the same seed, with the
engine's continuous batching and CUDA graphs.

Every row decodes on without waiting for a verdict. At each sync the engine hands the review every row's new
tokens; each sentence they complete (the same rule and the same cut as a generate round's: repair.take_sentence
over at most SENTENCE_TOKENS tokens) goes through one verifier pass with the other rows' sentences. Then, per
row: a flagged sentence with tries left rewinds the row to where it began, to draw again on a new stream; a
sampled sentence that is kept (or left out) rewinds the row to its end, to go on greedily (what the row drew
after it was drawn hot); a kept greedy sentence leaves the row as it is, since what it decoded after the
sentence is the greedy continuation a generate round would write. Rows that judged nothing keep decoding
through the whole sync; a rewound row has only lost the tokens it decoded past its sentence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from coverlora.generate import repair
from coverlora.generate.engine import Rewind
from coverlora.generate.repair import SENTENCE_TOKENS, Letter, Repaired, TokenTable
from coverlora.generate.sampling import row_seed
from coverlora.generate.slots import slot_engine
from coverlora.scoring.claims.evidence import RowSources

# (prompt indices, their repaired letters, seconds since the last rows finished)
Done = Callable[[list[int], list[Repaired], float], None]


class _Review:
    """The engine's review for one run: each row's Letter, and the tokens the engine holds for it."""

    def __init__(self, tokenizer, prompts: Sequence[list[int]], rows: Sequence[Mapping[str, str]],
                 indices: list[int], max_new_tokens: int, *, tries: int, temperature: float, seed: int,
                 stop_ids: list[int], threshold: float | None):
        self.tokenizer, self.rows, self.tries, self.temperature = tokenizer, rows, tries, temperature
        self.threshold = threshold
        self.stops, self.table = set(stop_ids), TokenTable.of(tokenizer)
        self.letters = {i: Letter(list(prompts[i]), max_new_tokens, row_seed(seed, prompts[i])) for i in indices}
        self.sources = {i: RowSources.of(rows[i]) for i in indices}
        self.tokens: dict[int, list[int]] = {i: [] for i in indices}  # the letter's tokens as the engine holds them

    def _ready(self, i: int) -> tuple[list[int], bool] | None:
        """The row's next sentence and whether the letter ends with it, once the engine has decoded enough to
        know it (a generate round over the same tokens cuts the same sentence)."""
        letter = self.letters[i]
        window = self.tokens[i][len(letter.context):][:SENTENCE_TOKENS]
        stopped = any(token in self.stops for token in window)
        known = (stopped or len(window) >= min(SENTENCE_TOKENS, letter.budget)
                 or self.table.sentence_end(window) is not None)
        return repair.take_sentence(letter, window, self.stops, self.table) if known else None

    def __call__(self, indices: list[int], new: list[list[int]], live: list[bool]) -> dict[int, Rewind]:
        for i, tokens in zip(indices, new):
            self.tokens[i].extend(tokens)
        rewinds: dict[int, Rewind] = {}
        todo = [i for i in indices if not self.letters[i].done]
        while todo:  # a greedy row may hold several finished sentences: one verifier pass per sentence each
            ready = [(i, got) for i in todo if (got := self._ready(i)) is not None]
            if not ready:
                break
            letters = [self.letters[i] for i, _ in ready]
            flagged = repair.judge(self.tokenizer, letters, [sentence for _, (sentence, _) in ready],
                                   [self.rows[i] for i, _ in ready], [self.sources[i] for i, _ in ready],
                                   self.threshold)
            todo = []
            for (i, (sentence, ended)), letter, bad in zip(ready, letters, flagged):
                sampled = letter.tries > 0
                repair.advance(letter, sentence, ended, bad, sampled, self.tries)
                if letter.done:
                    continue
                if letter.tries > 0:  # flagged with tries left: draw the sentence again
                    rewinds[i] = Rewind(len(letter.context), letter.stream, self.temperature)
                elif sampled:  # the try was kept or left out: go on greedily from its end
                    rewinds[i] = Rewind(len(letter.context), 0, 0.0)
                else:
                    todo.append(i)
                    continue
                del self.tokens[i][len(letter.context):]
        return rewinds

    def finished(self, i: int) -> Repaired:
        return repair.finish(self.tokenizer, self.letters[i], self.rows[i], self.sources[i], self.threshold)


def slot_repair_letters(model, tokenizer, prompts: list[list[int]], rows: Sequence[Mapping[str, str]],
                        indices: list[int], max_new_tokens: int, *, tries: int, temperature: float, seed: int = 0,
                        top_p: float = 1.0, threshold: float | None = None, stop_ids: list[int] | None = None,
                        repetition_penalty: float = 1.0,
                        most_slots: int = 512, on_done: Done, should_stop: Callable[[], bool] | None = None) -> None:
    """Repaired letters for prompts[i], i in `indices` (rows[i] is its row), through the model's sampling slot
    engine; `on_done` gets them as rows finish. `should_stop()` ends every letter where it is."""
    stop_ids = list(stop_ids or [tokenizer.eos_token_id])
    engine = slot_engine(model, tokenizer, capacity=max(len(prompts[i]) for i in indices) + max_new_tokens,
                         stop_ids=stop_ids, repetition_penalty=repetition_penalty, most_slots=most_slots,
                         rows=len(indices), sampling=True, top_p=top_p)
    review = _Review(tokenizer, prompts, rows, indices, max_new_tokens, tries=tries, temperature=temperature,
                     seed=seed, stop_ids=stop_ids, threshold=threshold)
    last = time.perf_counter()

    def finished(done: list[int], _tokens: list[list[int]]) -> None:
        nonlocal last
        now = time.perf_counter()
        on_done(done, [review.finished(i) for i in done], now - last)
        last = now

    engine.run(prompts, indices, [max_new_tokens] * len(prompts), finished, should_stop=should_stop,
               sampling=[(review.letters[i].seed, 0, 0.0) if i in review.letters else (0, 0, 0.0)
                         for i in range(len(prompts))], review=review)
