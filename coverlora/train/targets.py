"""Training targets: the letter each training row teaches, as the model learns it.

The data's letters borrow and invent (a blind reading found a specific unbacked claim in 82% of reference letters),
and the model learns to. Two changes to the target, each a TrainConfig key, keep every letter:

- `unbacked_sentences`: the claim verifier (scoring/claims, the exact rules included) reads every letter against
  its row; its borrowed or unsupported sentences are trained on as before ('train'), get no loss ('mask': their
  tokens' completion mask is 0, the rest of the letter trains), or are cut from the target ('delete').
- `sign_off`: a letter that never names the applicant gains the usual sign-off with the name ("Sincerely,\\nAna
  Silva"), or just the name after a bare closing line.

What was changed is counted (TargetStats): the training log says it and the run manifest keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from coverlora.prompts import PromptFormat
from coverlora.scoring.rules import name_named
from coverlora.scoring.sentences import USUAL_CLOSING, ends_with_closing
from coverlora.text import as_text

UNBACKED_CHOICES = ("train", "mask", "delete")


@dataclass
class TargetStats:
    letters: int = 0
    unbacked_sentences: int = 0  # flagged by the verifier (whatever was done with them)
    masked_tokens: int = 0  # tokens of those sentences with no loss ('mask')
    deleted_sentences: int = 0  # cut from the target ('delete')
    signed_off: int = 0  # letters that gained the applicant's name

    def line(self, unbacked: str) -> str:
        done = {"mask": f"{self.masked_tokens:,} of their tokens carry no loss",
                "delete": f"{self.deleted_sentences} deleted from the targets",
                "train": "trained on as they are"}[unbacked]
        return (f"targets: {self.letters} letters; {self.unbacked_sentences} unbacked sentences ({done}); "
                f"{self.signed_off} letters signed off with the applicant's name")

    def record(self) -> dict[str, int]:
        return asdict(self)


def with_sign_off(letter: str, row: Mapping[str, str]) -> str:
    """The letter, signed with the applicant's name when it never names them (and the row has a name)."""
    name = as_text(row.get("applicant_name")).strip()
    if not name or name_named(letter, name) is not False:
        return letter
    body = letter.rstrip()
    return f"{body}\n{name}" if ends_with_closing(body) else f"{body}\n\n{USUAL_CLOSING}\n{name}"


def unbacked_spans(letters: Sequence[str], rows: Sequence[Mapping[str, str]]) -> list[list[tuple[int, int]]]:
    """Per letter, the character spans of the sentences the claim verifier flags (borrowed or unsupported)."""
    from coverlora.scoring.claims.verdicts import check_letters

    verdicts = check_letters(list(letters), list(rows), method="verifier")
    return [[(v.start, v.end) for v in letter_verdicts if v.flagged] for letter_verdicts in verdicts]


def cut(letter: str, spans: Sequence[tuple[int, int]]) -> str:
    """The letter without those spans (the spaces after each go with it; line breaks stay)."""
    for start, end in sorted(spans, reverse=True):
        letter = letter[:start] + letter[end:].lstrip(" ")
    return letter


def training_examples(rows: Sequence[Mapping[str, str]], fmt: PromptFormat, *, unbacked: str = "train",
                      sign_off: bool = False) -> tuple[list[dict[str, list[int]]], TargetStats]:
    """fmt.training_example for every row, with its target changed as `unbacked` and `sign_off` say."""
    if unbacked not in UNBACKED_CHOICES:
        raise ValueError(f"unbacked must be one of {UNBACKED_CHOICES}, got {unbacked!r}")
    stats = TargetStats(letters=len(rows))
    letters = [as_text(row.get("cover_letter")) for row in rows]
    if sign_off:
        signed = [with_sign_off(letter, row) for letter, row in zip(letters, rows)]
        stats.signed_off = sum(a != b for a, b in zip(letters, signed))
        letters = signed
    spans = unbacked_spans(letters, rows) if unbacked != "train" else [[] for _ in rows]
    stats.unbacked_sentences = sum(map(len, spans))
    examples = []
    for row, letter, flagged in zip(rows, letters, spans):
        if unbacked == "delete":
            letter, flagged = cut(letter, flagged), []
        prompt = fmt.prompt_ids(row)
        example = fmt.training_example({**row, "cover_letter": letter}, masked=flagged if unbacked == "mask" else (),
                                       prompt=prompt)
        stats.masked_tokens += example["completion_mask"][len(prompt):].count(0)
        examples.append(example)
    stats.deleted_sentences = stats.unbacked_sentences if unbacked == "delete" else 0
    return examples, stats
