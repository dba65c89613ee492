"""Training-data quality rules: which rows a filter drops, and why.

``quality_flags(frame, similarity)`` gives one bool column per rule in ``RULES`` plus ``reasons`` (";"-joined
names of the rules a row fails, "" when it is kept); ``flag_counts`` counts them. Company, title and placeholder
rules are the metrics' own (scoring/grounding.py): the filter and the scores can never disagree about them.
Pure functions: nothing here reads or writes files.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import pandas as pd

from coverlora.fields import COLUMNS, INPUT_FIELDS, TARGET_FIELD
from coverlora.prompts import prompt_labels
from coverlora.scoring.rules import company_named, find_placeholders, title_named
from coverlora.scoring.sentences import CLOSING_PHRASES
from coverlora.text import as_text, canonical

RULES = (
    "shared_letter",
    "too_short",
    "company_missing",
    "title_missing",
    "truncated",
    "placeholder",
    "ai_artifact",
    "low_similarity",
    "unbacked_claims",
)

# Cosine(MiniLM(letter), MiniLM(input_text(row))) below this => "low_similarity".
# Measured on the real data (all-MiniLM-L6-v2, mean pooling, 256-token truncation):
#   true pairs, train (813):  min .380  p1 .487  p5 .574  p10 .597  p50 .681  p90 .746  max .831
#   true pairs, test  (349):  min .352  p1 .435  p5 .523  p10 .577  p50 .681  p90 .754  max .824
#   letter vs the inputs of a train row with a *different* job_title (wrong-job pairs):
#                             p5 .271  p25 .347  p50 .403  p75 .469  p95 .575
#   5 hand-written off-topic texts (nurse / truck-driver / marketing letters, a
#   recipe, an "As an AI language model" refusal) vs every train input:
#                             p50 .22  p90 .31  p99 .41  max .49; 96% are < .35
# A low percentile is the wrong cut here: the ~25 lowest true pairs were read by
# hand and every one is a genuine letter for its inputs (right company, title,
# current job); they score low because their inputs are long job-ad excerpts in
# preferred_qualifications, or because the letter is generic boilerplate. A
# cut of .5 (~p1-p2) would drop 11 good rows in each split, p5 ~41 train / ~18
# test. True and wrong-job pairs overlap heavily (this corpus is a handful of
# tech titles in near-identical wording), so MiniLM cosine cannot catch a
# plausible letter for the wrong tech job -- company_missing/title_missing do
# that. What it can catch is a letter about something else entirely, so the
# cut sits just under the lowest true pair in either split (.352): 0.35 flags
# 0 real rows, ~96% of off-topic pairs and ~26% of wrong-job pairs. Meant for
# model outputs and new data more than for this (clean on this axis) corpus.
MIN_SIMILARITY = 0.35


def column(frame: pd.DataFrame, name: str) -> list[str]:
    if name not in frame.columns:
        raise KeyError(f"DataFrame has no column {name!r}; expected fields.FIELDS columns")
    return [as_text(value) for value in frame[name].tolist()]


def canonical_column(frame: pd.DataFrame, name: str) -> list[str]:
    return [canonical(value) for value in column(frame, name)]


def shared_letter(frame: pd.DataFrame) -> list[bool]:
    """Rows whose (canonical) letter is also used by a row with a different hiring_company, applicant_name or
    job_title.

    Rows that share a letter *and* have the same company, name and title are not flagged: the letter is consistent
    with each of them (a dedup matter, not a wrong-target one). When a group mixes keys, every row of the group is
    flagged, since nothing says which row the letter was written for.
    """
    letters = canonical_column(frame, TARGET_FIELD)
    keys = list(zip(*(canonical_column(frame, f) for f in ("hiring_company", "applicant_name", "job_title"))))
    groups: dict[str, set] = defaultdict(set)
    for letter, key in zip(letters, keys):
        if letter:
            groups[letter].add(key)
    return [bool(letter) and len(groups[letter]) > 1 for letter in letters]


# The body of a complete letter ends with one of these (after rstrip).
_TERMINATORS = set(".!?\"')]\u201d\u2019\u2026*")

# A sign-off at the very end: a closing phrase that starts the text, a line, or a
# sentence; then ",", ".", "!", ":", a dash, or a newline; then a name-like line
# (capitalised words, initials, hyphens, apostrophes, or a [placeholder]); then
# at most 3 more short lines (title, e-mail, phone). Without a separator and a
# capitalised name after it, "... Thank you for" stays truncated.
_NAME_WORD = r"[A-Z][\w'\u2019.\-]*"
_PARTICLE = r"(?:de|da|del|della|der|den|di|du|la|le|van|von|bin|ibn|al|el|y|dos|das)"
_NAME_TAIL = r"(?:[ \t]+(?:" + _NAME_WORD + "|" + _PARTICLE + r"))*(?:,?[ \t]+[A-Z][\w.]*)?"  # "..., PhD"
_NAME_LINE = r"(?:\[[^\]\n]{1,60}\]|" + _NAME_WORD + _NAME_TAIL + ")"
# For a name with no closing before it, demand two capitalised words ("Jane Doe"),
# so "...skills.\nIn" still reads as truncated.
_FULL_NAME = r"(?:\[[^\]\n]{1,60}\]|" + _NAME_WORD + r"(?:[ \t]+" + _PARTICLE + r")*[ \t]+" + _NAME_WORD + _NAME_TAIL + ")"
_SIGN_OFF = re.compile(
    r"(?:^|\n|[.!?][ \t]+)[ \t]*(?i:" + CLOSING_PHRASES + r")"
    r"(?:[ \t]*[,.!:\u2013\u2014-][ \t]*\n?|[ \t]*\n)\s*"
    + _NAME_LINE
    + r"[ \t]*(?:\n[^\n]{1,80}){0,3}$"
)
# A bare closing with no name ("... application.\n\nSincerely,") or a bare name
# line after a finished sentence ("... application.\n\nJane Doe").
_BARE_CLOSING = re.compile(r"(?:^|\n|[.!?][ \t]+)[ \t]*(?i:" + CLOSING_PHRASES + r")[ \t]*[,.!:]?$")
_BARE_NAME = re.compile(r"[.!?\"')][ \t]*\n\s*" + _FULL_NAME + r"[ \t]*$")


def is_truncated(letter: str) -> bool:
    text = letter.rstrip()
    if not text:
        return False  # empty letters are too_short, not truncated
    if text[-1] in _TERMINATORS:
        return False
    return not (_SIGN_OFF.search(text) or _BARE_CLOSING.search(text) or _BARE_NAME.search(text))



_FIELD_LABELS = sorted(
    {header.lower() for header in COLUMNS} | {f.replace("_", " ") for f in COLUMNS.values()} | set(COLUMNS.values()),
    key=len,
    reverse=True,
)
_AI_ARTIFACT = re.compile(
    r"(?i:\bas an? (?:ai|artificial intelligence)(?: language)? (?:model|assistant)\b"
    r"|\bas a (?:large )?language model\b"
    # "I am an AI language model" / "I'm an AI." -- but not "I am an AI Engineer".
    r"|\bi(?: am|'m|\u2019m) (?:just |only )?an ai (?:language model|model|assistant|chatbot)\b"
    r"|\bi(?: am|'m|\u2019m) (?:just |only )?an ai[,.!;]"
    r"|\b(?:here(?:'s|\u2019s| is)|below is) (?:a|an|the|your)\b[^.\n]{0,40}\bcover letter\b"
    r"|\bi hope (?:this|that) (?:helps|is helpful)\b"
    r"|\bfeel free to (?:customi[sz]e|modify|adjust|edit|tailor|personali[sz]e)\b"
    r"|\blet me know if you(?:'d| would)? like (?:any )?(?:changes|modifications|revisions|adjustments)\b"
    r"|\b(?:sample|example) cover letter\b|\bcover letter (?:template|sample|example)\b"
    r"|\b(?:certainly|sure)[!,.] here(?:'s|\u2019s| is)\b"
    r")"
    r"|(?m:^[ \t]*(?:#{2,6}[ \t]*|#[ \t]+)\S)"  # markdown headers: "### Sample", "# Response"; not "C#"
    r"|(?im:^[ \t]*(?:\*\*)?(?:"  # prompt echoes at line start: "Job Description:", "Skillsets:"
    + "|".join(re.escape(x) for x in _FIELD_LABELS)
    # + the section/line labels of prompts.prompt_text ("Applicant Resume", "Skills", "Name", ...)
    + "|" + "|".join(re.escape(label.lower()) for label in prompt_labels())  # the prompt's own labels
    + r"|resume|instruction|input|output|response)(?:\*\*)?[ \t]*:)"
    r"|<\|[A-Za-z_]+\|>|</?s>|\[/?INST\]"  # chat-template / special tokens
)



def quality_flags(frame: pd.DataFrame, similarity: Sequence[float] | None = None, min_chars: int = 300,
                  min_similarity: float = MIN_SIMILARITY, unbacked: Sequence[bool] | None = None) -> pd.DataFrame:
    """Per-row quality flags for ``frame`` (columns = fields.FIELDS), indexed like it.

      shared_letter    the same letter is used by rows whose company, name or title differ
      too_short        < min_chars characters (after strip)
      company_missing  grounding.company_named is False (case, punctuation, "The" and legal suffixes ignored)
      title_missing    grounding.title_named is False ("Sr." = "Senior", plural, "position"/"role" dropped)
      truncated        ends mid-sentence and not in a sign-off ("Sincerely,\\nJohn Smith")
      placeholder      grounding.find_placeholders finds a slot: [Your Name], {company}, (insert ...), XX
      ai_artifact      "As an AI language model", "Here is a cover letter", "### Sample", "Job Description:" ...
      low_similarity   similarity[i] < min_similarity; always False when ``similarity`` is None
      unbacked_claims  unbacked[i]: the letter makes a claim its resume does not back (borrowed or unsupported,
                       scoring/claims.py; see unbacked_claims()); always False when ``unbacked`` is None
    """
    letters = column(frame, TARGET_FIELD)
    out = pd.DataFrame(index=frame.index)
    out["shared_letter"] = shared_letter(frame)
    out["too_short"] = [len(letter.strip()) < min_chars for letter in letters]
    # A row without a company or title (None from the rule) has nothing to miss.
    out["company_missing"] = [company_named(letter, company) is False
                              for letter, company in zip(letters, column(frame, "hiring_company"))]
    out["title_missing"] = [title_named(letter, title) is False for letter, title in zip(letters, column(frame, "job_title"))]
    out["truncated"] = [is_truncated(letter) for letter in letters]
    out["placeholder"] = [bool(find_placeholders(letter)) for letter in letters]
    out["ai_artifact"] = [bool(_AI_ARTIFACT.search(letter)) for letter in letters]
    if similarity is None:
        out["low_similarity"] = False
    else:
        scores = list(similarity)
        if len(scores) != len(frame):
            raise ValueError(f"similarity has {len(scores)} values for {len(frame)} rows")
        out["low_similarity"] = [float(score) < min_similarity for score in scores]
    if unbacked is not None and len(unbacked) != len(frame):
        raise ValueError(f"unbacked has {len(unbacked)} values for {len(frame)} rows")
    out["unbacked_claims"] = False if unbacked is None else [bool(flag) for flag in unbacked]
    out = out.astype({rule: bool for rule in RULES})
    out["reasons"] = [";".join(rule for rule, hit in zip(RULES, flags) if hit)
                      for flags in out[list(RULES)].itertuples(index=False)]
    return out


def flag_counts(flags: pd.DataFrame) -> dict[str, int]:
    """Rows flagged per rule (rules present in ``flags``), plus ``"dropped"``: rows failing at least one rule."""
    counts = {rule: int(flags[rule].sum()) for rule in RULES if rule in flags.columns}
    if "reasons" in flags.columns:
        counts["dropped"] = int((flags["reasons"] != "").sum())
    else:
        counts["dropped"] = int(flags[[rule for rule in RULES if rule in flags.columns]].any(axis=1).sum())
    return counts


def input_text(row) -> str:
    """The non-empty input fields of one row, in INPUT_FIELDS order, joined by newlines: the content the prompt
    shows the model. Values only: constant labels separated true from shuffled pairs slightly worse (AUC 0.953
    with labels vs 0.963 without, on the real train set)."""
    return "\n".join(value for value in (as_text(row[f]).strip() for f in INPUT_FIELDS) if value)


def input_letter_similarity(frame: pd.DataFrame, batch_size: int = 64, device: str = "cpu") -> list[float]:
    """MiniLM cosine between each row's letter and its concatenated input fields (``input_text``), in row order."""
    from coverlora.scoring.embeddings import embed

    if len(frame) == 0:
        return []
    letters = column(frame, TARGET_FIELD)
    inputs = [input_text(row) for _, row in frame.iterrows()]
    vectors = embed(letters + inputs, batch_size=batch_size, device=device)
    return (vectors[: len(frame)] * vectors[len(frame):]).sum(1).tolist()


def unbacked_claims(frame: pd.DataFrame) -> list[bool]:
    """Per row: does its letter claim something its resume does not back (the claim checker, MiniLM included)?"""
    from coverlora.scoring.claims.verdicts import check_letters, letter_flagged

    rows = frame.to_dict("records")
    return [letter_flagged(v) for v in check_letters(column(frame, TARGET_FIELD), rows)]
