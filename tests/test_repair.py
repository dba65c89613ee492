"""Sentence repair (coverlora/generate/repair.py): sentence ends found token by token, a flagged sentence rolled
back and rewritten or left out, the letter's frame kept, no flagged sentence in a repaired letter, and the same
seed giving the same letter.

A scripted model (a logits processor that forces the tokens of a written letter on the tiny random Llama) makes
the letters known in advance; the real verifier judges them.
"""

import pytest
import torch
from flagged_row import INVENTED, LETTER, ROW  # tests/flagged_row.py
from transformers import LogitsProcessor, LogitsProcessorList

from coverlora.generate import repair
from coverlora.generate.batched import generate_batch
from coverlora.generate.repair import SentenceEnds, TokenTable, repair_letters
from coverlora.models import load_model, load_tokenizer
from coverlora.scoring.claims.verdicts import check_claims

REWRITE = "I studied Statistics for my BSc."


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return load_model(tiny_model_path, torch.float32).eval(), load_tokenizer(tiny_model_path)


class Script(LogitsProcessor):
    """Forces the letter's tokens: the next one after the longest part of the letter the row ends with. When
    `sampled` is set, the invented sentence is written as REWRITE instead (the model's other choice), and the
    letter goes on from whichever version the row holds."""

    def __init__(self, tokenizer, stop_id: int):
        self.tokenizer, self.stop_id, self.sampled = tokenizer, stop_id, False
        self.greedy = tokenizer(LETTER, add_special_tokens=False)["input_ids"] + [stop_id]
        self.other = tokenizer(LETTER.replace(INVENTED, REWRITE), add_special_tokens=False)["input_ids"] + [stop_id]

    def next_token(self, row: list[int]) -> int:
        """Go on with the script whose longest part the row ends with; where both fit, the mode's own."""
        def matched(script):
            return next((k for k in range(min(len(row), len(script) - 1), 0, -1) if row[-k:] == script[:k]), 0)

        scripts = [self.other, self.greedy] if self.sampled else [self.greedy, self.other]
        script = max(scripts, key=matched)  # max keeps the first of equals
        return script[matched(script)]

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, -1e9)
        for r, row in enumerate(input_ids.tolist()):
            forced[r, self.next_token(row)] = 0.0
        return forced


def scripted(monkeypatch, tokenizer, stop_id: int, rewrite: bool) -> dict:
    script = Script(tokenizer, stop_id)
    original = repair._decode_round

    def decode_round(model, tok, letters, sample, **kwargs):
        script.sampled = sample and rewrite
        return original(model, tok, letters, sample, **kwargs)

    monkeypatch.setattr(repair, "_decode_round", decode_round)
    return {"logits_processor": LogitsProcessorList([script])}


def prompt_of(tokenizer) -> list[int]:
    return tokenizer("Write a cover letter.", add_special_tokens=False)["input_ids"]


def test_sentence_ends_are_found_token_by_token(tiny):
    _, tokenizer = tiny
    table = TokenTable.of(tokenizer)
    text = "Dear Ana,\n\nI know SQL. I led teams at Foo Inc. too"
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    cuts, rest = [], tokens
    while (end := table.sentence_end(rest)) is not None:
        cuts.append(tokenizer.decode(rest[:end]))
        rest = rest[end:]
    # a line ends at its newline, a sentence before the spaced word after its full stop; blanks lead the next one
    assert [c.strip() for c in cuts] == ["Dear Ana,", "I know SQL.", "I led teams at Foo Inc."], cuts
    assert "".join(cuts) + tokenizer.decode(rest) == text
    # the step-by-step stopping criterion agrees with it, for each prefix of the letter
    ends = SentenceEnds(table, width=0, rows=1, device="cpu")
    stopped = next(k for k in range(1, len(tokens) + 1) if ends(torch.tensor([tokens[:k]]), None)[0])
    assert stopped == table.sentence_end(tokens) + ("\n" not in tokenizer.decode(tokens[stopped - 1]))


def test_a_sentence_flagged_on_every_try_is_left_out_and_the_frame_stays(tiny, monkeypatch):
    model, tokenizer = tiny
    kwargs = scripted(monkeypatch, tokenizer, tokenizer.eos_token_id, rewrite=False)
    [letter] = repair_letters(model, tokenizer, [prompt_of(tokenizer)], [ROW], 160, tries=3, temperature=0.7,
                              stop_ids=[tokenizer.eos_token_id], generate_kwargs=kwargs)
    assert letter.text == LETTER.replace(INVENTED + " ", "")
    assert (letter.left_out, letter.rewritten, letter.samples) == (1, 0, 3)
    assert letter.text.startswith("Dear Hiring Manager,") and letter.text.endswith("Sincerely,\nAna Silva")
    assert not any(v.flagged for v in check_claims(letter.text, ROW))
    assert any(v.flagged for v in check_claims(LETTER, ROW))  # the greedy letter's invented sentence is flagged


def test_a_flagged_sentence_is_rolled_back_and_rewritten(tiny, monkeypatch):
    """The rewrite goes on from where the flagged sentence began: the letter is the one the model writes had
    it chosen the other sentence there, with nothing of the flagged one left."""
    model, tokenizer = tiny
    kwargs = scripted(monkeypatch, tokenizer, tokenizer.eos_token_id, rewrite=True)
    [letter] = repair_letters(model, tokenizer, [prompt_of(tokenizer)], [ROW], 160, tries=3, temperature=0.7,
                              stop_ids=[tokenizer.eos_token_id], generate_kwargs=kwargs)
    assert letter.text == LETTER.replace(INVENTED, REWRITE)
    assert (letter.left_out, letter.rewritten, letter.samples) == (0, 1, 1)


def test_nothing_flagged_gives_the_greedy_letter(tiny, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setattr(repair, "judge", lambda tok, letters, *rest: [False] * len(letters))
    prompts = [prompt_of(tokenizer), tokenizer("Dear", add_special_tokens=False)["input_ids"]]
    greedy, _ = generate_batch(model, tokenizer, prompts, 48)
    repaired = repair_letters(model, tokenizer, prompts, [ROW, ROW], 48, tries=2, temperature=1.0)
    assert [r.text for r in repaired] == greedy
    assert all(r.samples == 0 for r in repaired)


def test_the_same_seed_gives_the_same_letters(tiny, monkeypatch):
    model, tokenizer = tiny
    # every greedy sentence is flagged: the letters are all sampled sentences
    monkeypatch.setattr(repair, "judge", lambda tok, letters, *rest: [letter.tries == 0 for letter in letters])
    # the whole-letter check would read the tiny model's random words as unbacked claims and leave everything out
    monkeypatch.setattr(repair, "FLAGGED_LABELS", frozenset())
    prompts = [prompt_of(tokenizer)] * 2

    def letters(seed):
        return [r.text for r in repair_letters(model, tokenizer, prompts, [ROW, ROW], 24, tries=2, temperature=1.0,
                                               seed=seed)]

    first = letters(1)
    assert letters(1) == first and letters(2) != first


def test_a_row_decoded_alone_reuses_its_cache_and_writes_the_greedy_letter(tiny, monkeypatch):
    """One row: the cache of the kept text is cropped back and reused between sentences; with nothing flagged
    the letter is generate's greedy letter, and with rollbacks it is the same letter as a fresh decode's."""
    model, tokenizer = tiny
    monkeypatch.setattr(repair, "judge", lambda tok, letters, *rest: [False] * len(letters))
    prompt = prompt_of(tokenizer)
    greedy, _ = generate_batch(model, tokenizer, [prompt], 48)
    [alone] = repair_letters(model, tokenizer, [prompt], [ROW], 48, tries=2, temperature=1.0)
    assert alone.text == greedy[0]
    monkeypatch.setattr(repair, "judge", lambda tok, letters, *rest: [letter.tries == 0 for letter in letters])
    [first] = repair_letters(model, tokenizer, [prompt], [ROW], 24, tries=2, temperature=1.0, seed=3)
    [again] = repair_letters(model, tokenizer, [prompt], [ROW], 24, tries=2, temperature=1.0, seed=3)
    assert first == again and first.samples > 0
    # every first try flagged and rewritten at a temperature near 0 (the random model's logits are close), which samples the greedy token: a rollback
    # that left anything of the flagged try in the cache would make the letter differ from the greedy one
    # (a repetition penalty makes the random model end its first sentence: "........... pledge pledge ...")
    penalised, _ = generate_batch(model, tokenizer, [prompt], 48, repetition_penalty=1.3)
    [cold] = repair_letters(model, tokenizer, [prompt], [ROW], 48, tries=1, temperature=1e-5, seed=3,
                            repetition_penalty=1.3)
    assert cold.text == penalised[0] and cold.rewritten == cold.samples >= 2


def test_a_lower_flag_threshold_flags_more_and_repair_obeys_it(tiny, monkeypatch):
    """repair_threshold: the verifier's threshold for repair only. Near 0 every claim is flagged, so the scripted
    letter keeps no claim at all; the default keeps the backed one."""
    from coverlora.scoring.claims.verdicts import verify_sentences
    from coverlora.scoring.sentences import split_sentences

    backed = [s for s in split_sentences(LETTER) if "Bar Inc" in s.text]
    assert not verify_sentences([backed], [ROW])[0][0].flagged
    assert verify_sentences([backed], [ROW], flag_threshold=1e-6)[0][0].flagged
    model, tokenizer = tiny
    kwargs = scripted(monkeypatch, tokenizer, tokenizer.eos_token_id, rewrite=False)
    [letter] = repair_letters(model, tokenizer, [prompt_of(tokenizer)], [ROW], 160, tries=1, temperature=0.7,
                              threshold=1e-6, stop_ids=[tokenizer.eos_token_id], generate_kwargs=kwargs)
    assert "Bar Inc" not in letter.text and letter.left_out >= 2
