"""Rule-based checks that a cover letter is grounded in its row's inputs.

Each check works on one letter and the row it was written from; grounding_rates aggregates
the per-letter results. The rules are deliberately simple and documented per function, so a
rate can be traced back to the letters that produced it.
"""

import functools
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from coverlora.fields import INPUT_FIELDS
from coverlora.scoring.vocabulary import CASE_SENSITIVE_ALIASES, ENTITY_ALIASES
from coverlora.text import as_text, fold, padded_words
from coverlora.years import YearsClaim, resume_years, years_claims

__all__ = ["LEGAL_SUFFIXES", "YearsClaim", "check_rules", "company_core", "company_named", "find_placeholders", "grounding_rates", "mentioned_entities",
           "name_named", "resume_years", "title_named", "years_claims"]


# ---------------------------------------------------------------------------- names

LEGAL_SUFFIXES = {
    "inc", "incorporated", "llc", "ltd", "limited", "corp", "corporation", "co", "company",
    "plc", "llp", "lp", "gmbh", "ag", "sa", "pty", "pvt",
}
_HONORIFICS = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir"}
_NAME_SUFFIXES = {"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq"}


def company_named(letter: str, company: str) -> bool | None:
    """Whether the company appears in the letter, ignoring case, punctuation, a leading "The"
    and legal suffixes ("Acme Inc." is named by "Acme", "ACME, Inc" or "Acme's").

    None when the row has no company.
    """
    core = company_core(company)
    if not core:
        return None
    return f" {' '.join(core)} " in padded_words(letter)


def company_core(company: str) -> list[str]:
    """The company's words as letters name it: no leading "The", no legal suffix ("The Acme Co. Inc." -> acme)."""
    words = padded_words(company).split()
    core = words[1:] if words[:1] == ["the"] and len(words) > 1 else words
    while len(core) > 1 and core[-1] in LEGAL_SUFFIXES:
        core = core[:-1]
    return core


def title_named(letter: str, title: str) -> bool | None:
    """Whether the job title appears in the letter, ignoring case and punctuation, with
    "Sr."/"Jr." read as "Senior"/"Junior", the last word singular or plural, a trailing
    "position"/"role" dropped, and any parenthetical or trailing qualifier (" - Remote",
    ", Backend", " in the Research group") optional.

    "Data Scientists" is named by "the Data Scientist position"; "Sr. Data Engineer
    (Remote)" by "Senior Data Engineer". None when the row has no title.
    """
    full_title = _title_pattern(title)
    if full_title is None:
        return None
    letter_words = padded_words(letter)
    core_title = re.split(r"\(|,|\s(?:[-\u2013\u2014|]|in|at)\s", title, maxsplit=1)[0]
    return any(
        pattern is not None and pattern.search(letter_words) is not None
        for pattern in (full_title, _title_pattern(core_title))
    )


_TITLE_ABBREVIATIONS = {"sr": "senior", "snr": "senior", "jr": "junior"}
# A title field ending in "position"/"role" names the job by the words before it.
_GENERIC_TITLE_ENDINGS = {"position", "role", "opening", "job", "vacancy"}


def _title_pattern(title: str) -> re.Pattern | None:
    words = [_TITLE_ABBREVIATIONS.get(word, word) for word in padded_words(title).split()]
    while len(words) > 1 and words[-1] in _GENERIC_TITLE_ENDINGS:
        words.pop()
    if not words:
        return None
    parts = [
        "(?:" + "|".join([word, *(a for a, full in _TITLE_ABBREVIATIONS.items() if full == word)]) + ")"
        for word in words[:-1]
    ]
    last = words[-1]
    singular = last[:-1] if last.endswith("s") and not last.endswith("ss") else last
    parts.append(re.escape(singular) + "(?:s|es)?")
    return re.compile(" " + " ".join(parts) + " ")


def name_named(letter: str, name: str) -> bool | None:
    """Whether the applicant's name appears: in full or as first + last name (a middle name
    or initial may be dropped), ignoring case, punctuation, honorifics and suffixes.

    None when the row has no name.
    """
    all_words = padded_words(name).split()
    words = [word for word in all_words if word not in _HONORIFICS | _NAME_SUFFIXES] or all_words
    if not words:
        return None
    letter_words = padded_words(letter)
    forms = {" ".join(words), f"{words[0]} {words[-1]}"}
    return any(f" {form} " in letter_words for form in forms)



# ---------------------------------------------------------------------------- skills and degrees


class _AliasMatcher(NamedTuple):
    needle: str  # the alias's first word, a cheap substring test before the regex
    case_sensitive: bool
    pattern: re.Pattern


def _alias_matcher(alias: str) -> _AliasMatcher:
    case_sensitive = alias in CASE_SENSITIVE_ALIASES
    body = r"[\s-]+".join(re.escape(word) for word in alias.split())
    # Whole-token match: "Java" must not match inside "JavaScript", "SQL" inside "MySQL", "JS"
    # inside "Node.js", nor "R" inside "R&D"; "R/Python" still mentions both.
    pattern = re.compile(
        rf"(?<![\w+#&.]){body}(?![\w+#&]|\.\w)", 0 if case_sensitive else re.IGNORECASE
    )
    first_word = alias.split()[0]
    return _AliasMatcher(first_word if case_sensitive else first_word.lower(), case_sensitive, pattern)


_ENTITY_MATCHERS: dict[str, list[_AliasMatcher]] = {
    entity: [_alias_matcher(alias) for alias in aliases] for entity, aliases in ENTITY_ALIASES.items()
}


def mentioned_entities(text: str) -> set[str]:
    """The canonical names of the vocabulary entities the text mentions.

    Each alias is matched on its own, so "Spring Boot" mentions both Spring Boot and Spring.
    """
    return set(_mentioned(text))


@functools.lru_cache(maxsize=8192)  # one sentence is asked about by several checks; a row's fields by every sentence
def _mentioned(text: str) -> frozenset[str]:
    text = fold(text)
    lowered = text.lower()
    return frozenset(
        entity
        for entity, matchers in _ENTITY_MATCHERS.items()
        if any(
            matcher.needle in (text if matcher.case_sensitive else lowered)
            and matcher.pattern.search(text)
            for matcher in matchers
        )
    )


# ---------------------------------------------------------------------------- placeholders

_BRACKETED = re.compile(r"\[([^\[\]\n]{1,60})\]|<([^<>\n]{1,60})>|\{([^{}\n]{1,60})\}")
_PLACEHOLDER_WORDS = re.compile(r"[A-Za-z][\w .,'&/-]*")
# Angle-bracketed markup or leaked special tokens are defects too, but not placeholders.
_MARKUP_TAGS = {"s", "br", "p", "b", "i", "u", "em", "div", "span", "pad", "unk", "eos", "bos"}
_UNBRACKETED = re.compile(
    r"\b(?:Your (?:Full )?Name|Your (?:Street )?Address|Your Email(?: Address)?"
    r"|Your Phone(?: Number)?|Your Contact Information|Your City|Company Name|Company Address"
    r"|Hiring Manager'?s? Name|Recipient'?s? Name)\b"
    r"|\bX{2,}\b|\bx{3,}\b|_{3,}"  # "XX years"; not "XYZ", a company name in the data
    r"|\((?i:\s*(?:insert|enter|add)\b[^()\n]{0,40})\)"  # (insert company name)
    r"|\((?i:\s*(?:your|company|applicant|candidate|hiring\s+manager|recipient)(?:'s)?\s+"
    r"(?:name|address|title|e-?mail|phone(?:\s+number)?))\)"  # (Your Name)
)


def find_placeholders(letter: str) -> list[str]:
    """Template slots left unfilled, in order of appearance, each listed once.

    A slot is a span of 1-5 words starting with a letter inside [], <> or {} ("[Your Name]",
    "<Company>", "{company_name}"), or a bare stock phrase in title case ("Your Name",
    "Company Name", "Hiring Manager's Name"), "(insert ...)", a run of X's ("XX years") or of underscores.
    The training-data filter (filters.py) and the metrics both use this one rule.
    """
    text = fold(letter)
    found = []
    for match in _BRACKETED.finditer(text):
        inner = next(group for group in match.groups() if group is not None).strip()
        is_markup = match.group(0).startswith("<") and inner.lower().strip("/ ") in _MARKUP_TAGS
        if _PLACEHOLDER_WORDS.fullmatch(inner) and len(inner.split()) <= 5 and not is_markup:
            found.append(match.group(0))
    # Blank out the bracketed slots so "[Your Name]" is not found again as "Your Name".
    unbracketed_text = _BRACKETED.sub(lambda m: " " * len(m.group(0)), text)
    found += [match.group(0) for match in _UNBRACKETED.finditer(unbracketed_text)]
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------- per letter and overall


def check_rules(letter: str, row: Mapping[str, str]) -> dict:
    """All grounding checks of one letter against the row it was written from.

    Returns:
      company_named, title_named, name_named: bool, or None when the row lacks the field.
      years_claims: list of YearsClaim(claimed_years, kind) the letter makes.
      resume_years: what the resume supports (see resume_years), None if it states no amount.
      years_checkable: whether resume_years is known; if not, claims are not judged.
      n_unsupported_years / unsupported_years: claims whose lower bound exceeds resume_years.
      entities_mentioned / unsupported_entities: sorted vocabulary entities (skills, tools,
        certifications, degrees) the letter mentions / of those, the ones no input field
        mentions (job title, company and preferred qualifications count as inputs too).
      entity_precision: share of mentioned entities that are supported; None if none.
      placeholders / has_placeholder: unfilled template slots (see find_placeholders).
    """
    claims = years_claims(letter)
    supported_years = resume_years(row)
    n_unsupported_years = (
        0
        if supported_years is None
        else sum(claim.claimed_years > supported_years + 1e-9 for claim in claims)
    )
    mentioned = mentioned_entities(letter)
    in_inputs = mentioned_entities("\n".join(as_text(row.get(field)) for field in INPUT_FIELDS))
    unsupported = mentioned - in_inputs
    placeholders = find_placeholders(letter)
    return {
        "company_named": company_named(letter, as_text(row.get("hiring_company"))),
        "title_named": title_named(letter, as_text(row.get("job_title"))),
        "name_named": name_named(letter, as_text(row.get("applicant_name"))),
        "years_claims": claims,
        "resume_years": supported_years,
        "years_checkable": supported_years is not None,
        "n_unsupported_years": n_unsupported_years,
        "unsupported_years": n_unsupported_years > 0,
        "entities_mentioned": sorted(mentioned),
        "unsupported_entities": sorted(unsupported),
        "entity_precision": 1 - len(unsupported) / len(mentioned) if mentioned else None,
        "placeholders": placeholders,
        "has_placeholder": bool(placeholders),
    }


def _rate(flags: Iterable[bool | None]) -> float | None:
    known = [flag for flag in flags if flag is not None]
    return sum(known) / len(known) if known else None


def grounding_rates(checks: list[dict]) -> dict:
    """Aggregate check_rules results over letters.

    Name/title/company rates skip letters whose row lacks the field; unsupported_years_rate
    is over letters whose resume states years (n_years_checkable of them); entity_precision is
    micro-averaged (all supported mentions / all mentions). A rate is None when it has no
    letters to average over.
    """
    n_mentioned = sum(len(check["entities_mentioned"]) for check in checks)
    n_unsupported = sum(len(check["unsupported_entities"]) for check in checks)
    checkable = [check for check in checks if check["years_checkable"]]
    return {
        "n_letters": len(checks),
        "company_named_rate": _rate(check["company_named"] for check in checks),
        "title_named_rate": _rate(check["title_named"] for check in checks),
        "name_named_rate": _rate(check["name_named"] for check in checks),
        "unsupported_years_rate": _rate(check["unsupported_years"] for check in checkable),
        "n_years_checkable": len(checkable),
        "entity_precision": 1 - n_unsupported / n_mentioned if n_mentioned else None,
        "placeholder_rate": _rate(check["has_placeholder"] for check in checks),
    }
