"""THE prompt: built here only, so training and generation can never disagree about it.

The content has three sections (job, resume, letter). Chat models get the same content as one user turn,
wrapped by the tokenizer's own chat template; the letter is the assistant turn and ends with EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .errors import ConfigError

INSTRUCTION = (
    "Write a cover letter for the job below, from the applicant's point of view. "
    "Use only facts from the job description and the resume: name the company and the job title, "
    "and do not invent experience, skills or degrees."
)
JOB_LINES = (("Job Title", "job_title"), ("Hiring Company", "hiring_company"),
             ("Preferred Qualifications", "preferred_qualifications"))
RESUME_LINES = (("Name", "applicant_name"), ("Current Experience", "current_experience"),
                ("Past Experience", "past_experience"), ("Skills", "skillsets"),
                ("Qualifications", "qualifications"))


def _section(title: str, lines: tuple[tuple[str, str], ...], row: Mapping[str, str], extra: str = "") -> str:
    # Empty optional fields are left out rather than shown as "nan" or blank: nothing to ground on.
    body = "\n".join(f"{label}: {row[key]}" for label, key in lines if str(row.get(key) or "").strip())
    return f"### {title}:\n{body}{extra}"


def total_experience_line(row: Mapping[str, str]) -> str:
    """The resume's total years, summed as the grounding check sums them. A small model copies numbers far
    better than it adds them: without this line SmolLM2 wrote "over 8 years" for 3 + 4 (7.3% of letters)."""
    from .scoring.grounding import resume_years

    years = resume_years(row)
    if years is None:
        return ""
    return f"\nTotal Experience: {years:g} year{'s' if years != 1 else ''}"


def prompt_text(row: Mapping[str, str]) -> str:
    """The instruction and the job and resume sections, ending with the letter's header."""
    resume = _section("Applicant Resume", RESUME_LINES, row, total_experience_line(row))
    return "\n\n".join([INSTRUCTION, _section("Job Description", JOB_LINES, row), resume, "### Cover Letter:"]) + "\n"


@dataclass(frozen=True)
class PromptFormat:
    """How rows become token ids for one tokenizer. Build it once with `for_tokenizer`."""

    tokenizer: object
    use_chat_template: bool
    system_prompt: str | None = None

    @classmethod
    def for_tokenizer(cls, tokenizer, chat_template: str = "auto", system_prompt: str | None = None) -> "PromptFormat":
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template == "on" and not has_template:
            raise ConfigError("the tokenizer has no chat template", where="config key 'chat_template'",
                              fix="set chat_template: off (plain prompt) or use a chat model")
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no EOS token, so the model could never learn to stop",
                              where="config key 'model'")
        use = has_template if chat_template == "auto" else chat_template == "on"
        return cls(tokenizer, use, system_prompt)

    def messages(self, row: Mapping[str, str]) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": prompt_text(row)}]

    def prompt_ids(self, row: Mapping[str, str]) -> list[int]:
        """Token ids the model sees before the letter, at training and at generation alike."""
        if self.use_chat_template:
            encoded = self.tokenizer.apply_chat_template(self.messages(row), add_generation_prompt=True, tokenize=True)
            return list(encoded["input_ids"] if isinstance(encoded, Mapping) else encoded)
        return list(self.tokenizer(prompt_text(row), add_special_tokens=True)["input_ids"])

    def completion_ids(self, letter: str) -> list[int]:
        """The letter's ids plus EOS: the model must learn where a letter ends."""
        return list(self.tokenizer(letter, add_special_tokens=False)["input_ids"]) + [self.tokenizer.eos_token_id]

    def training_example(self, row: Mapping[str, str]) -> dict[str, list[int]]:
        """input_ids with a completion_mask: TRL turns the 0s (the prompt) into -100 labels."""
        prompt, completion = self.prompt_ids(row), self.completion_ids(row["cover_letter"])
        return {"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)}
