"""Property-based fuzzing of the input surface (hypothesis): malformed CSVs, config files and command-line values.

Every case runs the real train.py entry point in-process and must end with exit code 2, exactly one line on stderr
naming the file, row and column (or the config key), and no run folder created. Hypothesis shrinks any failure to
its smallest case.
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
import typing
from pathlib import Path

import pytest
import yaml
from conftest import make_row, write_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coverlora.cli import run_stage
from coverlora.config import TrainConfig
from coverlora.fields import COLUMNS, REQUIRED_FIELDS
from coverlora.train.stage import train

HEADERS = list(COLUMNS)
REQUIRED_HEADERS = [h for h, f in COLUMNS.items() if f in REQUIRED_FIELDS]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def run_train(argv: list[str]) -> tuple[int, str]:
    """train.py's entry point, in-process: (exit code, stderr)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exited:
        run_stage("train", train, argv)
    return exited.value.code, stderr.getvalue()


def assert_one_line_refusal(code: int, stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def corrupt_cells(rows: list[dict], row: int, header: str, value: str) -> list[dict]:
    rows = [dict(r) for r in rows]
    rows[row][header] = value
    return rows


# Cell values that leave a required field without text, before or after cleaning.
EMPTY_VALUES = st.sampled_from(["", "   ", "\n\n", "1234", "--", "…", "\t", "#", "[ ]"])
CELL_CASE = st.tuples(st.integers(0, 3), st.sampled_from(REQUIRED_HEADERS), EMPTY_VALUES)


@FUZZ
@given(case=CELL_CASE)
def test_a_required_cell_without_text_names_file_line_and_column(case):
    row, header, value = case
    with tempfile.TemporaryDirectory() as tmp:
        rows = corrupt_cells([make_row(i) for i in range(4)], row, header, value)
        path = write_csv(Path(tmp) / "train.csv", rows, index=False)
        out = Path(tmp) / "run"
        code, stderr = run_train(["--data", str(path), "--output_dir", str(out)])
        expected_line = 2 + sum(r["Cover Letter"].count("\n") + 1 for r in rows[:row])
        assert_one_line_refusal(code, stderr, str(path), f"line {expected_line} (row {row})", f"column '{header}'")
        assert not out.exists()


STRUCTURE = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(HEADERS), st.just(0)),
    st.tuples(st.just("misspell"), st.sampled_from(HEADERS), st.integers(0, 5)),
    st.tuples(st.just("duplicate"), st.sampled_from(HEADERS), st.just(0)),
    st.tuples(st.just("bad_byte"), st.just(""), st.integers(0, 10_000)),
    st.tuples(st.just("open_quote"), st.just(""), st.integers(0, 3)),
    st.tuples(st.just("extra_field"), st.just(""), st.integers(0, 3)),
    st.tuples(st.just("repeat_header"), st.just(""), st.integers(1, 3)),
    st.tuples(st.just("huge_cell"), st.sampled_from(HEADERS), st.integers(0, 3)),
    st.tuples(st.just("prompt_echo_letter"), st.just(""), st.integers(0, 3)),
    st.tuples(st.just("header_only"), st.just(""), st.just(0)),
    st.tuples(st.just("binary"), st.just(""), st.integers(0, 2**32 - 1)),
)


def corrupted_csv(path: Path, kind: str, header: str, number: int) -> list[str]:
    """Write a CSV with one structural problem; return what its one-line error must name."""
    rows = [make_row(i) for i in range(4)]
    headers = list(HEADERS)
    if kind == "drop":
        headers.remove(header)
        write_csv(path, rows, columns=headers, index=False)
        return [str(path), f"'{header}'"]
    if kind == "misspell":
        headers[headers.index(header)] = header[:number] + "x" + header[number:]
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(headers)
        writer.writerows([[r[h] for h in HEADERS] for r in rows])
        path.write_text(text.getvalue(), encoding="utf-8")
        return [str(path), f"'{header}'"]
    if kind == "duplicate":
        write_csv(path, rows, columns=headers + [header], index=False)
        return [str(path), f"'{header}' appears twice"]
    if kind == "huge_cell":
        write_csv(path, corrupt_cells(rows, number, header, "word " * 5000), index=False)
        return [str(path), f"(row {number}), column '{header}'"]
    if kind == "repeat_header":
        write_csv(path, rows[:number] + [{h: h for h in HEADERS}] + rows[number:], index=False)
        return [str(path), f"(row {number}) repeats the header row"]
    if kind == "prompt_echo_letter":
        echo = "### Job Description:\nNurse at Acme\n### Applicant Resume:\nName: Ana"
        write_csv(path, corrupt_cells(rows, number, "Cover Letter", echo), index=False)
        return [str(path), f"(row {number}), column 'Cover Letter'"]
    if kind == "header_only":
        write_csv(path, [], index=False)
        return [str(path), "no data rows"]
    write_csv(path, rows, index=False)
    blob = path.read_bytes()
    if kind == "bad_byte":
        at = len(blob) // 2 + number % (len(blob) // 2)
        path.write_bytes(blob[:at] + b"\xff" + blob[at:])
        return [str(path), "not UTF-8"]
    if kind == "binary":
        path.write_bytes(number.to_bytes(4, "big") * 64 + b"\x00\xff\xfe")
        return [str(path)]
    lines = blob.decode().split("\r\n")
    body_start = [i for i, line in enumerate(lines) if line.startswith(tuple(r["Job Title"] for r in rows))]
    target = body_start[number % len(body_start)]
    if kind == "open_quote":
        lines[target] = '"' + lines[target]
    else:  # extra_field
        lines[target] = lines[target] + ",surplus"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    return [str(path)]


@FUZZ
@given(case=STRUCTURE)
def test_a_malformed_csv_is_one_line_naming_the_file(case):
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "train.csv", Path(tmp) / "run"
        needles = corrupted_csv(path, *case)
        code, stderr = run_train(["--data", str(path), "--output_dir", str(out)])
        assert_one_line_refusal(code, stderr, *needles)
        assert not out.exists()


NUMERIC_KEYS = [key for key, kind in typing.get_type_hints(TrainConfig).items() if kind in (int, float)]
BAD_NUMBERS = st.sampled_from(["nan", "inf", "-inf", "NaN", "abc", "", "1e999", "[1, 2]", "{a: 1}", "0x", "1,5",
                               "true", "null", "- 3", "1_0_"])


@FUZZ
@given(key=st.sampled_from(NUMERIC_KEYS), value=BAD_NUMBERS, in_file=st.booleans())
def test_a_bad_number_names_its_config_key(key, value, in_file):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        if in_file:
            preset = Path(tmp) / "preset.yaml"
            # Containers, null and booleans as YAML gives them; everything else as the string a user typed.
            parsed = yaml.safe_load(value) if value in ("[1, 2]", "{a: 1}", "null", "true") else value
            preset.write_text(yaml.safe_dump({"train": {key: parsed}}), encoding="utf-8")
            argv = ["--config", str(preset)]
        else:
            argv = [f"--{key}={value}"]
        # A model path that does not exist: a value wrongly accepted fails fast at the model, not after training.
        code, stderr = run_train(argv + ["--output_dir", str(out), "--model", str(Path(tmp) / "no-model")])
        assert_one_line_refusal(code, stderr, f"'{key}'")
        assert not out.exists()


@FUZZ
@given(key=st.sampled_from([k for k, kind in typing.get_type_hints(TrainConfig).items() if kind is not bool]),
       last=st.booleans())
def test_a_value_flag_without_its_value_is_refused(key, last):
    with tempfile.TemporaryDirectory() as tmp:
        argv = [f"--{key}"] + ([] if last else ["--resume", "false"])
        code, stderr = run_train(argv)
        assert_one_line_refusal(code, stderr, f"'{key}'", "needs a value")
        assert not (Path(tmp) / "true").exists()
