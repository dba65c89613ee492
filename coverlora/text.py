"""Text normalisation: the one home for how letters and fields are cleaned, compared and split into words.

- `clean_text`: the layout a stored field keeps (single spaces, paragraph breaks kept).
- `fold`: characters that mean the same thing made the same (NFKC; curly quotes and the dataset's mojibake for
  them become a plain apostrophe).
- `canonical`: the form two fields are compared in for equality (leakage, duplicates).
- `words` / `padded_words`: lowercase word tokens in any script, for rules that look for whole words and for ROUGE.
  Chinese, Japanese and Korean write words without spaces, so each of their characters is one token.
"""

from __future__ import annotations

import re
import unicodedata

APOSTROPHES = re.compile("\u00e2\u20ac\u2122|[\u2018\u2019\u02bc`]")
WHITESPACE = re.compile(r"\s+")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
WORD = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")


def as_text(value) -> str:
    """str(value), with None and NaN (what a DataFrame holds for a missing cell) as ""."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def clean_text(text: str) -> str:
    """Whitespace inside paragraphs collapsed, paragraph breaks and single line breaks (sign-offs) kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [" ".join(line.split()) for line in block.split("\n")]
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def fold(text) -> str:
    return APOSTROPHES.sub("'", unicodedata.normalize("NFKC", as_text(text)))


def _is_edge_char(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] in "PS"  # punctuation or symbol


def canonical(text) -> str:
    """Folded, lowercase, one space between words, punctuation and symbols stripped from both ends."""
    folded = WHITESPACE.sub(" ", fold(text).lower())
    start, end = 0, len(folded)
    while start < end and _is_edge_char(folded[start]):
        start += 1
    while end > start and _is_edge_char(folded[end - 1]):
        end -= 1
    return folded[start:end]


def words(text) -> list[str]:
    """Lowercase word tokens: runs of letters and digits in any script, one token per CJK character."""
    return WORD.findall(fold(text).lower())


def padded_words(text) -> str:
    """The words joined by single spaces and padded with one on each side, so `" x y " in` finds whole words."""
    return " " + " ".join(words(text)) + " "


def field_text(row, name: str) -> str:
    """A row's field as text: "" when missing, None or NaN."""
    return as_text(row.get(name))
