"""THE prompt: built here only, so training and generation can never disagree about it.

The content has three sections (job, resume, letter). Chat models get the same content as one user turn,
wrapped by the tokenizer's own chat template; the letter is the assistant turn and ends with the token the template
closes an assistant turn with (`<|im_end|>` for ChatML), which is not always the tokenizer's EOS: transformers 5.17
converts the embedded GGUF with EOS = `<|im_start|>`, the token that *opens* a turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from coverlora.errors import ConfigError
from coverlora.fields import PROMPT_LABELS

INSTRUCTION = (
    "Write a cover letter for the job below, from the applicant's point of view. "
    "Use only facts from the job description and the resume: name the company and the job title, "
    "and do not invent experience, skills or degrees."
)
JOB_SECTION, RESUME_SECTION, LETTER_SECTION = "Job Description", "Applicant Resume", "Cover Letter"
TOTAL_EXPERIENCE = "Total Experience"
# The prompt's order of each section's lines; their labels are fields.py's.
JOB_LINES = tuple((PROMPT_LABELS[f], f) for f in ("job_title", "hiring_company", "preferred_qualifications"))
RESUME_LINES = tuple((PROMPT_LABELS[f], f) for f in ("applicant_name", "current_experience", "past_experience",
                                                      "skillsets", "qualifications"))


def _section(title: str, lines: tuple[tuple[str, str], ...], row: Mapping[str, str], extra: str = "") -> str:
    # Empty optional fields are left out rather than shown as "nan" or blank: nothing to ground on.
    body = "\n".join(f"{label}: {row[key]}" for label, key in lines if str(row.get(key) or "").strip())
    return f"### {title}:\n{body}{extra}"


def total_experience_line(row: Mapping[str, str]) -> str:
    """The resume's total years, summed as the grounding check sums them. A small model copies numbers far
    better than it adds them: without this line SmolLM2 wrote "over 8 years" for 3 + 4 (7.3% of letters)."""
    from coverlora.scoring.rules import resume_years

    years = resume_years(row)
    if years is None:
        return ""
    return f"\n{TOTAL_EXPERIENCE}: {years:g} year{'s' if years != 1 else ''}"


def prompt_text(row: Mapping[str, str]) -> str:
    """The instruction and the job and resume sections, ending with the letter's header."""
    resume = _section(RESUME_SECTION, RESUME_LINES, row, total_experience_line(row))
    return "\n\n".join([INSTRUCTION, _section(JOB_SECTION, JOB_LINES, row), resume, f"### {LETTER_SECTION}:"]) + "\n"


def prompt_labels() -> list[str]:
    """Every label the prompt writes before a colon: a letter that echoes one is echoing the prompt."""
    return [JOB_SECTION, RESUME_SECTION, LETTER_SECTION, TOTAL_EXPERIENCE, *(label for label, _ in JOB_LINES + RESUME_LINES)]


_SENTINEL = "\u2063coverlora-letter\u2063"  # text no letter contains, to find where the template closes a turn


def template_end_of_turn(tokenizer) -> int | None:
    """The id the chat template writes right after an assistant message (None when it writes nothing there).

    Raises ConfigError when what follows the message does not start with one special token: then no single id can
    mark a letter's end in training, and generation could not stop on it.
    """
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    after = text.split(_SENTINEL, 1)[1].lstrip(" ") if _SENTINEL in text else ""
    if not after.strip():
        return None
    specials = control_tokens(tokenizer)
    closing = next((t for t in specials if after.startswith(t)), None)
    if closing is None:
        raise ConfigError(f"the chat template closes an assistant turn with {after[:20]!r}, which is not one special token",
                          where="config key 'chat_template'", fix="use a tokenizer whose template ends turns with a "
                          "special token, or set chat_template: off")
    return tokenizer.convert_tokens_to_ids(closing)


def check_special_tokens(tokenizer, end_id: int) -> None:
    """Fail before training when the tokenizer's EOS opens a chat turn (the 5.17 GGUF conversion's bug): a model
    trained that way ends letters with the token every other tool reads as 'a new turn starts here'."""
    opening = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    eos = tokenizer.eos_token
    if eos and tokenizer.eos_token_id != end_id and eos in opening:
        raise ConfigError(f"the tokenizer's EOS {eos!r} opens turns in its own chat template (its turns end with "
                          f"{tokenizer.convert_ids_to_tokens(end_id)!r})", where="config key 'model'",
                          fix="re-convert the model (delete ~/.cache/coverlora for the embedded one) or fix "
                              "eos_token in its tokenizer_config.json")


def control_tokens(tokenizer) -> list[str]:
    """The text of every special and added token, longest first."""
    return sorted({t for t in [*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()] if t}, key=len, reverse=True)


def control_ids(tokenizer) -> frozenset[int]:
    return frozenset(tokenizer.convert_tokens_to_ids(control_tokens(tokenizer)))


def control_token_in(text: str, tokenizer) -> str | None:
    """The first control token whose text occurs in `text` (training data is refused on it), else None."""
    return next((token for token in control_tokens(tokenizer) if token in text), None)


@dataclass(frozen=True)
class PromptFormat:
    """How rows become token ids for one tokenizer. Build it once with `for_tokenizer`."""

    tokenizer: object
    use_chat_template: bool
    system_prompt: str | None = None
    end_id: int | None = None  # the letter's last token: the template's end of turn, else EOS

    @classmethod
    def for_tokenizer(cls, tokenizer, chat_template: str = "auto", system_prompt: str | None = None) -> PromptFormat:
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template == "on" and not has_template:
            raise ConfigError("the tokenizer has no chat template", where="config key 'chat_template'",
                              fix="set chat_template: off (plain prompt) or use a chat model")
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no EOS token, so the model could never learn to stop",
                              where="config key 'model'")
        use = has_template if chat_template == "auto" else chat_template == "on"
        end_id = (template_end_of_turn(tokenizer) if use else None)
        return cls(tokenizer, use, system_prompt, tokenizer.eos_token_id if end_id is None else end_id)

    @property
    def end_token(self) -> str:
        return self.tokenizer.convert_ids_to_tokens(self.end_id)

    @property
    def stop_ids(self) -> list[int]:
        """Every id that can end a letter at generation: the end of turn and EOS, for base and fine-tuned alike."""
        return list(dict.fromkeys(i for i in (self.end_id, self.tokenizer.eos_token_id) if i is not None))

    def messages(self, row: Mapping[str, str]) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": prompt_text(row)}]

    @property
    def control_ids(self) -> frozenset[int]:
        """The ids of every special and added token: only the template may write them, never user text."""
        return control_ids(self.tokenizer)

    def text_ids(self, text: str) -> list[int]:
        """`text` as ordinary tokens: the text of a control token in it ("<|im_end|>" inside a posting or a letter)
        is spelled out in plain tokens instead of becoming the control token (split_special_tokens)."""
        return self._encode(text)[0]

    def _encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """text_ids and each token's character span in `text`."""
        encoded = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        if self.control_ids.intersection(ids):  # a tokenizer that ignores split_special_tokens: never let it pass
            raise ConfigError("this tokenizer turns text into control tokens even with split_special_tokens",
                              where="config key 'model'", fix="use a fast (tokenizers) tokenizer")
        return ids, [tuple(span) for span in encoded["offset_mapping"]]

    def prompt_ids(self, row: Mapping[str, str]) -> list[int]:
        """Token ids the model sees before the letter, at training and at generation alike.

        The chat template is rendered around placeholders, and the row's text goes in as text_ids: whatever the
        fields contain, the prompt holds control tokens only where the template puts them."""
        if not self.use_chat_template:
            # What the tokenizer adds around any text (BOS for most), then the prompt as text.
            return list(self.tokenizer("", add_special_tokens=True)["input_ids"]) + self.text_ids(prompt_text(row))
        messages = self.messages(row)
        holders = [f"{_SENTINEL}{i}{_SENTINEL}" for i in range(len(messages))]
        rendered = self.tokenizer.apply_chat_template([{**m, "content": h} for m, h in zip(messages, holders)],
                                                      add_generation_prompt=True, tokenize=False)
        ids: list[int] = []
        for holder, message in zip(holders, messages):
            template, rendered = rendered.split(holder, 1)
            ids += self._template_ids(template) + self.text_ids(message["content"])
        return ids + self._template_ids(rendered)

    def _template_ids(self, text: str) -> list[int]:
        # The template's own text: its control tokens are meant (apply_chat_template tokenizes it the same way).
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def completion_ids(self, letter: str) -> list[int]:
        """The letter's ids plus the end-of-turn id: the model must learn where a letter ends, and only there."""
        return self.text_ids(letter) + [self.end_id]

    def training_example(self, row: Mapping[str, str], masked: Sequence[tuple[int, int]] = (),
                         prompt: Sequence[int] | None = None) -> dict[str, list[int]]:
        """input_ids with a completion_mask: TRL turns the 0s (the prompt) into -100 labels. `masked`: character
        spans of the letter whose tokens carry no loss either (train/targets.py: unbacked sentences); a token
        touching a span is masked. The end-of-turn token always trains. `prompt`: the row's prompt_ids, when the
        caller has them already."""
        prompt = list(self.prompt_ids(row) if prompt is None else prompt)
        ids, spans = self._encode(row["cover_letter"])
        trains = [int(not any(start < end_ and end > start_ for start_, end_ in masked)) for start, end in spans]
        return {"input_ids": prompt + ids + [self.end_id], "completion_mask": [0] * len(prompt) + trains + [1]}
