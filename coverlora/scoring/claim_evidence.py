"""Lexical evidence for one claim sentence: where its words, numbers, named entities and employers come from.

Everything here is exact and rule-based; the paraphrase part (MiniLM) and the decision live in claims.py.
A row's side is read once per row (RowSources); a sentence is then compared with it by `sentence_evidence`.
Resume fields back a claim; the job's fields (title, company, preferred qualifications) only make it borrowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from nltk.stem.snowball import SnowballStemmer

from coverlora.scoring.claim_words import GENERIC_WORDS, STOP_WORDS
from coverlora.scoring.grounding import (
    _LEGAL_SUFFIXES,
    _field,
    _normalize,
    company_named,
    mentioned_entities,
    resume_years,
    years_claims,
)

RESUME_FIELDS = ("current_experience", "past_experience", "skillsets", "qualifications")
JOB_FIELDS = ("job_title", "hiring_company", "preferred_qualifications")
SUPPORTED, BORROWED, UNSUPPORTED = "supported", "borrowed", "unsupported"

_STEMMER = SnowballStemmer("english")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_CALENDAR_YEAR = re.compile(r"\b(?:19|20)\d\d\b")


# Word families Snowball leaves apart that letters and resumes use for one another ("data analysis" in the
# resume, "analytical skills" in the letter).
_FAMILIES = ("analy", "scien")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    stemmed = _STEMMER.stem(word)
    return next((family for family in _FAMILIES if stemmed.startswith(family)), stemmed)


_GENERIC_STEMS = frozenset(stem(word) for word in GENERIC_WORDS) | STOP_WORDS


def content_stems(text: str) -> list[str]:
    """Stems of the words that carry a claim's content: no stop words, no letter boilerplate, no bare digits."""
    stems = []
    for word in _normalize(text).split():
        if word in STOP_WORDS or word.isdigit() or len(word) < 2:
            continue
        stemmed = stem(word)
        if stemmed not in _GENERIC_STEMS:
            stems.append(stemmed)
    return list(dict.fromkeys(stems))


def numbers_in(text: str) -> set[str]:
    """Digit numbers as written, without thousands separators ("40,000" and "40000" are one number)."""
    return {match.group(0).replace(",", "").rstrip(".") for match in _NUMBER.finditer(text)}


@dataclass(frozen=True)
class Evidence:
    """One reason for a sentence's label: what matched (or did not), and where."""

    kind: str  # "employer", "years", "number", "entity", "words", "similarity"
    source: str  # SUPPORTED (found in the resume), BORROWED (only in the job's fields) or UNSUPPORTED (neither)
    items: tuple[str, ...] = ()  # the words, numbers or names concerned
    field: str | None = None  # the row field it was found in
    score: float | None = None  # a similarity, for kind "similarity"


@dataclass
class RowSources:
    """One row's resume and job fields, read once for all sentences of its letter."""

    row: Mapping[str, str]
    resume_text: str = ""
    stems: dict[str, dict[str, str]] = field(default_factory=dict)  # "resume"/"job" -> stem -> first field
    numbers: dict[str, set[str]] = field(default_factory=dict)
    entities: dict[str, set[str]] = field(default_factory=dict)
    years: float | None = None
    years_known: bool = True
    job_years: set[float] = field(default_factory=set)

    @classmethod
    def of(cls, row: Mapping[str, str]) -> "RowSources":
        sources = cls(row)
        sources.resume_text = "\n".join(_field(row, name) for name in RESUME_FIELDS)
        job_text = "\n".join(_field(row, name) for name in JOB_FIELDS)
        for side, names in (("resume", RESUME_FIELDS), ("job", JOB_FIELDS)):
            sources.stems[side] = {}
            for name in names:
                for word in content_stems(_field(row, name)):
                    sources.stems[side].setdefault(word, name)
        sources.numbers = {"resume": numbers_in(sources.resume_text), "job": numbers_in(job_text)}
        sources.entities = {"resume": mentioned_entities(sources.resume_text), "job": mentioned_entities(job_text)}
        sources.years = resume_years(row)
        # resume_years is None both when the resume states no amount (a claim is then unsupported) and when a
        # role runs "to present" from a calendar year (its length is unknown: no claim can be judged).
        sources.years_known = sources.years is not None or not _CALENDAR_YEAR.search(sources.resume_text)
        sources.job_years = {claim.claimed_years for claim in years_claims(job_text)}
        sources.job_years |= {float(n) for n in numbers_in(_field(row, "preferred_qualifications")) if n.isdigit()}
        return sources


def _years_evidence(sentence: str, sources: RowSources) -> tuple[list[Evidence], set[str]]:
    """Years-of-experience claims against the resume's total; also the digits they account for."""
    found, used = [], set()
    for claim in years_claims(sentence):
        text = f"{claim.claimed_years:g} years"
        used.add(f"{claim.claimed_years:g}")
        if not sources.years_known or (sources.years is not None and claim.claimed_years <= sources.years + 1e-9):
            found.append(Evidence("years", SUPPORTED, (text,), "resume"))
        elif claim.claimed_years in sources.job_years:
            found.append(Evidence("years", BORROWED, (text,), "preferred_qualifications"))
        else:
            found.append(Evidence("years", UNSUPPORTED, (text,)))
    return found, used


def _number_evidence(sentence: str, sources: RowSources, accounted: set[str]) -> list[Evidence]:
    found = []
    for number in sorted(numbers_in(sentence) - accounted):
        if number in sources.numbers["resume"]:
            found.append(Evidence("number", SUPPORTED, (number,), "resume"))
        elif number in sources.numbers["job"]:
            found.append(Evidence("number", BORROWED, (number,), "preferred_qualifications"))
        else:
            found.append(Evidence("number", UNSUPPORTED, (number,)))
    return found


def _entity_evidence(sentence: str, sources: RowSources, ignore: set[str]) -> list[Evidence]:
    """Skills, tools, degrees and certifications from grounding's vocabulary."""
    found = []
    for entity in sorted(mentioned_entities(sentence) - ignore):
        if entity in sources.entities["resume"]:
            found.append(Evidence("entity", SUPPORTED, (entity,), "resume"))
        elif entity in sources.entities["job"]:
            found.append(Evidence("entity", BORROWED, (entity,), "job"))
        else:
            found.append(Evidence("entity", UNSUPPORTED, (entity,)))
    return found


# ---------------------------------------------------------------------------- employers

# Words right before an employer name that make the sentence say the applicant works or worked there. Run on
# _normalize'd text (lowercase words, single spaces), so "I'm" reads "i m".
_EMPLOYED_BEFORE = re.compile(
    r"(?:\b(?:my|i|i m|i ve|i am|i was|i have|i had)\s+(?:\w+\s+){0,6}?"
    r"(?:work|works|worked|working|employed|employment|serve|serving|served|tenure|time|stint|career|role|roles"
    r"|position|positions|job|experience|experiences|internship|intern|years?|months?)\s+(?:\w+\s+){0,2}"
    r"(?:at|with|for|in)"
    r"|\b(?:i am|i m|i was|i ve been|i have been|i currently serve as)\s+(?:a|an|the)\s+(?:\w+\s+){1,6}?(?:at|with|for)"
    r"|^\s*(?:as|while|when)\s+(?:a|an|the|at)?\s*(?:\w+\s+){0,6}?(?:at|with|for)"
    r"|^\s*(?:at|during my time at|since joining|while at|in my time at)"
    r"|\b(?:joined|since joining|after joining))\s*$"
)
# ... and words that make it a wish instead ("the position at", "I would love to work at").
_WISH_BEFORE = re.compile(
    r"\b(?:would|could|will|shall|hope|hoping|wish|want|eager|excited|thrilled|opportunity|chance|apply|applying"
    r"|application|interest|interested|join|joining|contribute|contributing|look forward|the \w+ (?:position|role|job"
    r"|opening))\b"
)


def employer_mentions(sentence: str, company: str) -> list[tuple[str, str]]:
    """(prefix, name) for each place the sentence names `company`; prefix is the normalised text before it.

    The company is matched as grounding's company_named matches it (no leading "The", no legal suffix).
    """
    if not company_named(sentence, company):
        return []
    words = _normalize(company).split()
    core = words[1:] if words[0] == "the" and len(words) > 1 else words
    while len(core) > 1 and core[-1] in _LEGAL_SUFFIXES:
        core = core[:-1]
    text, needle = _normalize(sentence), f" {' '.join(core)} "
    return [(text[: match.start() + 1], needle.strip()) for match in re.finditer(re.escape(needle), text)]


def claims_employment(prefix: str) -> bool:
    """Whether the text right before an employer name says the applicant works or worked there."""
    return bool(_EMPLOYED_BEFORE.search(prefix)) and not _WISH_BEFORE.search(prefix)


def _resume_company_continues(prefix_end: str, name: str, sentence: str, resume_text: str) -> bool:
    """'XYZ' (hiring) inside 'XYZ Technologies' (a resume employer) is the resume's employer, not the hiring one."""
    text, resume = _normalize(sentence), _normalize(resume_text)
    at = text.find(f" {name} ", len(prefix_end) - 1)
    following = text[at + len(name) + 2:].split()[:2]
    preceding = prefix_end.split()[-1:]
    return any(f" {phrase} " in resume for phrase in
               ([f"{name} {following[0]}"] if following else []) + ([f"{preceding[0]} {name}"] if preceding else []))


def _employer_evidence(sentence: str, sources: RowSources) -> list[Evidence]:
    """The rule the issue names: the applicant says they work(ed) at the hiring company; the resume does not."""
    company = _field(sources.row, "hiring_company")
    if not company or company_named(sources.resume_text, company):
        return []
    for prefix, name in employer_mentions(sentence, company):
        if claims_employment(prefix) and not _resume_company_continues(prefix, name, sentence, sources.resume_text):
            return [Evidence("employer", BORROWED, (company,), "hiring_company")]
    return []


# A run of capitalised words: a role ("Senior Data Scientist") or an employer ("DEF Tech Solutions").
_CAPITALISED_RUN = re.compile(r"[A-Z][\w&'.+-]*(?:\s+(?:[A-Z][\w&'.+-]*|&|of|and))*")


def resume_names(sentence: str, sources: RowSources) -> list[Evidence]:
    """Roles and employers the sentence names as the experience fields write them. They are the frame of a
    claim ("As a Data Scientist at DEF Corp, I ..."), supported as they stand: the claim is what follows."""
    found = []
    for name in ("current_experience", "past_experience"):
        experience = _normalize(_field(sources.row, name))
        phrases = [phrase for phrase in (_normalize(run.group(0).removesuffix(" and").removesuffix(" of")).strip()
                                         for run in _CAPITALISED_RUN.finditer(sentence))
                   if f" {phrase} " in experience and any(word not in STOP_WORDS for word in phrase.split())]
        if phrases:
            found.append(Evidence("name", SUPPORTED, tuple(dict.fromkeys(phrases)), name))
    return found


def hard_evidence(sentence: str, sources: RowSources) -> list[Evidence]:
    """Employer, years, numbers and vocabulary entities: the checks where an exact match decides."""
    title_entities = mentioned_entities(_field(sources.row, "job_title"))
    if _normalize(_field(sources.row, "job_title")).strip() in _normalize(sentence):
        ignore = title_entities  # naming the job's title is not claiming its skills
    else:
        ignore = set()
    years, accounted = _years_evidence(sentence, sources)
    return (_employer_evidence(sentence, sources) + years + _number_evidence(sentence, sources, accounted)
            + _entity_evidence(sentence, sources, ignore))


def word_evidence(stems: list[str], sources: RowSources) -> list[Evidence]:
    """Content stems grouped by where they are found: the resume (by field), only the job, or nowhere."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for word in stems:
        if word in sources.stems["resume"]:
            key = (SUPPORTED, sources.stems["resume"][word])
        elif word in sources.stems["job"]:
            key = (BORROWED, sources.stems["job"][word])
        else:
            key = (UNSUPPORTED, None)
        groups.setdefault(key, []).append(word)
    return [Evidence("words", source, tuple(words), name) for (source, name), words in groups.items()]
