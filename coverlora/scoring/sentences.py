"""Split a cover letter into sentences, and tell its frame (header, greeting, sign-off) from its body.

Lines are split first (a greeting or a sign-off is its own line), then each line into sentences by NLTK's
Punkt algorithm with a fixed list of abbreviations: Punkt needs no downloaded model that way, and "Inc.",
"B.Sc." or "e.g." do not end a sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

# The closing phrases a letter's sign-off starts with: the one list, for the splitter and the truncation rule.
CLOSING_PHRASES = (
    r"(?:yours\s+)?(?:sincerely|truly|faithfully|respectfully|cordially|warmly)(?:\s+yours)?"
    r"|(?:with\s+)?(?:best|kind|kindest|warm|warmest|many)\s+(?:regards|wishes|thanks)"
    r"|regards|best|cheers|thanks|thank\s+you|with\s+(?:gratitude|appreciation)"
    r"|respectfully\s+submitted|all\s+the\s+best"
)


BODY, GREETING, SIGN_OFF, HEADER = "body", "greeting", "sign_off", "header"

_ABBREVIATIONS = {
    "e.g", "i.e", "etc", "vs", "approx", "mr", "mrs", "ms", "dr", "prof", "jr", "sr", "st", "no", "inc", "ltd",
    "co", "corp", "llc", "dept", "u.s", "u.k", "b.sc", "m.sc", "ph.d", "b.s", "m.s", "b.a", "m.a", "b.eng",
    "m.eng", "b.tech", "m.tech", "b.e", "m.b.a",
}


def _tokenizer() -> PunktSentenceTokenizer:
    parameters = PunktParameters()
    parameters.abbrev_types = set(_ABBREVIATIONS)
    return PunktSentenceTokenizer(parameters)


_PUNKT = _tokenizer()
# Punkt keeps "Inc." inside a sentence; a pronoun or a usual opener right after it starts a new one.
_AFTER_LEGAL_SUFFIX = re.compile(r"\b(?:Inc|Ltd|Corp|Co|LLC)\.\s+(?=(?:I|My|We|Our|In|As|With|This|Thank|At|During)\b)")
_GREETING = re.compile(r"^\s*(?:dear|to whom it may concern|hello|hi|greetings|good (?:morning|afternoon))\b", re.I)
_CLOSING_LINE = re.compile(rf"^\s*(?:{CLOSING_PHRASES})\s*[,.!:\u2013\u2014-]?\s*$", re.I)
# The closing a letter signs off with where it has none of its own (the template baseline's, training's sign-off).
USUAL_CLOSING = "Sincerely,"


def ends_with_closing(text: str) -> bool:
    """Whether the letter's last line is a bare closing ("Sincerely,"), with no name after it."""
    lines = [line for line in text.rstrip().splitlines() if line.strip()]
    return bool(lines) and bool(_CLOSING_LINE.match(lines[-1]))
# Lines of a letterhead: an e-mail, a phone number, a date, a street address, a bracketed slot.
_CONTACT = re.compile(
    r"@|\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}|^\s*\[[^\]]*\]\s*$|^\s*(?:january|february|march|april|may|june|july"
    r"|august|september|october|november|december)\b|^\s*\d+\s+\w+\s+(?:street|st|avenue|ave|road|rd)\b",
    re.I,
)


@dataclass(frozen=True)
class Sentence:
    index: int  # position in the letter, counting every sentence and frame line
    text: str
    start: int  # character offsets into the letter
    end: int
    kind: str  # BODY, GREETING, SIGN_OFF or HEADER


def _line_kind(line: str, seen_body: bool, signed_off: bool) -> str | None:
    """The frame kind of a whole line, or None for a body line (split further into sentences)."""
    if _CLOSING_LINE.match(line):
        return SIGN_OFF
    # After a closing come a name, a title, contact lines; a full sentence there is a repeated letter
    # (small models start over), and its claims count.
    if signed_off and len(line.split()) < 10:
        return SIGN_OFF
    if _GREETING.match(line) and len(line.split()) <= 12:
        return GREETING
    if _CONTACT.search(line) and len(line.split()) <= 12:
        return HEADER
    # A short line with no full stop before the body starts: a name or address in the letterhead.
    if not seen_body and len(line.split()) <= 8 and not re.search(r"[.!?]\s*$", line):
        return HEADER
    return None


def split_sentences(letter: str) -> list[Sentence]:
    """Every sentence and frame line of the letter, in order, with character offsets."""
    sentences: list[Sentence] = []
    seen_body = signed_off = False
    for line in re.finditer(r"[^\n]+", letter):
        text = line.group(0)
        if not text.strip():
            continue
        kind = _line_kind(text, seen_body, signed_off)
        signed_off = kind == SIGN_OFF or (signed_off and kind is not None)
        if kind is not None:
            offset = len(text) - len(text.lstrip())
            sentences.append(Sentence(len(sentences), text.strip(), line.start() + offset,
                                      line.start() + len(text.rstrip()), kind))
            continue
        seen_body = True
        for start, end in _spans(text):
            sentences.append(Sentence(len(sentences), text[start:end], line.start() + start,
                                      line.start() + end, BODY))
    return sentences


def _spans(line: str) -> list[tuple[int, int]]:
    spans = []
    for start, end in _PUNKT.span_tokenize(line):
        for match in _AFTER_LEGAL_SUFFIX.finditer(line, start, end):
            spans.append((start, match.start() + match.group(0).index(".") + 1))
            start = match.end()
        spans.append((start, end))
    return spans
