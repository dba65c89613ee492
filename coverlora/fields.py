"""The dataset's columns, and the short names the code uses for them: one table, read everywhere."""

# field name used everywhere in the package, its CSV header, its label in the prompt, and where a letter service
# request holds it.
TABLE = (
    ("job_title", "Job Title", "Job Title", "job.title"),
    ("preferred_qualifications", "Preferred Qualifications", "Preferred Qualifications", "job.preferred_qualifications"),
    ("hiring_company", "Hiring Company", "Hiring Company", "job.company"),
    ("applicant_name", "Applicant Name", "Name", "resume.name"),
    ("past_experience", "Past Working Experience", "Past Experience", "resume.past_experience"),
    ("current_experience", "Current Working Experience", "Current Experience", "resume.current_experience"),
    ("skillsets", "Skillsets", "Skills", "resume.skills"),
    ("qualifications", "Qualifications", "Qualifications", "resume.qualifications"),
    ("cover_letter", "Cover Letter", None, None),  # what the model writes, not what it is given
)
# CSV header -> field name.
COLUMNS = {column: name for name, column, _, _ in TABLE}
# field name -> its CSV header (for messages that name a column).
CSV_HEADERS = {name: column for name, column, _, _ in TABLE}
# field name -> its label in the prompt.
PROMPT_LABELS = {name: label for name, _, label, _ in TABLE if label}
# field name -> (request part, key), e.g. "hiring_company" -> ("job", "company").
REQUEST_KEYS = {name: tuple(where.split(".")) for name, _, _, where in TABLE if where}
FIELDS = tuple(COLUMNS.values())
INPUT_FIELDS = FIELDS[:-1]
TARGET_FIELD = "cover_letter"
# A letter can't be grounded without these; the others may be empty in the real data.
REQUIRED_FIELDS = ("job_title", "hiring_company", "applicant_name", "cover_letter")
