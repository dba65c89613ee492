"""Data loading: every malformed input is one line naming the file, row and column; nothing else happens."""

import pytest
from conftest import make_row, write_csv

from coverlora.data import clean_letter, load_split, read_csv, train_val_split
from coverlora.errors import UserError
from coverlora.fields import COLUMNS
from coverlora.text import clean_text


def rows(n=3):
    return [make_row(i) for i in range(n)]


def test_reads_the_canonical_layout(tmp_path):
    frame = read_csv(write_csv(tmp_path / "t.csv", rows(5)))
    assert len(frame) == 5 and list(frame.columns[:2]) == ["row_id", "job_title"]
    assert frame["line"].tolist()[0] == 2  # the header is line 1
    assert frame.loc[0, "cover_letter"].endswith("Ana Silva") or "Sincerely" in frame.loc[0, "cover_letter"]


def test_accepts_bom_crlf_extra_columns_and_no_index(tmp_path):
    path = tmp_path / "t.csv"
    write_csv(path, rows(3), columns=[*COLUMNS, "Notes"], index=False)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    frame = read_csv(path)
    assert len(frame) == 3 and "\r" not in frame.loc[0, "cover_letter"]


def test_optional_fields_may_be_empty(tmp_path):
    data = rows(2)
    data[1]["Skillsets"] = ""
    data[1]["Qualifications"] = ""
    assert read_csv(write_csv(tmp_path / "t.csv", data)).loc[1, "skillsets"] == ""


def _error(path) -> str:
    with pytest.raises(UserError) as caught:
        read_csv(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "file not found" in _error(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("")
    assert "empty" in _error(tmp_path / "e.csv")


def test_header_only(tmp_path):
    path = tmp_path / "h.csv"
    write_csv(path, [])
    assert "no data rows" in _error(path)


def test_wrong_delimiter(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text(";".join(COLUMNS) + "\n" + ";".join("x" * 9) + "\n")
    assert "not comma-separated" in _error(path)


def test_misspelled_column_is_named(tmp_path):
    columns = [c if c != "Hiring Company" else "Hiring Compnay" for c in COLUMNS]
    path = write_csv(tmp_path / "m.csv", [{**r, "Hiring Compnay": r["Hiring Company"]} for r in rows()], columns=columns)
    message = _error(path)
    assert "'Hiring Company'" in message and "'Hiring Compnay'" in message


def test_duplicated_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", rows(), columns=[*COLUMNS, "Job Title"])
    assert "appears twice" in _error(path)


@pytest.mark.parametrize("column", ["Job Title", "Hiring Company", "Applicant Name", "Cover Letter"])
def test_empty_required_field_names_row_and_column(tmp_path, column):
    data = rows(4)
    data[2][column] = "   "
    message = _error(write_csv(tmp_path / "x.csv", data))
    assert f"column '{column}' is empty" in message and "(row 2)" in message


def test_non_text_cell(tmp_path):
    data = rows(3)
    data[0]["Cover Letter"] = "12345"
    assert "holds no text" in _error(write_csv(tmp_path / "n.csv", data))


def test_non_utf8_bytes_give_the_line(tmp_path):
    path = write_csv(tmp_path / "b.csv", rows(3))
    blob = path.read_bytes().replace(b"Globex", b"Glob\xe9x", 1)
    path.write_bytes(blob)
    assert "not UTF-8" in _error(path)


def test_quote_broken_mid_file(tmp_path):
    path = write_csv(tmp_path / "q.csv", rows(3))
    text = path.read_text()
    path.write_text(text + '3,"unterminated,' + ",".join("x" * 8) + "\n")
    assert "malformed CSV" in _error(path)


def test_too_many_fields_in_a_row(tmp_path):
    path = write_csv(tmp_path / "f.csv", rows(3))
    path.write_text(path.read_text() + "9," + ",".join(["x"] * 12) + "\n")
    assert "malformed CSV" in _error(path)


def test_one_megabyte_field_is_refused_with_its_row(tmp_path):
    data = rows(2)
    data[1]["Cover Letter"] = "word " * 200_000
    message = _error(write_csv(tmp_path / "big.csv", data))
    assert "(row 1), column 'Cover Letter' is 999,999 characters long (limit 20,000)" in message


def test_folder_without_split(tmp_path):
    with pytest.raises(UserError, match="no test.csv in this folder"):
        load_split(str(tmp_path), "test")


def test_validation_split_is_fixed_and_disjoint(tmp_path):
    frame = read_csv(write_csv(tmp_path / "t.csv", rows(20)))
    train, val = train_val_split(frame, 0.1, seed=42)
    again, val_again = train_val_split(frame, 0.1, seed=42)
    assert len(val) == 2 and val["row_id"].tolist() == val_again["row_id"].tolist()
    assert set(train["row_id"]).isdisjoint(val["row_id"]) and len(train) + len(val) == 20


def test_clean_letter_strips_artifacts_and_keeps_paragraphs():
    raw = "### Cover Letter:\nDear  Ms. Lee,\r\n\r\n\r\nI   am glad.\nThanks\n\n### Sample 2\nother letter"
    assert clean_letter(raw) == "Dear Ms. Lee,\n\nI am glad.\nThanks"
    assert clean_text("a\u00a0 b\n\n\n\nc") == "a b\n\nc"


def test_a_repeated_header_row_is_named_not_trained_on(tmp_path):
    header_as_row = {column: column for column in COLUMNS}  # two files joined: the header again as row 1
    path = write_csv(tmp_path / "t.csv", [rows(1)[0], header_as_row, *rows(2)], index=False)
    with pytest.raises(UserError, match=r"line \d+ \(row 1\) repeats the header row"):
        read_csv(path)


def test_a_header_with_a_trailing_space_reads_like_the_clean_one(tmp_path):
    path = write_csv(tmp_path / "t.csv", rows(2), index=False)
    path.write_text(path.read_text().replace("Skillsets", "Skillsets ", 1))
    assert read_csv(path)["skillsets"].tolist() == [r["Skillsets"] for r in rows(2)]


def test_blank_lines_do_not_shift_the_reported_line(tmp_path):
    bad = rows(3)
    bad[2]["Applicant Name"] = ""
    path = write_csv(tmp_path / "t.csv", bad, index=False)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "\n\n" + "".join(lines[1:]))  # two blank lines after the header
    expected = 1 + 2 + 1 + sum(r["Cover Letter"].count("\n") + 1 for r in bad[:2])  # header, blanks, then rows
    with pytest.raises(UserError, match=rf"line {expected} \(row 2\), column 'Applicant Name' is empty"):
        read_csv(path)


def test_a_letter_that_cleaning_empties_is_refused_with_its_line(tmp_path):
    from coverlora.config import TrainConfig
    from coverlora.data import training_rows

    bad = rows(4)
    bad[1]["Cover Letter"] = "### Job Description:\nData Analyst at Acme\n### Applicant Resume:\nAna"
    folder = tmp_path / "d"
    folder.mkdir()
    write_csv(folder / "train.csv", bad, index=False)
    with pytest.raises(UserError, match=r"line \d+ \(row 1\), column 'Cover Letter'"):
        training_rows(TrainConfig(model="embedded", data=str(folder / "train.csv"), output_dir=str(tmp_path / "r")))


def test_a_misspelt_local_path_is_never_looked_up_on_the_hub(tmp_path, monkeypatch):
    import time

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    with pytest.raises(UserError, match="file not found"):
        load_split("data/smaple", "train")  # "data" is a folder here: a path, not the hub user "data"
    assert time.perf_counter() - started < 1


def test_a_hub_id_offline_fails_within_five_seconds(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(UserError, match="hub id, and the Hugging Face Hub cannot be reached"):
        load_split("someone/cover-letters", "train")
    assert time.perf_counter() - started < 5
