"""A row and a letter with one invented sentence, shared by the repair and training-target tests: the verifier
flags INVENTED against ROW and backs the letter's other claims."""

ROW = {"job_title": "Data Analyst", "hiring_company": "Acme Corp", "applicant_name": "Ana Silva",
       "preferred_qualifications": "Tableau", "current_experience": "Data Analyst at Bar Inc for 3 years, SQL reports",
       "past_experience": "Junior Analyst at Foo Ltd", "skillsets": "SQL, Excel", "qualifications": "BSc in Statistics"}
INVENTED = "I led 12 engineers at NASA for 9 years."
LETTER = ("Dear Hiring Manager,\n\nI am applying for the Data Analyst role at Acme Corp. " + INVENTED
          + " I write SQL reports at Bar Inc.\n\nSincerely,\nAna Silva")
