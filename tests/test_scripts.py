"""The helper scripts as a user runs them: clean, filter (with reasons), compute (with leakage)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import make_row, write_csv

ROOT = Path(__file__).resolve().parent.parent


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *args], capture_output=True,
                          text=True, timeout=300)


def test_filter_drops_weak_rows_with_reasons_and_copies_test(tmp_path, data_dir):
    rows = [make_row(i) for i in range(12)]
    rows[3]["Cover Letter"] = "Too short to be a letter, and it names no company."
    write_csv(data_dir / "train.csv", rows)
    # the fixture's letters are ~200 characters, so the length floor comes down to 100 here
    done = script("filter", str(data_dir), str(tmp_path / "out"), "--min-chars", "100")
    assert done.returncode == 0, done.stderr
    assert "train: 12 rows, 1 dropped" in done.stdout
    kept = pd.read_csv(tmp_path / "out" / "train.csv")
    dropped = pd.read_csv(tmp_path / "out" / "train.dropped.csv")
    assert len(kept) == 11 and dropped["row_id"].tolist() == [3]
    assert set(dropped["reasons"].item().split(";")) == {"too_short", "company_missing", "title_missing"}
    assert (tmp_path / "out" / "test.csv").read_bytes() == (data_dir / "test.csv").read_bytes()


def test_filter_rejects_an_unknown_rule(tmp_path, data_dir):
    done = script("filter", str(data_dir), str(tmp_path / "out"), "--rules", "too_shrt")
    assert done.returncode == 2 and "unknown rule too_shrt" in done.stderr and "Traceback" not in done.stderr


def test_compute_reports_leakage(tmp_path, data_dir):
    rows = [make_row(100 + i) for i in range(4)]
    write_csv(data_dir / "train.csv", [make_row(i) for i in range(8)] + rows[:1])  # one test row leaks
    done = script("compute", str(data_dir), "--json", str(tmp_path / "stats.json"))
    assert done.returncode == 0, done.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["leakage"]["leaked"] == 1 and stats["leakage"]["leak_free_test_rows"] == 3
    assert stats["train"]["rows"] == 9 and stats["train"]["company_named_rate"] == 1.0


def test_clean_strips_artifacts(tmp_path):
    rows = [make_row(0), make_row(1)]
    rows[1]["Cover Letter"] = "### Cover Letter:\nDear  team,\n\n\nI apply.\n### Sample 2\nanother"
    done = script("clean", str(write_csv(tmp_path / "in.csv", rows)), str(tmp_path / "out.csv"))
    assert done.returncode == 0 and "1 letters changed" in done.stdout
    assert pd.read_csv(tmp_path / "out.csv")["Cover Letter"][1] == "Dear team,\n\nI apply."
