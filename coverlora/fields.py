"""The dataset's columns, and the short names the code uses for them: one table, read everywhere."""

# field name used everywhere in the package, its CSV header, and where a letter service request holds it.
TABLE = (
    ("job_title", "Job Title", "job.title"),
    ("preferred_qualifications", "Preferred Qualifications", "job.preferred_qualifications"),
    ("hiring_company", "Hiring Company", "job.company"),
    ("applicant_name", "Applicant Name", "resume.name"),
    ("past_experience", "Past Working Experience", "resume.past_experience"),
    ("current_experience", "Current Working Experience", "resume.current_experience"),
    ("skillsets", "Skillsets", "resume.skills"),
    ("qualifications", "Qualifications", "resume.qualifications"),
    ("cover_letter", "Cover Letter", None),  # what the service writes, not what it is given
)
# CSV header -> field name.
COLUMNS = {column: name for name, column, _ in TABLE}
# field name -> (request part, key), e.g. "hiring_company" -> ("job", "company").
REQUEST_KEYS = {name: tuple(where.split(".")) for name, _, where in TABLE if where}
FIELDS = tuple(COLUMNS.values())
INPUT_FIELDS = FIELDS[:-1]
TARGET_FIELD = "cover_letter"
# A letter can't be grounded without these; the others may be empty in the real data.
REQUIRED_FIELDS = ("job_title", "hiring_company", "applicant_name", "cover_letter")
