"""Rule-based checks that a cover letter is grounded in its row's inputs.

Each check works on one letter and the row it was written from; grounding_rates aggregates
the per-letter results. The rules are deliberately simple and documented per function, so a
rate can be traced back to the letters that produced it.
"""

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from coverlora.fields import INPUT_FIELDS

# ---------------------------------------------------------------------------- text helpers

# Curly quotes, and the mojibake the dataset has for them, all mean a plain apostrophe.
_APOSTROPHES = re.compile("\u00e2\u20ac\u2122|[\u2018\u2019\u02bc`]")


def _clean(text: str) -> str:
    return _APOSTROPHES.sub("'", text)


def _normalize(text: str) -> str:
    """Lowercase words separated by single spaces, padded so ' x ' finds whole words."""
    return " " + " ".join(re.findall(r"[a-z0-9]+", _clean(text).lower())) + " "


def _field(row: Mapping[str, str], name: str) -> str:
    value = row.get(name)
    return value if isinstance(value, str) else ""  # tolerate None/NaN from a DataFrame


# ---------------------------------------------------------------------------- names

_LEGAL_SUFFIXES = {
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
    words = _normalize(company).split()
    if not words:
        return None
    core = words[1:] if words[0] == "the" and len(words) > 1 else words
    while len(core) > 1 and core[-1] in _LEGAL_SUFFIXES:
        core = core[:-1]
    return f" {' '.join(core)} " in _normalize(letter)


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
    letter_words = _normalize(letter)
    core_title = re.split(r"\(|,|\s(?:[-\u2013\u2014|]|in|at)\s", title, maxsplit=1)[0]
    return any(
        pattern is not None and pattern.search(letter_words) is not None
        for pattern in (full_title, _title_pattern(core_title))
    )


_TITLE_ABBREVIATIONS = {"sr": "senior", "snr": "senior", "jr": "junior"}
# A title field ending in "position"/"role" names the job by the words before it.
_GENERIC_TITLE_ENDINGS = {"position", "role", "opening", "job", "vacancy"}


def _title_pattern(title: str) -> re.Pattern | None:
    words = [_TITLE_ABBREVIATIONS.get(word, word) for word in _normalize(title).split()]
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
    all_words = _normalize(name).split()
    words = [word for word in all_words if word not in _HONORIFICS | _NAME_SUFFIXES] or all_words
    if not words:
        return None
    letter_words = _normalize(letter)
    forms = {" ".join(words), f"{words[0]} {words[-1]}"}
    return any(f" {form} " in letter_words for form in forms)


# ---------------------------------------------------------------------------- years of experience

_UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_NUMBER_WORDS = {word: value for value, word in enumerate(_UNITS)} | {
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
    if text in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[text])
    tens, unit = text.split(" ")  # "twenty five"
    return float(_NUMBER_WORDS[tens] + _NUMBER_WORDS[unit])


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
    text = _clean(letter)
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


def resume_years(row: Mapping[str, str]) -> float | None:
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
        for match in _AMOUNT.finditer(_clean(_field(row, field))):
            low, high = _amount_in_years(match)
            found.append(high if high is not None else low)
        return found

    role_years = [years for field in _EXPERIENCE_FIELDS for years in amounts(field)]
    for field in _EXPERIENCE_FIELDS:
        for match in _DATE_RANGE.finditer(_field(row, field)):
            if match["end"] is None:
                return None
            role_years.append(float(int(match["end"]) - int(match["start"])))
    stated_years = [years for field in _STATEMENT_FIELDS for years in amounts(field)]
    if not role_years and not stated_years:
        return None
    return max(sum(role_years), max(stated_years, default=0.0))


# ---------------------------------------------------------------------------- skills and degrees

# Canonical entity -> the ways a letter or resume may write it. Degree synonyms share one
# entry, so "BSc" in the resume supports "Bachelor's degree" in the letter.
ENTITY_ALIASES: dict[str, tuple[str, ...]] = {
    # degrees
    "bachelor's degree": (
        "bachelor", "bachelors", "bachelor's", "BSc", "B.Sc", "B.Sc.", "BS", "B.S.", "B.A.",
        "BA degree", "B.Eng", "B.Tech", "BTech", "B.E.", "undergraduate degree",
    ),
    "master's degree": (
        "master's", "masters", "master degree", "master of science", "master of arts",
        "master of engineering", "master of computer", "MSc", "M.Sc", "M.Sc.", "M.S.", "M.A.",
        "MS degree", "MS in", "M.Eng", "M.Tech", "MTech", "graduate degree",
    ),
    "PhD": ("PhD", "Ph.D", "Ph.D.", "Ph. D.", "doctorate", "doctoral", "doctor of philosophy"),
    "MBA": ("MBA", "master of business administration"),
    "associate degree": ("associate degree", "associate's degree", "associates degree"),
    "high school diploma": ("high school diploma", "GED"),
    # certifications
    "PMP": ("PMP", "project management professional"),
    "CAPM": ("CAPM",),
    "PRINCE2": ("PRINCE2",),
    "CPA": ("CPA", "certified public accountant"),
    "CFA": ("CFA", "chartered financial analyst"),
    "CMA": ("CMA", "certified management accountant"),
    "FRM": ("FRM",),
    "CISSP": ("CISSP",),
    "CISM": ("CISM",),
    "CISA": ("CISA",),
    "CEH": ("CEH", "certified ethical hacker"),
    "CompTIA": ("CompTIA",),
    "Security+": ("Security+",),
    "Network+": ("Network+",),
    "CCNA": ("CCNA",),
    "CCNP": ("CCNP",),
    "CCIE": ("CCIE",),
    "MCSE": ("MCSE",),
    "MCSA": ("MCSA",),
    "RHCE": ("RHCE",),
    "RHCSA": ("RHCSA",),
    "ITIL": ("ITIL",),
    "Six Sigma": ("Six Sigma", "Lean Six Sigma"),
    "Certified ScrumMaster": ("Certified ScrumMaster", "Certified Scrum Master", "CSM"),
    "SHRM": ("SHRM", "SHRM-CP", "SHRM-SCP"),
    "PHR": ("PHR",),
    "Series 7": ("Series 7",),
    # programming languages
    "Python": ("Python",),
    "Java": ("Java",),
    "JavaScript": ("JavaScript", "JS"),
    "TypeScript": ("TypeScript",),
    "C++": ("C++", "CPP"),
    "C#": ("C#", "C sharp"),
    "Golang": ("Golang",),
    "Rust": ("Rust",),
    "Ruby": ("Ruby",),
    "PHP": ("PHP",),
    "Perl": ("Perl",),
    "Kotlin": ("Kotlin",),
    "Swift": ("Swift",),
    "Objective-C": ("Objective-C",),
    "Scala": ("Scala",),
    "R": ("R",),
    "MATLAB": ("MATLAB",),
    "SAS": ("SAS",),
    "SPSS": ("SPSS",),
    "Stata": ("Stata",),
    "Haskell": ("Haskell",),
    "Fortran": ("Fortran",),
    "COBOL": ("COBOL",),
    "VBA": ("VBA",),
    "Bash": ("Bash", "shell scripting"),
    "PowerShell": ("PowerShell",),
    "HTML": ("HTML", "HTML5"),
    "CSS": ("CSS", "CSS3"),
    "SQL": ("SQL",),
    "NoSQL": ("NoSQL",),
    "PL/SQL": ("PL/SQL",),
    "T-SQL": ("T-SQL",),
    "GraphQL": ("GraphQL",),
    "Solidity": ("Solidity",),
    # frameworks and libraries
    "Django": ("Django",),
    "Flask": ("Flask",),
    "FastAPI": ("FastAPI",),
    "Spring": ("Spring",),
    "Spring Boot": ("Spring Boot",),
    "Hibernate": ("Hibernate",),
    "J2EE": ("J2EE", "Java EE", "Jakarta EE"),
    "React": ("React", "React.js", "ReactJS"),
    "React Native": ("React Native",),
    "Angular": ("Angular", "AngularJS"),
    "Vue.js": ("Vue", "Vue.js", "VueJS"),
    "Node.js": ("Node.js", "NodeJS"),
    "Express.js": ("Express.js", "ExpressJS"),
    ".NET": (".NET", "dotnet"),
    "ASP.NET": ("ASP.NET",),
    "Ruby on Rails": ("Ruby on Rails", "Rails"),
    "Laravel": ("Laravel",),
    "jQuery": ("jQuery",),
    "Bootstrap": ("Bootstrap",),
    "Flutter": ("Flutter",),
    "Xamarin": ("Xamarin",),
    "TensorFlow": ("TensorFlow",),
    "PyTorch": ("PyTorch",),
    "Keras": ("Keras",),
    "scikit-learn": ("scikit-learn", "sklearn", "scikit learn"),
    "pandas": ("pandas",),
    "NumPy": ("NumPy",),
    "SciPy": ("SciPy",),
    "Matplotlib": ("Matplotlib",),
    "Seaborn": ("Seaborn",),
    "Plotly": ("Plotly",),
    "XGBoost": ("XGBoost",),
    "LightGBM": ("LightGBM",),
    "Hugging Face": ("Hugging Face", "HuggingFace"),
    "LangChain": ("LangChain",),
    "OpenCV": ("OpenCV",),
    "NLTK": ("NLTK",),
    "spaCy": ("spaCy",),
    "Selenium": ("Selenium",),
    "JUnit": ("JUnit",),
    "pytest": ("pytest",),
    "Cypress": ("Cypress",),
    "Postman": ("Postman",),
    "Maven": ("Maven",),
    "Gradle": ("Gradle",),
    "Webpack": ("Webpack",),
    # data and analytics platforms
    "Apache Spark": ("Spark", "Apache Spark"),
    "PySpark": ("PySpark",),
    "Hadoop": ("Hadoop",),
    "Hive": ("Hive",),
    "Kafka": ("Kafka",),
    "Airflow": ("Airflow",),
    "Databricks": ("Databricks",),
    "Snowflake": ("Snowflake",),
    "Redshift": ("Redshift",),
    "BigQuery": ("BigQuery",),
    "Tableau": ("Tableau",),
    "Power BI": ("Power BI", "PowerBI"),
    "Looker": ("Looker",),
    "Qlik": ("Qlik", "QlikView", "Qlik Sense"),
    "Spotfire": ("Spotfire",),
    "Alteryx": ("Alteryx",),
    "Excel": ("Excel",),
    "Google Analytics": ("Google Analytics",),
    # databases
    "MySQL": ("MySQL",),
    "PostgreSQL": ("PostgreSQL", "Postgres"),
    "MongoDB": ("MongoDB",),
    "Redis": ("Redis",),
    "Cassandra": ("Cassandra",),
    "Elasticsearch": ("Elasticsearch", "Elastic Search"),
    "DynamoDB": ("DynamoDB",),
    "SQL Server": ("SQL Server", "MSSQL"),
    "Oracle": ("Oracle",),
    "DB2": ("DB2",),
    "SQLite": ("SQLite",),
    "Neo4j": ("Neo4j",),
    "MariaDB": ("MariaDB",),
    "Firebase": ("Firebase",),
    # cloud, infrastructure and DevOps
    "AWS": ("AWS", "Amazon Web Services"),
    "Azure": ("Azure",),
    "Google Cloud": ("Google Cloud", "GCP", "Google Cloud Platform"),
    "Heroku": ("Heroku",),
    "Docker": ("Docker",),
    "Kubernetes": ("Kubernetes", "K8s"),
    "Terraform": ("Terraform",),
    "Ansible": ("Ansible",),
    "Puppet": ("Puppet",),
    "Chef": ("Chef",),
    "Jenkins": ("Jenkins",),
    "CircleCI": ("CircleCI",),
    "GitHub Actions": ("GitHub Actions",),
    "CI/CD": ("CI/CD", "continuous integration"),
    "Git": ("Git",),
    "GitHub": ("GitHub",),
    "GitLab": ("GitLab",),
    "Bitbucket": ("Bitbucket",),
    "Linux": ("Linux",),
    "Unix": ("Unix",),
    "Windows Server": ("Windows Server",),
    "Active Directory": ("Active Directory",),
    "VMware": ("VMware",),
    "Hyper-V": ("Hyper-V",),
    "TCP/IP": ("TCP/IP",),
    "DNS": ("DNS",),
    "DHCP": ("DHCP",),
    "VPN": ("VPN",),
    "OSPF": ("OSPF",),
    "BGP": ("BGP",),
    "MPLS": ("MPLS",),
    "VoIP": ("VoIP",),
    "IPv6": ("IPv6",),
    "REST APIs": ("REST", "RESTful"),
    "SOAP": ("SOAP",),
    "gRPC": ("gRPC",),
    "microservices": ("microservices", "microservice"),
    "serverless": ("serverless",),
    "DevOps": ("DevOps",),
    "MLOps": ("MLOps",),
    # business software
    "Salesforce": ("Salesforce",),
    "SAP": ("SAP",),
    "NetSuite": ("NetSuite",),
    "QuickBooks": ("QuickBooks",),
    "Workday": ("Workday",),
    "HubSpot": ("HubSpot",),
    "Jira": ("Jira",),
    "Confluence": ("Confluence",),
    "Trello": ("Trello",),
    "SharePoint": ("SharePoint",),
    "Microsoft Office": ("Microsoft Office", "MS Office", "Office 365", "Microsoft 365"),
    "PowerPoint": ("PowerPoint",),
    "Figma": ("Figma",),
    "Adobe Photoshop": ("Photoshop",),
    "Adobe Illustrator": ("Illustrator",),
    "Adobe InDesign": ("InDesign",),
    "Adobe XD": ("Adobe XD",),
    "Premiere Pro": ("Premiere Pro",),
    "After Effects": ("After Effects",),
    "AutoCAD": ("AutoCAD",),
    "SolidWorks": ("SolidWorks",),
    "Revit": ("Revit",),
    "Unity": ("Unity",),
    "Unreal Engine": ("Unreal Engine",),
    "Android": ("Android",),
    "iOS": ("iOS",),
    # methods and fields
    "Agile": ("Agile",),
    "Scrum": ("Scrum",),
    "Kanban": ("Kanban",),
    "machine learning": ("machine learning",),
    "deep learning": ("deep learning",),
    "NLP": ("NLP", "natural language processing"),
    "computer vision": ("computer vision",),
    "reinforcement learning": ("reinforcement learning",),
    "generative AI": ("generative AI", "GenAI"),
    "large language models": ("large language model", "large language models", "LLM", "LLMs"),
    "ETL": ("ETL",),
    "data warehousing": ("data warehousing", "data warehouse"),
    "A/B testing": ("A/B testing", "A/B tests", "A/B test"),
    "blockchain": ("blockchain",),
    "SEO": ("SEO", "search engine optimization"),
    "GAAP": ("GAAP",),
    "IFRS": ("IFRS",),
}

# Aliases that are also ordinary English words, or letters, match only as written
# ("React" the library, not "react" the verb; "R" the language, not a stray letter).
_CASE_SENSITIVE_ALIASES = frozenset({
    "R", "BS", "BA degree", "MS degree", "MS in", "JS", "CPP", "GED", "CSM", "Swift", "Rust",
    "Ruby", "Spring", "React", "Angular", "Vue", "Rails", "Bootstrap", "Flutter", "Spark",
    "Hive", "Snowflake", "Excel", "Oracle", "Puppet", "Chef", "Git", "REST", "SOAP", "Unity",
    "Agile", "Scrum", "Looker", "Postman", "Cypress", "Cassandra", "Redis", "Bash", "Workday",
    "Jenkins", "Azure", "Flask", "Illustrator", "SAS", "Stata", "DNS", "VPN", "SAP", "ETL",
    "Confluence", "Maven", "Kafka", "Airflow", "Hibernate", "Keras",
})


class _AliasMatcher(NamedTuple):
    needle: str  # the alias's first word, a cheap substring test before the regex
    case_sensitive: bool
    pattern: re.Pattern


def _alias_matcher(alias: str) -> _AliasMatcher:
    case_sensitive = alias in _CASE_SENSITIVE_ALIASES
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
    text = _clean(text)
    lowered = text.lower()
    return {
        entity
        for entity, matchers in _ENTITY_MATCHERS.items()
        if any(
            matcher.needle in (text if matcher.case_sensitive else lowered)
            and matcher.pattern.search(text)
            for matcher in matchers
        )
    }


# ---------------------------------------------------------------------------- placeholders

_BRACKETED = re.compile(r"\[([^\[\]\n]{1,60})\]|<([^<>\n]{1,60})>|\{([^{}\n]{1,60})\}")
_PLACEHOLDER_WORDS = re.compile(r"[A-Za-z][\w .,'&/-]*")
# Angle-bracketed markup or leaked special tokens are defects too, but not placeholders.
_MARKUP_TAGS = {"s", "br", "p", "b", "i", "u", "em", "div", "span", "pad", "unk", "eos", "bos"}
_UNBRACKETED = re.compile(
    r"\b(?:Your (?:Full )?Name|Your (?:Street )?Address|Your Email(?: Address)?"
    r"|Your Phone(?: Number)?|Your Contact Information|Your City|Company Name|Company Address"
    r"|Hiring Manager'?s? Name|Recipient'?s? Name)\b"
    r"|\b[Xx]{3,}\b|_{3,}"
)


def find_placeholders(letter: str) -> list[str]:
    """Template slots left unfilled, in order of appearance, each listed once.

    A slot is a span of 1-5 words starting with a letter inside [], <> or {} ("[Your Name]",
    "<Company>", "{company_name}"), or a bare stock phrase in title case ("Your Name",
    "Company Name", "Hiring Manager's Name"), a run of X's ("XXX") or of underscores.
    """
    text = _clean(letter)
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


def check_letter(letter: str, row: Mapping[str, str]) -> dict:
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
    in_inputs = mentioned_entities("\n".join(_field(row, field) for field in INPUT_FIELDS))
    unsupported = mentioned - in_inputs
    placeholders = find_placeholders(letter)
    return {
        "company_named": company_named(letter, _field(row, "hiring_company")),
        "title_named": title_named(letter, _field(row, "job_title")),
        "name_named": name_named(letter, _field(row, "applicant_name")),
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
    """Aggregate check_letter results over letters.

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
