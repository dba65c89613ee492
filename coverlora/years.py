"""Years of experience: the amounts a letter claims, and the total a resume supports."""

import datetime
import re
from collections.abc import Mapping
from typing import NamedTuple

from coverlora.text import as_text, fold

# ---------------------------------------------------------------------------- years of experience

_UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
NUMBER_WORDS = {word: value for value, word in enumerate(_UNITS)} | {
    word: 20 + 10 * i for i, word in enumerate(_TENS)
} | {"a": 1, "an": 1, "a couple of": 2, "a couple": 2}
_WORD_NUMBER = (
    rf"(?:(?:{'|'.join(_TENS)})(?:[\s-](?:{'|'.join(_UNITS[1:10])}))?"
    rf"|{'|'.join(sorted(_UNITS, key=len, reverse=True))}|a\s+couple(?:\s+of)?|an?)"
)
_NUMBER = rf"(?:\d+(?:\.\d+)?|{_WORD_NUMBER})"
_AT_LEAST = r"over|more\s+than|at\s+least|upwards\s+of|in\s+excess\s+of|north\s+of"
_APPROXIMATELY = r"nearly|almost|approximately|about|around|roughly|close\s+to"

# "over 5 years", "5+ years", "5 plus years", "5-7 years", "five to seven years",
# "a decade", "half a decade", "one and a half years", "35 years+".
_AMOUNT = re.compile(
    rf"\b(?:(?P<qualifier>{_AT_LEAST}|{_APPROXIMATELY})\s+)?"
    rf"(?:(?P<half>half)\s+an?\s+"
    rf"|(?P<low>{_NUMBER})(?P<and_half>\s+and\s+a\s+half)?(?P<plus>\s*\+|\s+plus)?"
    rf"(?:\s*(?:-|\u2013|\u2014|to)\s*(?P<high>{_NUMBER}))?(?:\s*\+)?"
    rf"[\s-]+)"
    rf"(?P<unit>years?|yrs?|decades?|months?)\b(?P<plus_after_unit>\s*\+)?",
    re.IGNORECASE,
)
# What makes an amount a claim about experience: the words right after it ...
_EXPERIENCE_AFTER = re.compile(
    r"(?:'s?)?\s*(?:of|in|as|at|with|within|working|work|worked|experience|professional"
    r"|industry|hands-on|relevant|practical|career|combined|total|spent|under"
    r"|(?:[\w-]+\s+){1,3}experience)\b",
    re.IGNORECASE,
)
# ... or the words right before it ("for the past two years", "spent 3 years at") ...
_EXPERIENCE_BEFORE = re.compile(
    r"\b(?:for|spent|past|last)\s+(?:the\s+)?(?:past\s+|last\s+)?$", re.IGNORECASE
)
# ... unless those say it is about the future or someone else ("in two years I want to",
# "within 5 years", "Google's 20 years of innovation").
_NOT_EXPERIENCE_BEFORE = re.compile(
    r"\b(?:in|within|next|after|every|per|than|your|its|their|our|his|her|[a-z]+'s)\s+(?:the\s+)?$",
    re.IGNORECASE,
)


class YearsClaim(NamedTuple):
    claimed_years: float  # the claim's lower bound
    kind: str  # "at_least", "exact" or "range"


def _number_value(text: str) -> float:
    text = re.sub(r"[\s-]+", " ", text.lower()).strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if text in NUMBER_WORDS:
        return float(NUMBER_WORDS[text])
    tens, unit = text.split(" ")  # "twenty five"
    return float(NUMBER_WORDS[tens] + NUMBER_WORDS[unit])


def _amount_in_years(match: re.Match) -> tuple[float, float | None]:
    """(low, high) in years of an _AMOUNT match; high is None unless it is a range."""
    unit = match["unit"].lower()
    scale = 10.0 if unit.startswith("decade") else 1 / 12 if unit.startswith("month") else 1.0
    if match["half"]:
        return 0.5 * scale, None
    low = _number_value(match["low"]) + (0.5 if match["and_half"] else 0.0)
    high = _number_value(match["high"]) if match["high"] else None
    return low * scale, None if high is None else high * scale


def years_claims(letter: str) -> list[YearsClaim]:
    """Claims the letter makes about the applicant's years of experience.

    An amount of years (or decades) is a claim when words tying it to experience follow it
    ("5 years of", "5 years in/as/at/with/working", "5 years' experience", "5 years relevant
    industry experience") or "for", "spent", "past" or "last" precede it ("for the past two
    years"), unless the words before it make it about the future or about someone else ("in
    two years", "within", "next", "your", "Google's"). "over/more than/at least N" and "N+"
    are at-least claims, "N-M"/"N to M" ranges (their lower bound counts), anything else
    exact. Months never make a claim.
    """
    text = fold(letter)
    claims = []
    for match in _AMOUNT.finditer(text):
        if match["unit"].lower().startswith("month"):
            continue
        before, after = text[: match.start()], text[match.end() :]
        is_experience = _EXPERIENCE_AFTER.match(after) or _EXPERIENCE_BEFORE.search(before)
        if not is_experience or _NOT_EXPERIENCE_BEFORE.search(before):
            continue
        low, high = _amount_in_years(match)
        qualifier = (match["qualifier"] or "").lower()
        if high is not None:
            kind = "range"
        elif match["plus"] or match["plus_after_unit"] or re.fullmatch(_AT_LEAST, qualifier):
            kind = "at_least"
        else:
            kind = "exact"
        claims.append(YearsClaim(low, kind))
    return claims


_EXPERIENCE_FIELDS = ("past_experience", "current_experience")
_STATEMENT_FIELDS = ("qualifications", "skillsets")


_DATE_RANGE = re.compile(
    r"\b(?P<start>(?:19|20)\d\d)\s*(?:-|\u2013|\u2014|to)\s*"
    r"(?:(?P<end>(?:19|20)\d\d)|present|current|now|today|date)\b",
    re.IGNORECASE,
)


def resume_years(row: Mapping[str, str], *, this_year: int | None = None) -> float | None:
    """The most years of experience the resume supports, or None if that is unknown.

    Amounts in the experience fields are per role, so they add up ("3 years" + "4 years" = 7;
    "2015-2018" counts 3). An amount in qualifications or skillsets ("7 years of experience in
    analytics") is a total, so the largest one counts on its own. The result is the larger of
    the two. Ranges count at their upper bound and months as fractions of a year, giving the
    letter the benefit of the doubt. A role running to "present" has no length without knowing
    when the resume was written, so it makes the total unknown (None), as does a resume that
    states no amount at all. Preferred qualifications describe the job, not the applicant, and
    never count.
    """

    def amounts(field: str) -> list[float]:
        found = []
        for match in _AMOUNT.finditer(fold(as_text(row.get(field)))):
            low, high = _amount_in_years(match)
            found.append(high if high is not None else low)
        return found

    role_years = [years for field in _EXPERIENCE_FIELDS for years in amounts(field)]
    for field in _EXPERIENCE_FIELDS:
        for match in _DATE_RANGE.finditer(as_text(row.get(field))):
            end = int(match["end"]) if match["end"] else (this_year or datetime.date.today().year)
            role_years.append(float(max(0, end - int(match["start"]))))
    stated_years = [years for field in _STATEMENT_FIELDS for years in amounts(field)]
    if not role_years and not stated_years:
        return None
    return max(sum(role_years), max(stated_years, default=0.0))


