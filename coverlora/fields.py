"""The dataset's columns, and the short names the code uses for them."""

# CSV header -> field name used everywhere in the package.
COLUMNS = {
    "Job Title": "job_title",
    "Preferred Qualifications": "preferred_qualifications",
    "Hiring Company": "hiring_company",
    "Applicant Name": "applicant_name",
    "Past Working Experience": "past_experience",
    "Current Working Experience": "current_experience",
    "Skillsets": "skillsets",
    "Qualifications": "qualifications",
    "Cover Letter": "cover_letter",
}
FIELDS = tuple(COLUMNS.values())
INPUT_FIELDS = FIELDS[:-1]
TARGET_FIELD = "cover_letter"
# A letter can't be grounded without these; the others may be empty in the real data.
REQUIRED_FIELDS = ("job_title", "hiring_company", "applicant_name", "cover_letter")
